"""``rlmorning plot-q``: the Q-value trace of one evaluation episode (DQN paper, Fig. 3) and the held-out
Q over training (Fig. 2) beside the eval return.

Top: per-step V(s) = max_a Q(s, a) (thick) and every action's Q (thin), reward events marked on the
time axis, and frame thumbnails at the largest rises and falls of V with arrows to their steps.
Bottom: held-out mean max-Q over training next to the evaluation return (twin axis), from
``metrics.csv``. The plotted numbers are saved as JSON next to the PNG; they are the same numbers
``rlmorning record`` writes into its sidecar for the same checkpoint and seed.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV
from rlmorning.viz.media import png_out
from rlmorning.viz.rollout import DEFAULT_SEED, EpisodeLog, load_source, play

TRACE_FORMAT = 1


def value_events(v: np.ndarray, k: int = 5) -> list[dict[str, Any]]:
    """Up to ``k`` of the largest rises/falls of ``v`` as ``{step, dv, kind, label}``, sorted by step.

    ``dv`` is the change of V over the ``w`` steps before ``step`` (``w`` = 1..10 by episode length);
    events are at least ``max(2w, len(v) / 8k)`` steps apart, and beyond the first three only changes of
    at least 15% of the largest are kept.
    """
    v = np.asarray(v, dtype=np.float64)
    n = len(v)
    if n < 2 or not np.isfinite(v).any():
        return []
    w = int(max(1, min(10, n // 60)))
    dv = v[w:] - v[:-w]
    dv = np.where(np.isfinite(dv), dv, 0.0)
    sep = max(2 * w, n // (8 * max(k, 1)), 1)
    biggest = float(np.abs(dv).max())
    chosen: list[dict[str, Any]] = []
    for i in np.argsort(-np.abs(dv), kind="stable"):
        if len(chosen) >= k or (len(chosen) >= 3 and abs(dv[i]) < 0.15 * biggest):
            break
        t = int(i + w)
        if all(abs(t - c["step"]) >= sep for c in chosen):
            chosen.append({"step": t, "dv": float(dv[i]), "kind": "rise" if dv[i] >= 0 else "fall"})
    chosen.sort(key=lambda c: c["step"])
    for j, c in enumerate(chosen):
        c["label"] = chr(ord("A") + j)
    return chosen


def training_series(run_dir: Path | None) -> dict[str, Any]:
    """Held-out mean max-Q and eval return (mean, std) per logged step from a run's ``metrics.csv``."""
    out: dict[str, Any] = {"heldout_q": {"step": [], "value": []},
                           "eval_return": {"step": [], "mean": [], "std": []}, "eval_protocol": None}
    if run_dir is None or not (Path(run_dir) / "metrics.csv").is_file():
        return out
    for row in MetricsCSV.read(Path(run_dir) / "metrics.csv"):
        step = _num(row.get("step"))
        if step is None:
            continue
        hq = _num(row.get("heldout_q"))
        if hq is not None:
            out["heldout_q"]["step"].append(int(step))
            out["heldout_q"]["value"].append(hq)
        mean = _num(row.get("eval_return_mean"))
        if mean is not None:
            out["eval_return"]["step"].append(int(step))
            out["eval_return"]["mean"].append(mean)
            out["eval_return"]["std"].append(_num(row.get("eval_return_std")) or 0.0)
            out["eval_protocol"] = row.get("eval_protocol") or out["eval_protocol"]
    return out


def _num(s: str | None) -> float | None:
    if s is None or s == "":
        return None
    try:
        return float(s)
    except ValueError:
        return None


