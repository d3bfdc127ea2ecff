"""``rlmorning html``: one self-contained HTML page per set of runs, for a person to open in a browser.

The page (Jinja2 template ``rlmorning/viz/report.html.j2``, package data) holds

* an **episode player**: an evaluation episode recorded by :func:`rlmorning.viz.video.record` (or an MP4 and
  its JSON sidecar given with ``--video``), with the Q trace of every action below it. Video and trace
  share one cursor: clicking the trace seeks the video to that step, playing the video moves the cursor,
  and a panel shows the current step's Q per action, the action taken, the reward, score and lives;
* **training curves** of each run's ``metrics.csv`` (eval return with its protocol, held-out Q, loss, sps,
  epsilon); runs that differ only in seed are drawn as mean ± std with thin per-seed lines;
* a **run card** per run: resolved config, package versions, eval protocol, wall time, best/final eval;
  for a run whose agent holds a world model (:class:`~rlmorning.agents.capabilities.HasWorldModel`) a
  **dream strip** (frames of :func:`rlmorning.viz.dream.dream`: real, imagined, difference), and for one
  with an NTM memory core (:class:`~rlmorning.agents.capabilities.HasMemory`) the **memory plot** of
  :func:`rlmorning.viz.memory.plot_memory`, both as inline PNGs.

An episode recorded with saliency (``record --saliency``, or ``saliency=True`` here) comes with a second
video of the same episode without the heatmap (named in its sidecar as ``saliency.video_without``): the
player shows that one and a toggle switches to the saliency video at the same step. A sidecar without
saliency gets no toggle.

Everything is inlined (plotly.js, styles, plot data, the sidecar, the video as a base64 ``data:`` URL),
so the page needs no network and works from ``file://``; ``embed_video=False`` writes the video into
``<page stem>_files/`` beside the page instead (one folder to move around). To keep long episodes small
(a 14,363-step Breakout episode makes a 6.6 MB page), the recorded video is the game screen only (the page
draws the Q panel), the sidecar's Q-values travel as one base64 float32 array (:func:`packed_sidecar`) and
the Q trace as float32 typed arrays.

Why Plotly (against Bokeh and Altair):

* *Offline and size*: plotly.js ships inside the ``plotly`` wheel, so ``plotly.offline.get_plotlyjs()``
  inlines it with no network at build or view time. It is large: 4.82 MB (plotly 7.1.0, plotly.js 4.1.1,
  measured), which is most of a page (about 5 MB for a 200-step Breakout run with a 245-step episode).
  Inline BokehJS is smaller (reported around 1.7 MB; not measured here), but Altair's offline HTML needs
  the native ``vl-convert-python`` wheel to bundle vega/vega-lite/vega-embed (its default HTML loads
  them from a CDN).
* *What the page needs*: hover on every trace and a ``plotly_click`` event with the clicked x, which is
  all the video cursor needs; Bokeh would need ``CustomJS`` snippets written as strings in Python, and
  Vega signals are harder to wire to a ``<video>``. Figures are built in Python (``plotly.graph_objects``)
  and drawn by ``Plotly.newPlot``: there is no hand-written charting code, only the glue that moves the
  cursor.
* *Maintenance*: one pure-Python dependency (plus ``narwhals``) with the JS pinned to the Python
  release, MIT licensed, released often; Bokeh pulls tornado, pillow and contourpy.

Video codec: Debian's Chromium (the browser of the tests, ``tests/test_html_report.py``) plays the
recorder's H.264/yuv420p MP4 (``canPlayType('video/mp4; codecs="avc1.42E01E"')`` is ``probably``), so
the MP4 is used as is; no WebM transcoding is needed.
"""

from __future__ import annotations

import base64
import json
import math
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from rlmorning.errors import RlmError, unreadable
from rlmorning.outputs import output_file
from rlmorning.viz.curves import RunData, differing_keys, group_key, group_label, group_series, load_run
from rlmorning.viz.rollout import DEFAULT_SEED

CURVES: tuple[tuple[str, str], ...] = (
    ("eval_return_mean", "eval return"),
    ("heldout_q", "held-out Q (mean max Q of fixed states)"),
    ("loss", "loss"),
    ("sps", "env steps per second"),
    ("epsilon", "epsilon (exploration)"),
)
"""metrics.csv columns drawn as training curves, with their titles."""

