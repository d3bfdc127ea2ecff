"""A 4-trial CartPole sweep on local Ray vs the same 4 runs one after another, and Ray's start-up cost.

Each of the three measurements is a fresh process, timed from the outside, as a user would run it:

* sequential: ``rlmorning train`` four times (seeds 0-3), one after another;
* sweep: ``rlmorning sweep --seeds 4`` (starts an embedded Ray, 1 CPU and 1 torch thread per trial, as
  many trials at once as the machine has cores, then stops Ray);
* Ray start-up: ``ray.init`` + ``ray.shutdown`` with the sweep's settings and no work.

The runs use the ``dqn_classic`` preset with fewer steps (``--steps``). Training is done with one torch
thread in both cases, so the two do the same work. Prints a Markdown table.

    python bench/sweep.py                # about 3 minutes on 2 cores
    python bench/sweep.py --steps 10000
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlmorning.run import MetricsCSV

RAY_START = """
import logging, time
t = time.perf_counter()
from rlmorning.sweep import init_ray
init_ray()
t_init = time.perf_counter()
import ray
ray.shutdown()
print(f"{t_init - t:.3f} {time.perf_counter() - t_init:.3f}")
"""


def _timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def _train_seconds(run_dirs: list[Path]) -> list[float]:
    """The trainer's own wall time of each run (last metrics row), i.e. without process start-up."""
    return [float(MetricsCSV.read(r / "metrics.csv")[-1]["wall_time"]) for r in run_dirs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--steps", type=int, default=5_000)
    args = p.parse_args()
    sets = ["learning_starts=1000", "eval_every=2500", "eval_episodes=5", "torch_threads=1", "device=cpu"]
    set_args = [a for s in sets for a in ("--set", s)]
    root = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    exe = [sys.executable, "-m", "rlmorning.cli"]
    load = os.getloadavg()[0]

    seq_dirs = [root / "seq" / f"seed{i}" for i in range(args.trials)]
    t_seq = 0.0
    for i, run_dir in enumerate(seq_dirs):
        t_seq += _timed(exe + ["train", "dqn", "--env", "CartPole-v1", "--steps", str(args.steps), "--seed", str(i),
                               "--run-dir", str(run_dir), "--no-progress", *set_args])
    t_sweep = _timed(exe + ["sweep", "dqn", "--env", "CartPole-v1", "--seeds", str(args.trials), "--steps",
                            str(args.steps), "--root", str(root / "sweeps"), "--name", "bench", *set_args])
    sweep_dirs = sorted((root / "sweeps" / "bench" / "runs").iterdir())
    out = subprocess.run([sys.executable, "-c", RAY_START], check=True, capture_output=True, text=True).stdout
    t_init, t_shutdown = (float(x) for x in out.split()[-2:])
    load = max(load, os.getloadavg()[0])

    seq_train, sweep_train = sum(_train_seconds(seq_dirs)), sum(_train_seconds(sweep_dirs))
    print(f"\n{datetime.date.today()}, {platform.machine()}, {os.cpu_count()} cores, load average up to "
          f"{load:.1f} during the run; {args.trials} x CartPole-v1 dqn_classic, {args.steps} steps each, "
          f"1 torch thread per run\n")
    print("| what | wall time (s) | note |")
    print("|---|---:|---|")
    print(f"| {args.trials} runs one after another (`rlmorning train` x {args.trials}) | {t_seq:.1f} | "
          f"training itself {seq_train:.1f} s; the rest is process start-up |")
    print(f"| the same {args.trials} runs as one sweep (`rlmorning sweep --seeds {args.trials}`) | {t_sweep:.1f} | "
          f"{t_seq / t_sweep:.2f}x the sequential speed; trials' own training time {sweep_train:.1f} s in total |")
    print(f"| Ray start-up (`ray.init`, local, {os.cpu_count()} CPUs) | {t_init:.1f} | shutdown "
          f"{t_shutdown:.1f} s; both are part of the sweep's time |")
    print(f"\nrun directories: {root}")


if __name__ == "__main__":
    main()
