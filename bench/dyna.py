"""Dyna-DQN vs model-free DQN on MinAtar, seeded. The target: Dyna-DQN ahead of both model-free baselines on
>= 3 of 5 games, 3 seeds each.

Three agents per game and seed, all from the ``dqn_minatar`` preset with the same overrides:

* ``dqn``: plain DQN (one gradient step of ``batch_size`` real transitions per env step);
* ``dqn-rr``: plain DQN with Dyna's total replay ratio (``gradient_steps = 1 + imagined_ratio``), the
  baseline that matters (van Hasselt et al. 2019: replay-heavy model-free DQN matches SimPLe);
* ``dyna``: DQN + world model (the ``model:`` section, ``--world-model CODEC-DYNAMICS``), each batch
  ``batch_size`` real + ``model.imagined_ratio x batch_size`` imagined transitions;
* optionally ``simple`` (``--simple``): the DQN learns only in the model.

Scores are the trainer's final greedy evaluation in the real env (``eval_episodes`` episodes), plus the
best evaluation. Prints a Markdown table and a JSON line per run.

    python bench/dyna.py --games Breakout --seeds 0 --steps 40000
    python bench/dyna.py --summarize run1.log run2.log   # one table from several runs' outputs
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rlmorning import api

COMMON = ["eval_every={eval_every}", "eval_episodes={eval_episodes}", "checkpoint_every=0", "log_every=5000",
          "learning_starts=2000", "eps_decay_steps={decay}", "torch_threads={threads}"]
DYNA = ["model.codec={codec}", "model.dynamics={dynamics}", "model.imagined_ratio={ratio}",
        "model.learning_starts=2000", "model.imagine_starts={imagine}", "model.train_freq={model_freq}",
        "model.kstep_every=2000"]


def variants(args: argparse.Namespace) -> dict[str, list[str]]:
    from rlmorning.agents.dyna import parse_world_model  # noqa: PLC0415

    codec, dynamics = parse_world_model(args.world_model)
    fill = {"codec": codec, "dynamics": dynamics, "ratio": args.imagined_ratio, "imagine": args.imagine_starts,
            "model_freq": args.model_train_freq}
    dyna = [d.format(**fill) for d in DYNA]
    out = {
        "dqn": [],
        "dqn-rr": [f"gradient_steps={1 + round(args.imagined_ratio)}"],
        "dyna": dyna,
    }
    if args.simple:
        out["simple"] = [d for d in dyna if not d.startswith("model.imagined_ratio")] + ["model.mode=simple"]
        out["simple"] += args.dyna_set
    out["dyna"] += args.dyna_set
    if args.name:
        out[args.name] = out.pop("dyna")
    return out


def run_one(game: str, seed: int, name: str, extra: list[str], args: argparse.Namespace) -> dict:
    common = [c.format(eval_every=args.eval_every, eval_episodes=args.eval_episodes, decay=args.eps_decay_steps,
                       threads=args.threads) for c in COMMON]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = api.train("dqn", f"MinAtar/{game}", config="dqn_minatar", run_dir=Path(tmp) / "run",
                            steps=args.steps, seed=seed, device="cpu", progress=False, overrides=common + extra)
        wall = time.perf_counter() - t0
        rows = (Path(tmp) / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    col = header.index("eval_return_mean")
    evals = [float(r.split(",")[col]) for r in rows[1:] if len(r.split(",")) > col and r.split(",")[col]]
    return {"game": game, "seed": seed, "agent": name, "steps": args.steps, "final_eval": evals[-1] if evals else None,
            "best_eval": summary["best_eval"], "evals": evals, "wall_s": round(wall, 1)}


def summary(results: list[dict]) -> str:
    """A Markdown table of the runs (final and best greedy eval, mean +- std over seeds) and, per game and
    model-based agent (``dyna`` and any ``--name``d variant), whether its mean final eval beats both
    model-free baselines (the target: at least 3 of 5 games, 3 seeds each)."""
    games = list(dict.fromkeys(r["game"] for r in results))
    agents = list(dict.fromkeys(r["agent"] for r in results))
    planners = [a for a in agents if a not in ("dqn", "dqn-rr")]
    lines = ["| game | agent | seeds | final eval (mean +- std) | best eval (mean) | wall s (mean) |",
             "|---|---|---:|---:|---:|---:|"]
    wins = dict.fromkeys(planners, 0)
    judged = dict.fromkeys(planners, 0)
    full = dict.fromkeys(planners, True)
    for game in games:
        finals: dict[str, float] = {}
        seeds: dict[str, int] = {}
        for name in agents:
            rs = [r for r in results if r["game"] == game and r["agent"] == name]
            if not rs:
                continue
            ends = np.array([np.nan if r["final_eval"] is None else r["final_eval"] for r in rs], dtype=float)
            finals[name], seeds[name] = float(ends.mean()), len(rs)
            best, wall = np.mean([r["best_eval"] for r in rs]), np.mean([r["wall_s"] for r in rs])
            lines.append(f"| {game} | {name} | {len(rs)} | {ends.mean():.2f} +- {ends.std():.2f} | {best:.2f} "
                         f"| {wall:.0f} |")
        if not {"dqn", "dqn-rr"} <= finals.keys():
            continue
        for name in planners:
            if name not in finals:
                continue
            judged[name] += 1
            full[name] &= min(seeds[name], seeds["dqn"], seeds["dqn-rr"]) >= 3
            beats = finals[name] > max(finals["dqn"], finals["dqn-rr"])
            wins[name] += beats
            lines.append(f"| {game} | {name} beats both? | | **{'yes' if beats else 'no'}** | | |")
    lines.append("")
    for name in planners:
        if judged[name] >= 5 and full[name]:
            verdict = "met" if wins[name] >= 3 else "not met"
        else:
            verdict = "not measured in full yet"
        label = "Dyna-DQN" if name == "dyna" else f"Dyna-DQN ({name})"
        lines.append(f"{label} beats both baselines on {wins[name]} of {judged[name]} games; the target "
                     f"(>= 3 of 5 games, 3 seeds each): {verdict}.")
    return "\n".join(lines)


def read_logs(paths: list[str]) -> list[dict]:
    """The JSON run lines of earlier ``bench/dyna.py`` outputs."""
    out = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """This script's command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="+", default=["Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000)
    p.add_argument("--agents", nargs="+", help="subset of dqn dqn-rr dyna simple")
    p.add_argument("--world-model", default="vae-gru", help="CODEC-DYNAMICS, e.g. vae-gru, grid-ae-conv-gru")
    p.add_argument("--imagined-ratio", type=float, default=1.0)
    p.add_argument("--imagine-starts", type=int, default=5_000)
    p.add_argument("--model-train-freq", type=int, default=8)
    p.add_argument("--eps-decay-steps", type=int, default=50_000)
    p.add_argument("--eval-every", type=int, default=10_000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--simple", action="store_true", help="also run the SimPLe-style mode")
    p.add_argument("--dyna-set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="extra DQN config overrides for the model-based agents only, repeatable "
                        "(e.g. model.imagined_reward=mean)")
    p.add_argument("--name", help="report the dyna agent under this name (a variant beside plain 'dyna' in "
                                  "--summarize tables); default: dyna")
    p.add_argument("--summarize", nargs="+", metavar="LOG",
                   help="only print the summary of earlier outputs of this script (their JSON lines)")
    args = p.parse_args(argv)
    if args.name in ("dqn", "dqn-rr", "simple"):
        p.error(f"--name {args.name} is a baseline's name; choose another, e.g. dyna-mean")
    return args


def main() -> None:
    args = parse_args()
    if args.summarize:
        print(summary(read_logs(args.summarize)))
        return
    agents = variants(args)
    if args.agents:
        agents = {k: v for k, v in agents.items() if k in args.agents or (k == args.name and "dyna" in args.agents)}
    print(f"# {datetime.datetime.now():%Y-%m-%d %H:%M}, {args.steps} steps, seeds {args.seeds}, "
          f"world_model={args.world_model}, imagined_ratio={args.imagined_ratio}, dyna overrides {args.dyna_set}",
          flush=True)
    results = []
    for game in args.games:
        for seed in args.seeds:
            for name, extra in agents.items():
                res = run_one(game, seed, name, extra, args)
                print(json.dumps(res), flush=True)
                results.append(res)
    print()
    print(summary(results))


if __name__ == "__main__":
    main()