VIDEO_TYPES = {".mp4": "video/mp4", ".webm": "video/webm"}
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
LONG_EPISODE = 5000
"""Episodes longer than this draw the Q trace with WebGL (``scattergl``)."""
DREAM_HORIZON = 14
DREAM_COLUMNS = 8
DREAM_GAP = 6
"""The dream strip: an open-loop dream of ``DREAM_HORIZON`` steps, ``DREAM_COLUMNS`` of its frames side by
side with white gaps of ``DREAM_GAP`` pixels."""


def build_report(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    video: str | Path | None = None,
    sidecar: str | Path | None = None,
    checkpoint: str = "best",
    seed: int = DEFAULT_SEED,
    max_steps: int | None = None,
    episode: bool = True,
    embed_video: bool = True,
    saliency: bool = False,
    video_panel: bool = False,
    device: str = "cpu",
    progress: bool = False,
) -> dict[str, Path]:
    """Write the HTML page of ``runs`` to ``out``; returns ``{"html": out}`` (plus ``"video"``, and
    ``"saliency_video"`` with saliency, if not embedded).

    The episode is ``video`` (an MP4 and its sidecar, default: the MP4's path with ``.json``) or else a new
    recording of the first run's ``checkpoint`` from ``seed`` (``max_steps`` bounds it; ``saliency`` records
    it with perturbation saliency too, slow): the game screen only, as the page has its own Q panel
    (``video_panel`` keeps record's panel in the video, about 4 times the bytes); ``episode=False`` leaves
    the player out. Run cards of world-model and NTM runs get a dream strip or memory plot made from the same
    ``checkpoint`` and ``seed``.
    """
    if not runs:
        raise RlmError("html needs at least one run directory")
    if max_steps is not None and max_steps < 1:
        raise RlmError(f"--max-steps must be >= 1, got {max_steps}")
    if (video is not None or sidecar is not None) and not episode:
        raise RlmError("--video and --no-video exclude each other")
    if sidecar is not None and video is None:
        raise RlmError("--sidecar needs --video")
    if (saliency or video_panel or max_steps is not None) and (video is not None or not episode):
        flag = "--saliency" if saliency else "--video-panel" if video_panel else "--max-steps"
        raise RlmError(f"{flag} is for the recorded episode: it excludes --video and --no-video")
    if not embed_video and not episode:
        raise RlmError("--video-file is for the episode player: it excludes --no-video")
    out = output_file(out, (".html", ".htm"), "report.html")
    data = [_load(r) for r in runs]
    with tempfile.TemporaryDirectory(prefix="rlmorning-html-") as tmp:
        ep: dict[str, Any] | None = None
        if episode:
            if video is not None:
                mp4, side = _given_video(Path(video), None if sidecar is None else Path(sidecar))
            else:
                mp4, side = _record(data[0].path, Path(tmp), checkpoint=checkpoint, seed=seed, max_steps=max_steps,
                                    saliency=saliency, overlay=video_panel, device=device, progress=progress)
            ep = _episode(mp4, side)
        extras = [_card_extras(d.path, Path(tmp) / f"extras-{i}", checkpoint=checkpoint if i == 0 else
                               _run_checkpoint(checkpoint), seed=seed, device=device) for i, d in enumerate(data)]
        return _write(out, data, ep, embed_video, extras)


def _load(run: str | Path) -> RunData:
    p = Path(run)
    if p.exists() and not p.is_dir():
        raise RlmError(f"'{run}' is not a run directory (it is a file)")
    data = load_run(p)
    if not data.rows:
        raise RlmError(f"run '{run}' has no metrics yet (metrics.csv has no rows)")
    return data


# ----------------------------------------------------------------------------------------------- episode
def _record(run: Path, folder: Path, *, checkpoint: str, seed: int, max_steps: int | None, saliency: bool,
            overlay: bool, device: str, progress: bool) -> tuple[Path, Path]:
    from rlmorning.viz.video import record

    results = record(str(run), episodes=1, checkpoint=checkpoint, out=folder, max_steps=max_steps, seed=seed,
                     overlay=overlay, saliency=saliency, device=device, progress=progress, fmt="mp4")
    return results[0]["video"], results[0]["sidecar"]


