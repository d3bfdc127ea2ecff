"""Each conv encoder with DQN's ``atari100k`` preset on Breakout and MinAtar/Breakout.

For every (env, encoder, seed): the final greedy evaluation (the preset's protocol: 10 episodes,
epsilon 0.001), training env steps/s over the whole run (learning-starts phase included, evaluation
excluded) and the encoder's parameters. Prints a Markdown table (mean ± std over seeds when several are given).

The preset's 100k steps take hours per encoder on a CPU (one gradient step per env step), so
``--steps`` defaults to 20000 and the table says what was run. ``nature`` needs frames of at least
36x36; on MinAtar the ``minatar`` encoder (the MinAtar paper's network) is run as the baseline instead.

    python bench/encoders.py                                # 20k steps, seed 0, both envs
    python bench/encoders.py --steps 100000 --seeds 0 1 2 --device cuda
    python bench/encoders.py --steps 300 --eval-episodes 2 --set learning_starts=100   # smoke test
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import datetime
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from rlmorning import api
from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV, load_checkpoint

ENCODERS = ["nature", "impala", "densenet", "inception", "deformable"]
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def encoder_params(run_dir: Path) -> int:
    """Parameters of the trained encoder (BatchNorm running statistics excluded)."""
    online = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["agent"]["online"]
    return sum(v.numel() for k, v in online.items() if k.startswith("encoder.") and not k.endswith(BUFFERS))


def run_one(env: str, encoder: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train one run; returns final eval mean/std, env steps/s, parameters, wall seconds."""
    run_dir = root / f"{env.replace('/', '-')}-{encoder}-{seed}"
    overrides = [
        f"encoder={encoder}", f"eval_every={args.steps}", f"eval_episodes={args.eval_episodes}",
        f"checkpoint_every={args.steps}", f"log_every={max(args.steps // 20, 1)}", "save_replay=false",
        "heldout_states=0", *args.overrides,
    ]
    start = time.perf_counter()
    api.train("dqn", env, config="atari100k", overrides=overrides, run_dir=run_dir, steps=args.steps, seed=seed,
              device=args.device, progress=args.progress)
    wall = time.perf_counter() - start
    rows = MetricsCSV.read(run_dir / "metrics.csv")
    evals = [r for r in rows if r.get("eval_return_mean")]
    # each log row's sps covers the steps since the previous log row (evaluation runs after the last one):
    # the run's rate is total steps over the summed interval times
    seconds, steps, prev = 0.0, 0, 0
    for r in rows:
        if r.get("sps") and float(r["sps"]) > 0:
            step = int(float(r["step"]))
            seconds += (step - prev) / float(r["sps"])
            steps, prev = step, step
    return {
        "eval": float(evals[-1]["eval_return_mean"]) if evals else float("nan"),
        "eval_std": float(evals[-1]["eval_return_std"]) if evals else float("nan"),
        "sps": steps / seconds if seconds > 0 else args.steps / wall,
        "params": encoder_params(run_dir),
        "wall": wall,
    }


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_000, help="env steps per run (atari100k: 100000; default 20000)")
    p.add_argument("--envs", nargs="+", default=["Breakout", "MinAtar/Breakout"])
    p.add_argument("--encoders", nargs="+", default=ENCODERS)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra config overrides for every run (e.g. --set learning_starts=100)")
    p.add_argument("--progress", action="store_true", help="show the trainer's progress bar")
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-encoders-"))
    threads = torch.get_num_threads()
    header = (f"{datetime.date.today()} {platform.machine()} {platform.processor() or ''} device={args.device} "
              f"torch threads={threads}; dqn atari100k preset, steps={args.steps} per run "
              f"(preset: 100000), seeds={args.seeds}, eval episodes={args.eval_episodes}"
              + (f", overrides={args.overrides}" if args.overrides else ""))
    print(header, flush=True)
    lines = ["| env | encoder | parameters | final eval return | env steps/s | wall s/run |",
             "|---|---|---:|---:|---:|---:|"]
    for env in args.envs:
        encoders = list(args.encoders)
        if env.lower().startswith("minatar/") and "nature" in encoders and "minatar" not in encoders:
            encoders.insert(encoders.index("nature") + 1, "minatar")
        for encoder in encoders:
            results = []
            for seed in args.seeds:
                print(f"  {env} {encoder} seed {seed} ...", end=" ", file=sys.stderr, flush=True)
                try:
                    r = run_one(env, encoder, seed, args, root)
                except RlmError as exc:
                    print(f"n/a: {exc}", file=sys.stderr, flush=True)
                    lines.append(f"| {env} | {encoder} | n/a | n/a ({exc}) | | |")
                    break
                print(f"eval {r['eval']:.1f}, {r['sps']:.1f} steps/s, {r['wall']:.0f} s", file=sys.stderr,
                      flush=True)
                results.append(r)
            if results:
                lines.append(
                    f"| {env} | {encoder} | {results[0]['params']:,} | {_mean_std([r['eval'] for r in results])} "
                    f"| {_mean_std([r['sps'] for r in results])} | {statistics.mean(r['wall'] for r in results):.0f} |"
                )
    print("\n".join(lines))
    print(f"\n{len(args.seeds)} seed(s) per encoder; eval return = mean over the final evaluation's episodes"
          + (" (single seed: no spread over seeds)" if len(args.seeds) == 1 else ", mean ± std over seeds"))
    print(f"runs in {root}")


if __name__ == "__main__":
    main()
