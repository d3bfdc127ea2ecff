"""Seeded MinAtar learning runs with the ``dqn_minatar`` preset: does DQN still learn what it learned?

For each seed, one ``dqn_minatar`` run of ``--steps`` env steps (one torch thread) with a greedy evaluation of
``--eval-episodes`` episodes every ``--eval-every`` steps. Prints each seed's evaluations and the final mean over
seeds. Resumable: runs live in ``--out`` (a second call resumes interrupted runs from ``checkpoints/latest.pt``
and skips finished ones, whose results are cached as JSON there). Run seeds in two processes to use two cores.

    python bench/learn_minatar.py --seeds 0 1 2              # 3 seeds x 500k steps of MinAtar Breakout
    python bench/learn_minatar.py --seeds 0 & python bench/learn_minatar.py --seeds 1 2   # two cores
    python bench/learn_minatar.py --seeds 0 1 2 --summarize  # the table from finished runs only
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
from pathlib import Path

from _resumable import cached, read_cached, train_or_resume

from rlmorning.run import MetricsCSV


def run_one(args: argparse.Namespace, seed: int) -> dict:
    """Train (or resume) one seed to its end; its evaluations ``[(step, mean, std)]``."""
    run = args.out / f"{args.game}-seed{seed}"
    overrides = ["torch_threads=1", f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}",
                 f"checkpoint_every={max(args.steps // 10, 1)}"]
    train_or_resume("dqn", f"MinAtar/{args.game}", run, args.steps, seed, "dqn_minatar", overrides)
    evals = [(int(float(r["step"])), float(r["eval_return_mean"]), float(r.get("eval_return_std") or "nan"))
             for r in MetricsCSV.read(run / "metrics.csv") if r.get("eval_return_mean")]
    return {"game": args.game, "seed": seed, "steps": args.steps, "eval_episodes": args.eval_episodes,
            "evals": evals, "run": str(run)}


def table(results: list[dict]) -> str:
    """Markdown: each seed's greedy evaluations and the final mean over seeds."""
    steps = sorted({s for r in results for s, _, _ in r["evals"]})
    lines = ["| seed | " + " | ".join(f"{s:,}" for s in steps) + " |", "|---:|" + "---:|" * len(steps)]
    for r in results:
        by_step = {s: f"{m:.2f} ± {sd:.2f}" for s, m, sd in r["evals"]}
        lines.append(f"| {r['seed']} | " + " | ".join(by_step.get(s, "—") for s in steps) + " |")
    finals = [r["evals"][-1][1] for r in results if r["evals"] and r["evals"][-1][0] == r["steps"]]
    if finals:
        spread = f" ± {statistics.stdev(finals):.2f} (std over seeds)" if len(finals) > 1 else ""
        lines.append(f"\nfinal greedy mean over {len(finals)} seed(s): {statistics.mean(finals):.2f}{spread}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--game", default="Breakout", help="a MinAtar game (Asterix, Breakout, Freeway, Seaquest, "
                                                      "SpaceInvaders)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=500_000)
    p.add_argument("--eval-every", type=int, default=100_000)
    p.add_argument("--eval-episodes", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("runs/bench-minatar"), help="run folders and cached results")
    p.add_argument("--summarize", action="store_true", help="print the table of finished runs; train nothing")
    args = p.parse_args(argv)
    for name in ("steps", "eval_every", "eval_episodes"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"{datetime.date.today()} {platform.machine()} MinAtar/{args.game} dqn_minatar steps={args.steps} "
          f"eval {args.eval_episodes} episodes every {args.eval_every}", flush=True)
    results = []
    for seed in args.seeds:
        key = f"{args.game}-{args.steps}-{seed}"
        if args.summarize:
            known = read_cached(args.out, key)
            if known is not None:
                results.append(known)
            continue
        results.append(cached(args.out, key, lambda s=seed: run_one(args, s)))
    print(table(results) if results else "no finished runs")


if __name__ == "__main__":
    main()