def _given_video(mp4: Path, side: Path | None) -> tuple[Path, Path]:
    if not mp4.is_file():
        raise RlmError(f"video '{mp4}' does not exist")
    if mp4.suffix.lower() not in VIDEO_TYPES:
        raise RlmError(f"--video must be an .mp4 or .webm file (from rlmorning record), got '{mp4}'")
    side = side or mp4.with_suffix(".json")
    if not side.is_file():
        raise RlmError(f"video '{mp4}' has no sidecar '{side}' (rlmorning record writes both; or give --sidecar)")
    return mp4, side


def _episode(mp4: Path, side: Path) -> dict[str, Any]:
    """The sidecar (per-step data) plus the video file; checks that it is a record sidecar."""
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(side, exc) from None
    except json.JSONDecodeError:
        raise RlmError(f"'{side}' is not JSON (expected the sidecar written by rlmorning record)") from None
    per_step = data.get("per_step") if isinstance(data, dict) else None
    if not isinstance(per_step, dict) or not isinstance(data.get("fps"), int | float) or "action" not in per_step:
        raise RlmError(f"'{side}' is not a rlmorning record sidecar (no fps or per_step actions)")
    per_step.pop("obs_sha1", None)  # hashes are for replay checks, not for the page
    steps = len(per_step["action"])
    defaults = {"env": "?", "agent": "?", "checkpoint": "?", "checkpoint_step": None, "eval_protocol": "not recorded",
                "seed": "?", "steps": steps, "frames": steps + 1, "score": sum(per_step.get("reward") or []),
                "action_meanings": [], "frame_size": None, "final": {}, "terminated": False, "truncated": False,
                "stopped_at_max_steps": False}
    for key, value in defaults.items():
        if data.get(key) is None:
            data[key] = value
    ep: dict[str, Any] = {"video_path": mp4, "sidecar_path": side, "sidecar": data, "saliency_path": None,
                          "saliency_baked": False}
    sal = data.get("saliency")
    if isinstance(sal, dict) and isinstance(sal.get("video_without"), str):
        # the sidecar's video shows the heatmap, video_without the same episode without it: start plain
        plain = mp4.parent / Path(sal["video_without"]).name
        salient = mp4.parent / Path(str(data.get("video"))).name if mp4 == plain else mp4
        for path, what in ((plain, "without"), (salient, "with")):
            if not path.is_file():
                raise RlmError(f"sidecar '{side}' names '{path.name}' (the episode {what} saliency), which is not "
                               f"in '{mp4.parent}'")
        ep["video_path"], ep["saliency_path"] = plain, salient
    elif isinstance(sal, dict):
        ep["saliency_baked"] = True  # recorded before record wrote a copy without the heatmap
    return ep


def _q_trace(side: dict[str, Any]) -> dict[str, Any] | None:
    """Plotly figure of Q(s_t, a) for every action against the step t (the final state included)."""
    import plotly.graph_objects as go

    qs = list(side["per_step"].get("q_values") or [])
    final = (side.get("final") or {}).get("q_values")
    qs.append(final)
    if not any(q is not None for q in qs):
        return None
    n = max(len(q) for q in qs if q is not None)
    names = list(side.get("action_meanings") or [])
    names += [f"action {i}" for i in range(len(names), n)]
    # float32 (the agent's precision) as Plotly's base64 typed arrays; x is the index, i.e. the step
    q = np.array([[np.nan] * n if v is None else v for v in qs], dtype=np.float32)
    scatter = go.Scattergl if len(qs) > LONG_EPISODE else go.Scatter
    fig = go.Figure()
    for a in range(n):
        fig.add_trace(scatter(y=q[:, a], mode="lines", name=f"Q({names[a]})", line={"width": 1.4},
                              hovertemplate="%{y:.4f}"))
    rewards = np.array(side["per_step"].get("reward") or [], dtype=np.float64)
    hit = np.flatnonzero(rewards != 0)
    if len(hit):
        top = np.nanmax(q[hit].astype(np.float64), axis=1)
        fig.add_trace(scatter(x=hit, y=top, mode="markers", name="reward", marker={"symbol": "star", "size": 9},
                              customdata=rewards[hit], hovertemplate="reward %{customdata:g}<extra></extra>"))
    fig.update_layout(
        template="plotly_white", height=300, margin={"l": 60, "r": 20, "t": 30, "b": 40}, hovermode="x",
        title={"text": "Q-values of the episode: click a step to seek the video", "font": {"size": 14}},
        xaxis={"title": {"text": "agent step (video frame)"}}, yaxis={"title": {"text": "Q(s, a)"}},
        legend={"orientation": "h", "y": -0.25},
        shapes=[{"type": "line", "xref": "x", "yref": "paper", "x0": 0, "x1": 0, "y0": 0, "y1": 1,
                 "line": {"color": "#d62728", "width": 2}}],
    )
    return json.loads(fig.to_json())


