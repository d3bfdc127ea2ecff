"""Seeded CartPole-v1 learning runs with the dqn_classic preset (50k steps).

For each seed: the first env step at which the greedy evaluation (10 episodes, epsilon 0) reaches a
mean of >= 475, and the best and final eval means. Prints the median over seeds. Evaluations run every
``--eval-every`` steps, so 'steps to 475' has that resolution.

    python bench/learn_cartpole.py --seeds 0 1 2 3 4
    python bench/learn_cartpole.py --set compile=true    # the same runs with the compiled update
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
from pathlib import Path

from rlmorning import api
from rlmorning.run import MetricsCSV


def run(seed: int, steps: int, eval_every: int, root: Path, overrides: list[str]) -> dict[str, float | None]:
    run_dir = root / f"cartpole-{seed}"
    api.train("dqn", "CartPole-v1", run_dir=run_dir, steps=steps, seed=seed, progress=False,
              overrides=[f"eval_every={eval_every}", *overrides])
    evals = [r for r in MetricsCSV.read(run_dir / "metrics.csv") if r.get("eval_return_mean")]
    reached = next((int(float(r["step"])) for r in evals if float(r["eval_return_mean"]) >= 475), None)
    return {"reached": reached, "best": max(float(r["eval_return_mean"]) for r in evals),
            "final": float(evals[-1]["eval_return_mean"])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=50_000)
    p.add_argument("--eval-every", type=int, default=2_500)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override (repeatable)")
    args = p.parse_args()
    print(f"{datetime.date.today()} {platform.machine()} CartPole-v1 dqn_classic steps={args.steps} "
          f"overrides: {args.set or 'none'}")
    root = Path(tempfile.mkdtemp(prefix="bench-cartpole-"))
    results = {}
    for seed in args.seeds:
        results[seed] = r = run(seed, args.steps, args.eval_every, root, args.set)
        print(f"seed {seed}: steps to eval mean >= 475: {r['reached']}  best {r['best']:.1f}  final {r['final']:.1f}",
              flush=True)
    reached = [r["reached"] if r["reached"] is not None else float("inf") for r in results.values()]
    med = statistics.median(reached)
    solved = sum(r["reached"] is not None for r in results.values())
    print(f"median steps to 475: {med}  ({solved}/{len(results)} seeds reached 475 within {args.steps})")
    print(f"runs in {root}")


if __name__ == "__main__":
    main()
