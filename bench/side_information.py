"""Does privileged information help a pixel agent on Atari 100k? DrQ(eps) vs DrQ(eps) + a RAM hallucination
branch vs DrQ(eps) + a YOLO object head, on games with a RAM object table, 3 seeds each.

Every run is ``rlmorning train dqn --env GAME --config atari100k --seed S`` (plus ``--set aux=...``) trained and
evaluated by ``bench/atari100k.py``'s runner: 100k agent steps, 100 final evaluation episodes (true game score;
the evaluation env gives no RAM, and the agent acts on pixels only). Runs are resumable pieces under
``ROOT/VARIANT/GAME/seedS``; the plain DrQ(eps) runs are shared with ``bench/atari100k.py`` (``--drq-root``).

``--summarize`` prints, per game and variant, the mean final score over seeds and the wall time per run; per run,
the final score's spread, the evaluation by half the run, the training return at each quarter and the
auxiliary metrics' median and 5-95% range (``aux_grad_ratio``, ``hallucination_cos``, ``teacher_loss``); hands
all runs to ``rlmorning report`` (human-normalised IQM with bootstrap CIs per variant); and gives the heads'
quality on held-out frames (a seeded random policy in the RAM env, seeds never used in training), measured
as soon as each run finishes and kept in its folder (``head_quality.json``):

* object head: per class, the hit rate (objects on screen with a predicted box of the right class at IoU
  >= 0.5) and the mean IoU of the best such box (0 when none);
* hallucination branch: cosine similarity and R^2 of the hallucinated features against the RAM teacher's.

    python bench/side_information.py                        # 4 games x 3 seeds x 2 aux variants (+ DrQ(eps))
    python bench/side_information.py --games Breakout --seeds 0 --variants objects
    python bench/side_information.py --summarize
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import datetime
import functools
import importlib.util
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_GAMES = ["Breakout", "Pong", "Boxing", "MsPacman"]  # the games with a RAM object table (envs/atari_objects)
VARIANTS = {"drq": [], "hallucination": ["aux=hallucination"], "objects": ["aux=objects"]}


def _atari100k() -> Any:
    spec = importlib.util.spec_from_file_location("bench_atari100k", HERE / "atari100k.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def variant_root(args: argparse.Namespace, variant: str) -> Path:
    return args.drq_root if variant == "drq" else args.root / variant


def train(args: argparse.Namespace) -> None:
    runner = _atari100k()
    for variant in args.variants:
        ns = argparse.Namespace(games=args.games, seeds=args.seeds, steps=args.steps, parallel=args.parallel,
                                threads=args.threads, root=variant_root(args, variant),
                                set=VARIANTS[variant] + args.set)
        ns.root.mkdir(parents=True, exist_ok=True)
        print(f"== {variant} ({' '.join(ns.set) or 'atari100k preset'}) -> {ns.root}", flush=True)
        if not runner.train_all(ns):
            break
        if variant != "drq":  # measured now: a session may end before --summarize, and the folder with it
            for game in args.games:
                for seed in args.seeds:
                    run = runner.run_dir(ns.root, game, seed)
                    if runner.final_eval(run) is not None:
                        quality = cached_head_quality(run, variant, game, args.heldout)
                        print(f"{game} seed {seed} ({variant}): heads on {args.heldout} held-out frames: {quality}",
                              flush=True)


# ------------------------------------------------------------------------------------------- head quality
def heldout_frames(game: str, steps: int = 1000, seed: int = 900_001) -> tuple[np.ndarray, np.ndarray]:
    """Observations ``uint8 [N, 4, 84, 84]`` and their RAM ``[N, 128]`` from a seeded random policy in the
    RAM env (a seed no training run uses)."""
    from rlmorning.envs import make_vector, resolve

    env = make_vector(resolve(game), 1, seed, ram=True)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, rams = [], []
    for _ in range(steps):
        actions = rng.integers(0, env.single_action_space.n, 1)
        nxt, _, _, _, info = env.step(actions)
        frames.append(obs[0])
        rams.append(info["obs_ram"][0])
        obs = nxt
    env.close()
    return np.stack(frames), np.stack(rams)


def detection_quality(agent: Any, game: str, obs: np.ndarray, ram: np.ndarray, batch: int = 100
                      ) -> dict[str, dict[str, float]]:
    """Per class: ``hit_rate`` and ``mean_iou`` of the object head on ``obs`` against the RAM boxes."""
    from torchvision.ops import box_iou

    from rlmorning.agents.nets.side_information import spatial_features
    from rlmorning.agents.nets.yolo import decode_boxes
    from rlmorning.envs.atari_objects import object_classes, ram_boxes

    classes = object_classes(game)
    head = agent.aux.detector
    ious: dict[int, list[float]] = {k: [] for k in range(len(classes))}
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            x = torch.as_tensor(obs[i:i + batch])
            fmap = spatial_features(agent.online.encoder, x).float()
            dets = decode_boxes(head(fmap), head.anchors, tuple(x.shape[-2:]), score_threshold=0.3)
            boxes, cls, valid = ram_boxes(game, ram[i:i + batch], tuple(x.shape[-2:]))
            for j, det in enumerate(dets):
                for k in np.flatnonzero(valid[j]):
                    mine = det.classes == int(cls[k])
                    best = 0.0
                    if mine.any():
                        t = torch.as_tensor(boxes[j, k])
                        truth = torch.cat([t[:2], t[:2] + t[2:]])[None]
                        pred = det.boxes[mine]
                        pred = torch.cat([pred[:, :2], pred[:, :2] + pred[:, 2:]], 1)
                        best = float(box_iou(pred, truth).max())
                    ious[int(cls[k])].append(best)
    return {classes[k]: {"objects": len(v), "hit_rate": float(np.mean(np.array(v) >= 0.5)) if v else float("nan"),
                         "mean_iou": float(np.mean(v)) if v else float("nan")} for k, v in ious.items()}


def hallucination_fit(agent: Any, obs: np.ndarray, ram: np.ndarray, batch: int = 100) -> dict[str, float]:
    """Cosine similarity (mean over frames) and R^2 (over all feature entries) of hallucinated vs teacher features."""
    from rlmorning.agents.nets.side_information import spatial_features

    hs, ts = [], []
    with torch.no_grad():
        for i in range(0, len(obs), batch):
            fmap = spatial_features(agent.online.encoder, torch.as_tensor(obs[i:i + batch])).float()
            hs.append(agent.aux.branch(fmap))
            ts.append(agent.aux.teacher(torch.as_tensor(ram[i:i + batch]))[1])
    h, t = torch.cat(hs), torch.cat(ts)
    cos = float(torch.nn.functional.cosine_similarity(h, t, dim=1, eps=1e-6).mean())
    ss_res = float(((t - h) ** 2).sum())
    ss_tot = float(((t - t.mean(0)) ** 2).sum())
    return {"cosine": cos, "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")}


def head_quality(run: Path, variant: str, game: str, frames: tuple[np.ndarray, np.ndarray]) -> str:
    from rlmorning.api import load_agent

    agent, _ = load_agent(run, "latest")
    obs, ram = frames
    if variant == "objects":
        q = detection_quality(agent, game, obs, ram)
        return "; ".join(f"{c}: hit {v['hit_rate']:.2f}, IoU {v['mean_iou']:.2f} ({v['objects']} on screen)"
                         for c, v in q.items())
    fit = hallucination_fit(agent, obs, ram)
    return f"cosine {fit['cosine']:.3f}, R^2 {fit['r2']:.3f}"


QUALITY_FILE = "head_quality.json"


@functools.cache
def _heldout(game: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    return heldout_frames(game, count)


def cached_head_quality(run: Path, variant: str, game: str, heldout: int) -> str:
    """:func:`head_quality` of a finished run, measured once and kept in ``run/head_quality.json`` (measured
    again for another variant or number of held-out frames)."""
    from rlmorning.run import atomic_write_bytes

    path = run / QUALITY_FILE
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("heldout") == heldout and saved.get("variant") == variant:
            return str(saved["text"])
    text = head_quality(run, variant, game, _heldout(game, heldout))
    atomic_write_bytes(path, json.dumps({"variant": variant, "heldout": heldout, "text": text}).encode())
    return text


# ---------------------------------------------------------------------------------------------- summary
def summarize(args: argparse.Namespace) -> None:
    runner = _atari100k()
    from rlmorning.report import write_report

    print(f"Side information on Atari 100k, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores; final score = 100-episode mean, true game score")
    print("| game | variant | seeds | mean final score | per seed | wall min/run | heads on held-out frames |")
    print("|---|---|---:|---:|---|---:|---|")
    finished: list[str] = []
    per_run: list[str] = []
    for game in args.games:
        for variant in args.variants:
            runs = [runner.run_dir(variant_root(args, variant), game, s) for s in args.seeds]
            done = [(r, runner.final_eval(r)) for r in runs]
            done = [(r, row) for r, row in done if row is not None]
            if not done:
                print(f"| {game} | {variant} | 0 | - | - | - | not run |")
                continue
            finished += [str(r) for r, _ in done]
            scores = np.array([float(row["eval_return_mean"]) for _, row in done])
            walls = [runner.recorded_wall(r) / 60 for r, _ in done]
            quality = "-"
            if variant != "drq":
                quality = " / ".join(f"seed {r.name[4:]}: {cached_head_quality(r, variant, game, args.heldout)}"
                                     for r, _ in done)
            print(f"| {game} | {variant} | {len(done)} | {scores.mean():.2f} | "
                  f"{', '.join(f'{s:.1f}' for s in scores)} | {np.mean(walls):.0f} | {quality} |", flush=True)
            per_run += [f"| {game} | {variant} | {r.name[4:]} | "
                        + " | ".join(runner.trace_cells(runner.run_trace(r))) + " |" for r, _ in done]
    if per_run:
        print("\n" + runner.PER_RUN_LEGEND)
        print("| game | variant | seed | " + runner.PER_RUN_HEADER + " |")
        print("|---|---|---:|" + runner.PER_RUN_RULE)
        print("\n".join(per_run), flush=True)
    if finished:
        rep = write_report(finished, out=args.root / "report.md", baseline="human", reps=args.reps)
        print("\n" + rep.summary())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    _atari100k().add_run_arguments(p, DEFAULT_GAMES, Path("runs/side-information"))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--drq-root", type=Path, default=Path("runs/atari100k"),
                   help="where the plain DrQ(eps) runs live (shared with bench/atari100k.py)")
    p.add_argument("--heldout", type=int, default=1000, help="held-out frames per game for the head quality")
    args = p.parse_args()
    if args.summarize:
        summarize(args)
    else:
        train(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