# ------------------------------------------------------------------------------------------------ curves
def _curve_figures(data: list[RunData]) -> list[dict[str, Any]]:
    """One figure per metric of :data:`CURVES` that some run logged; seeds of one setting as mean ± std."""
    import plotly.graph_objects as go
    from plotly.colors import hex_to_rgb, qualitative

    groups: dict[str, list[RunData]] = {}
    for d in data:
        groups.setdefault(group_key(d.config), []).append(d)
    differing = differing_keys([members[0].config for members in groups.values()])
    palette = qualitative.Plotly
    figures = []
    for column, title in CURVES:
        if not any(column in d.numeric_columns() for d in data):
            continue
        fig = go.Figure()
        for gi, members in enumerate(groups.values()):
            members = [m for m in members if column in m.numeric_columns()]
            if not members:
                continue
            color = palette[gi % len(palette)]
            band = "rgba({}, {}, {}, 0.2)".format(*hex_to_rgb(color))
            label = group_label(members[0].config, differing)
            steps, mean, std, suffix = group_series(members, column)
            label += suffix
            if len(members) > 1:
                for m in members:
                    s, v = m.series(column)
                    fig.add_trace(go.Scatter(x=s, y=v, mode="lines+markers", name=f"{m.path.name} (seed {m.seed})",
                                             legendgroup=str(gi), showlegend=False, opacity=0.45,
                                             line={"color": color, "width": 0.8}, marker={"size": 3, "color": color},
                                             hovertemplate=f"seed {m.seed}: %{{y:.4g}}<extra></extra>"))
            if std is not None and len(steps):
                fig.add_trace(go.Scatter(
                    x=np.concatenate([steps, steps[::-1]]), y=np.concatenate([mean + std, (mean - std)[::-1]]),
                    mode="lines", fill="toself", fillcolor=band, line={"width": 0}, hoverinfo="skip",
                    legendgroup=str(gi),
                    showlegend=False, name=f"{label} band",
                ))
            fig.add_trace(go.Scatter(
                x=steps, y=mean, mode="lines+markers", name=label, legendgroup=str(gi),
                line={"color": color, "width": 2}, marker={"size": 5, "color": color},
                customdata=std if std is not None else None,
                hovertemplate="%{y:.4g}" + (" ± %{customdata:.3g}" if std is not None else "") + "<extra></extra>",
            ))
        subtitle = ""
        if column == "eval_return_mean":
            protocols = sorted(set.union(*(d.protocols() for d in data)))
            subtitle = "<br><sub>eval protocol: " + "; ".join(protocols or ["not recorded"]) + "</sub>"
        fig.update_layout(
            template="plotly_white", height=340, hovermode="x unified",
            title={"text": title + subtitle, "font": {"size": 14}},
            margin={"l": 60, "r": 20, "t": 70 if subtitle else 40, "b": 40},
            xaxis={"title": {"text": "environment steps"}}, legend={"orientation": "h", "y": -0.2},
        )
        figures.append({"id": f"curve-{column}", "column": column, "figure": json.loads(fig.to_json())})
    return figures