def plot_q(
    source: str,
    *,
    checkpoint: str = "best",
    episode_steps: int | None = None,
    out: str | Path | None = None,
    seed: int = DEFAULT_SEED,
    env: str | None = None,
    device: str = "cpu",
    thumbnails: int = 5,
    progress: bool = True,
) -> dict[str, Path]:
    """Play one evaluation episode (seed ``seed``) and draw its Q trace; returns ``{"png", "json"}`` paths.

    Default output: ``<run>/plots/qtrace-<checkpoint>-seed<seed>.png`` and ``.json`` beside it.
    """
    import matplotlib

    matplotlib.use("Agg")
    from rlmorning.viz.video import progress_bar

    if episode_steps is not None and episode_steps < 1:
        raise RlmError(f"--episode-steps must be >= 1, got {episode_steps}")
    if not 3 <= thumbnails <= 6:
        raise RlmError(f"thumbnails must be 3..6, got {thumbnails}")
    src = load_source(source, checkpoint, env=env, device=device)
    png = Path(out) if out is not None else src.out_dir / "plots" / f"qtrace-{Path(src.checkpoint).stem}-seed{seed}.png"
    png_out(png)

    log = EpisodeLog(seed=seed)
    thumbs: dict[int, bytes] = {}
    bound = episode_steps or (src.max_frames // src.frame_skip if src.info.family == "atari" else None)
    with progress_bar(progress) as add:
        advance = add("episode", None if bound is None else bound + 1)
        for m in play(src, seed, log, max_steps=episode_steps):
            small = cv2.resize(m.frame, (m.frame.shape[1] // 2, m.frame.shape[0] // 2), interpolation=cv2.INTER_AREA)
            thumbs[m.t] = cv2.imencode(".png", small[..., ::-1])[1].tobytes()
            advance()
    if log.q_values and log.q_values[0] is None:
        raise RlmError(f"agent '{src.agent_name}' has no Q-values to plot")

    v = log.v()
    q_all = np.array(log.q_values + [log.final["q_values"]], dtype=np.float64)
    events = value_events(v, min(thumbnails, max(1, len(v) // 2)))
    reward_steps = [t + 1 for t, r in enumerate(log.reward) if r != 0]
    train = training_series(src.run_dir)
    protocol = src.protocol

    data = {
        "format": TRACE_FORMAT,
        "png": png.name,
        "source": src.source,
        "checkpoint": src.checkpoint,
        "checkpoint_step": src.checkpoint_step,
        "agent": src.agent_name,
        "env": src.info.display_name,
        "seed": seed,
        "eval_protocol": protocol,
        "epsilon": src.epsilon,
        "action_meanings": src.action_meanings,
        "steps": log.steps,
        "score": log.total,
        "stopped_at_max_steps": log.stopped_at_max_steps,
        "v": [None if not np.isfinite(x) else float(x) for x in v],
        "q_values": log.q_values + [log.final["q_values"]],
        "actions": log.action,
        "rewards": log.reward,
        "reward_steps": reward_steps,
        "events": events,
        "training": train,
    }
    _draw(png, data, q_all, thumbs)
    js = png.with_suffix(".json")
    js.write_text(json.dumps(data, separators=(",", ":")))
    return {"png": png, "json": js}


def _draw(png: Path, data: dict[str, Any], q_all: np.ndarray, thumbs: dict[int, bytes]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage
    from matplotlib.patches import ConnectionPatch

    v = np.array([np.nan if x is None else x for x in data["v"]], dtype=np.float64)
    steps = np.arange(len(v))
    events = data["events"]
    fig = plt.figure(figsize=(12, 9.6), dpi=100)
    gs = fig.add_gridspec(3, 1, height_ratios=[1.45, 3.0, 2.1], hspace=0.38, top=0.96, bottom=0.1,
                          left=0.07, right=0.86)
    ax_th, ax_q, ax_h = fig.add_subplot(gs[0]), fig.add_subplot(gs[1]), fig.add_subplot(gs[2])

    colors = plt.get_cmap("tab10")
    for a, name in enumerate(data["action_meanings"]):
        ax_q.plot(steps, q_all[:, a], lw=0.7, alpha=0.8, color=colors(a % 10), label=f"Q(s, {name})")
    ax_q.plot(steps, v, lw=2.4, color="black", label="V(s) = max Q")
    for i, t in enumerate(data["reward_steps"]):
        ax_q.axvline(t, color="tab:green", lw=0.6, alpha=0.35)
        ax_q.plot([t], [0.0], marker="^", color="tab:green", ms=7, transform=ax_q.get_xaxis_transform(),
                  clip_on=False, label="reward" if i == 0 else None)
    ax_q.set_xlim(0, max(len(v) - 1, 1))
    ax_q.set_xlabel("agent step in the episode")
    ax_q.set_ylabel("Q-value")
    stop = " (stopped at --episode-steps)" if data["stopped_at_max_steps"] else ""
    ax_q.set_title(f"{data['env']} | {data['agent']} | {Path(data['checkpoint']).name}: one evaluation episode, "
                   f"seed {data['seed']}, score {data['score']:g} in {data['steps']} steps{stop}", fontsize=10)
    ax_q.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    ax_q.grid(alpha=0.25)

    ax_th.set_axis_off()
    ax_th.set_xlim(0, 1)
    ax_th.set_ylim(0, 1)
    k = max(len(events), 1)
    box = ax_th.get_window_extent()
    for j, ev in enumerate(events):
        t = ev["step"]
        img = cv2.imdecode(np.frombuffer(thumbs[t], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
        zoom = min(0.8 * box.height / img.shape[0], 0.5 * box.width / k / img.shape[1])
        x = (j + 0.5) / k
        edge = "tab:red" if ev["kind"] == "fall" else "tab:blue"
        ab = AnnotationBbox(OffsetImage(img, zoom=zoom, dpi_cor=False), (x, 0.5), xycoords="axes fraction",
                            frameon=True, pad=0.15, bboxprops={"edgecolor": edge})
        ax_th.add_artist(ab)
        ax_th.text(x + 0.5 / k * 0.55, 0.5, f"{ev['label']}\nstep {t}\nΔV {ev['dv']:+.3g}", fontsize=8,
                   va="center", ha="left", transform=ax_th.transAxes)
        bottom = 0.5 - 0.5 * zoom * img.shape[0] / box.height
        arrow = ConnectionPatch(xyA=(x, bottom - 0.03), coordsA=ax_th.transAxes, xyB=(t, v[t]), coordsB=ax_q.transData,
                                arrowstyle="->", color="gray", lw=0.8, shrinkB=3)
        fig.add_artist(arrow)
        ax_q.annotate(ev["label"], (t, v[t]), xytext=(3, 6), textcoords="offset points", fontsize=9,
                      fontweight="bold")
    if events:
        ax_th.text(0.0, 1.0, "frames at the largest rises (blue) and falls (red) of V", fontsize=9,
                   transform=ax_th.transAxes, va="bottom")

    train = data["training"]
    hq, ev_ret = train["heldout_q"], train["eval_return"]
    if hq["step"] or ev_ret["step"]:
        lines = []
        if hq["step"]:
            lines += ax_h.plot(hq["step"], hq["value"], color="tab:purple", lw=2, marker="o", ms=3,
                               label="held-out mean max-Q")
        ax_h.set_ylabel("held-out mean max-Q", color="tab:purple")
        ax_h.set_xlabel("environment steps")
        ax_r = ax_h.twinx()
        if ev_ret["step"]:
            mean, std = np.array(ev_ret["mean"]), np.array(ev_ret["std"])
            lines += ax_r.plot(ev_ret["step"], mean, color="tab:green", lw=1.5, marker="s", ms=3,
                               label="eval return (mean ± std over eval episodes)")
            ax_r.fill_between(ev_ret["step"], mean - std, mean + std, color="tab:green", alpha=0.15)
        ax_r.set_ylabel("eval return", color="tab:green")
        ax_h.legend(lines, [ln.get_label() for ln in lines], loc="upper left", fontsize=8)
        ax_h.set_title("over training: held-out Q (DQN paper, Fig. 2) and evaluation return", fontsize=10)
        ax_h.grid(alpha=0.25)
    else:
        ax_h.set_axis_off()
        ax_h.text(0.5, 0.5, "no training metrics (metrics.csv) for this model", ha="center", va="center",
                  transform=ax_h.transAxes)
    caption = f"Eval protocol: {data['eval_protocol']}"
    fig.text(0.07, 0.015, "\n".join(textwrap.wrap(caption, 150)), fontsize=8, color="dimgray")
    fig.savefig(png, dpi=100)
    plt.close(fig)