# -------------------------------------------------------------------------------------------------- cards
def _card(d: RunData) -> dict[str, Any]:
    evals = [(float(r["step"]), float(r["eval_return_mean"])) for r in d.rows
             if _num(r.get("eval_return_mean")) and _num(r.get("step"))]
    walls = [float(r["wall_time"]) for r in d.rows if _num(r.get("wall_time"))]
    steps = [float(r["step"]) for r in d.rows if _num(r.get("step"))]
    versions: dict[str, Any] = {}
    vpath = d.path / "versions.json"
    if vpath.is_file():
        try:
            versions = json.loads(vpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            versions = {"versions.json": "unreadable"}
    protocols = sorted(d.protocols()) or ([versions["eval_protocol"]] if versions.get("eval_protocol") else [])
    best = max(evals, key=lambda e: e[1]) if evals else None
    return {
        "name": d.path.name,
        "path": str(d.path),
        "env": d.config.get("env"),
        "agent": d.config.get("agent"),
        "seed": d.config.get("seed"),
        "steps": f"{int(max(steps)):,}" if steps else "?",
        "wall_time": _duration(max(walls)) if walls else "?",
        "best": None if best is None else {"value": f"{best[1]:.4g}", "step": f"{int(best[0]):,}"},
        "final": None if not evals else {"value": f"{evals[-1][1]:.4g}", "step": f"{int(evals[-1][0]):,}"},
        "evaluations": len(evals),
        "protocols": protocols,
        "versions": {k: v for k, v in versions.items() if k != "eval_protocol"},
        "config": (d.path / "config.yaml").read_text(encoding="utf-8", errors="replace"),
    }


def _run_checkpoint(checkpoint: str) -> str:
    """The checkpoint of the runs after the first: a PATH given for the first run's episode means ``best``."""
    return checkpoint if checkpoint in ("best", "latest") else "best"


def _card_extras(run: Path, folder: Path, *, checkpoint: str, seed: int, device: str) -> dict[str, Any]:
    """The run card's pictures: ``dream`` (a world model's dream strip) and ``memory`` (an NTM's memory plot),
    as ``{"src": data URL, "caption": ...}``; none for other agents or a run without checkpoints yet."""
    from rlmorning.agents.capabilities import HasMemory
    from rlmorning.api import load_policy
    from rlmorning.run import find_checkpoint
    from rlmorning.viz.dream import world_model_of

    try:
        find_checkpoint(run, checkpoint)
    except RlmError:
        return {}  # a run still before its first checkpoint: curves and card only
    agent, _ = load_policy(run, checkpoint, device)
    extras: dict[str, Any] = {}
    folder.mkdir(parents=True, exist_ok=True)
    if world_model_of(agent) is not None:
        extras["dream"] = _dream_strip(run, folder, checkpoint=checkpoint, seed=seed, device=device)
    if isinstance(agent, HasMemory) and agent.has_memory:
        from rlmorning.viz.memory import plot_memory

        png = plot_memory(run, checkpoint, out=folder / "memory.png", seed=seed, device=device)
        extras["memory"] = {
            "src": _png_url(png.read_bytes()),
            "caption": f"Memory of one greedy episode ({agent.core_name} core; checkpoint {checkpoint}, seed {seed}): "
                       "inputs, outputs and the NTM's write and read weightings over the memory slots, as "
                       "rlmorning plot-memory draws them.",
        }
    return extras


def _dream_strip(run: Path, folder: Path, *, checkpoint: str, seed: int, device: str) -> dict[str, Any]:
    """Frames of the run's dream video (:func:`rlmorning.viz.dream.dream`) side by side, as a PNG data URL."""
    import cv2
    import imageio_ffmpeg

    from rlmorning.viz.dream import dream

    res = dream(run, horizon=DREAM_HORIZON, out=folder / "dream.mp4", seed=seed, checkpoint=checkpoint,
                device=device, scale=12, display_size=128)
    reader = imageio_ffmpeg.read_frames(str(res["video"]))
    w, h = next(reader)["size"]
    frames = [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]
    shown = sorted({int(round(t)) for t in np.linspace(0, len(frames) - 1, min(len(frames), DREAM_COLUMNS))})
    gap = np.full((h, DREAM_GAP, 3), 255, np.uint8)
    strip = np.concatenate([part for t in shown for part in (frames[t], gap)][:-1], axis=1)
    ok, png = cv2.imencode(".png", np.ascontiguousarray(strip[..., ::-1]))
    if not ok:
        raise RlmError(f"could not encode the dream strip of '{run}' as PNG")
    return {
        "src": _png_url(png.tobytes()),
        "steps": shown,
        "caption": f"The world model's open-loop dream (checkpoint {checkpoint}, seed {seed}, uniformly random "
                   f"actions), steps {', '.join(map(str, shown))} of {res['steps']}: real frame, the model's "
                   "prediction and their difference; green borders mark observed frames, orange imagined ones "
                   "(as rlmorning dream draws them).",
    }


def _png_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _num(s: Any) -> bool:
    try:
        return math.isfinite(float(s))
    except (TypeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s"
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min {s:02d} s" if h else f"{m} min {s:02d} s"


# ------------------------------------------------------------------------------------------------- render
def script_json(obj: Any) -> str:
    """JSON safe to place inside ``<script>``: ``<``, ``>`` and ``&`` are escaped as ``\\u00XX``."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_jsonable)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _clean(obj: Any) -> Any:
    """NaN and inf (not JSON) become null."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def packed_sidecar(side: dict[str, Any]) -> dict[str, Any]:
    """The sidecar as the page holds it: ``per_step.q_values`` (float32 numbers) as one base64 float32 array
    ``q_values_f32 = {"shape": [T, A], "b64": ...}``, a quarter of the JSON's size; the page unpacks it.

    Left as JSON if a step has no Q-values or a value is not a float32 (packing must not change a number)."""
    qs = side["per_step"].get("q_values")
    if not qs or any(q is None for q in qs) or len({len(q) for q in qs}) != 1:
        return side
    arr = np.asarray(qs, dtype=np.float64)
    packed = arr.astype("<f4")
    if not np.array_equal(packed.astype(np.float64), arr, equal_nan=True):
        return side
    per_step = {k: v for k, v in side["per_step"].items() if k != "q_values"}
    per_step["q_values_f32"] = {"shape": list(packed.shape), "b64": base64.b64encode(packed.tobytes()).decode("ascii")}
    return {**side, "per_step": per_step}


def _video_src(mp4: Path, out: Path, embed: bool) -> tuple[str, Path | None]:
    """The ``src`` of ``mp4`` in the page: a base64 ``data:`` URL, or a copy in ``<out stem>_files/``."""
    mime = VIDEO_TYPES.get(mp4.suffix.lower(), "video/mp4")
    if embed:
        return f"data:{mime};base64," + base64.b64encode(mp4.read_bytes()).decode("ascii"), None
    folder = out.parent / f"{out.stem}_files"
    folder.mkdir(exist_ok=True)
    shutil.copyfile(mp4, folder / mp4.name)
    return f"{folder.name}/{mp4.name}", folder / mp4.name


def _write(out: Path, data: list[RunData], ep: dict[str, Any] | None, embed_video: bool,
           extras: list[dict[str, Any]]) -> dict[str, Path]:
    import jinja2
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    paths = {"html": out}
    episode = None
    if ep is not None:
        side, mp4 = ep["sidecar"], Path(ep["video_path"])
        src, copy = _video_src(mp4, out, embed_video)
        if copy is not None:
            paths["video"] = copy
        saliency_src = None
        if ep["saliency_path"] is not None:
            saliency_src, copy = _video_src(Path(ep["saliency_path"]), out, embed_video)
            if copy is not None:
                paths["saliency_video"] = copy
        episode = {
            "src": src, "mime": VIDEO_TYPES.get(mp4.suffix.lower(), "video/mp4"), "sidecar": side,
            "qtrace": _q_trace(side), "video_name": mp4.name, "sidecar_name": Path(ep["sidecar_path"]).name,
            "saliency_src": saliency_src, "saliency_baked": ep["saliency_baked"],
        }
    env = jinja2.Environment(loader=jinja2.PackageLoader("rlmorning.viz", "."),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    curves = _curve_figures(data)
    page_data = {
        "episode": None if episode is None else {"sidecar": packed_sidecar(episode["sidecar"]),
                                                 "qtrace": episode["qtrace"]},
        "curves": [{"id": c["id"], "figure": c["figure"]} for c in curves],
        "config": PLOTLY_CONFIG,
    }
    try:
        version = metadata.version("rlmorning")
    except metadata.PackageNotFoundError:
        version = "?"
    html = env.get_template("report.html.j2").render(
        title=" + ".join(d.path.name for d in data),
        runs=[{**_card(d), "dream": None, "memory": None, **x} for d, x in zip(data, extras, strict=True)],
        curves=curves,
        episode=episode,
        missing=[title for column, title in CURVES if not any(c["column"] == column for c in curves)],
        plotly_js=Markup(get_plotlyjs()),
        page_data=Markup(script_json(_clean(page_data))),
        version=version,
    )
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise RlmError(f"cannot write '{out}': {exc.strerror or exc}") from None
    return paths
