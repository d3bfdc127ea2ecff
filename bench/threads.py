"""Thread policy: training speed alone and beside a competing busy process, per thread count and OpenMP wait policy.

Each cell is one short ``rlmorning train`` in a fresh process (the OpenMP wait policy is read when torch
loads): env steps/s over the steps after ``learning_starts``. Rows:

* ``default``: what a user gets (torch_threads 0: 1 thread for small networks, the idle cores at start for
  Atari-sized frames; rlmorning asks OpenMP for a short spin, then passive waiting);
* ``threads=1``: one torch thread;
* ``threads=all, passive``: every core of the process, passive waiting (no spin at all);
* ``threads=all, torch's waiting``: every core, OpenMP's default waiting (``OMP_WAIT_POLICY`` unset: what a
  plain PyTorch program does).

"beside load" runs a busy process (a Python loop, like a browser tab or a second run) on the same cores for
the whole measurement. Target: under load, ``default`` trains no slower than ``threads=1``.

    python bench/threads.py                       # CartPole (dqn_classic) and Breakout (atari100k)
    python bench/threads.py --workloads cartpole
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from rlmorning.threads import SHORT_SPIN_ENV as SHORT_SPIN  # what importing rlmorning sets

WORKLOADS = {
    "cartpole": (["dqn", "--env", "CartPole-v1", "--steps", "4000"],
                 ["learning_starts=1000", "log_every=500", "eval_every=0", "heldout_states=0"], 1000),
    "breakout": (["dqn", "--env", "Breakout", "--config", "atari100k", "--steps", "700"],
                 ["learning_starts=200", "log_every=100", "eval_every=0", "heldout_states=0", "eps_decay_start=0",
                  "buffer_size=2000", "checkpoint_every=0"], 300),
}
VARIANTS = {  # name: (torch_threads, OpenMP variables; {} = none: libgomp's default, what plain torch does)
    "default": (0, SHORT_SPIN),
    "threads=1": (1, SHORT_SPIN),
    "threads=all, passive": (-1, {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"}),
    "threads=all, torch's waiting": (-1, {}),
}
BUSY = "while True: pass"


def measure(workload: str, threads: int, openmp: dict[str, str]) -> float:
    """Env steps/s of the logged rows after the warm-up (median of the rows' sps)."""
    args, sets, skip = WORKLOADS[workload]
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        n = len(os.sched_getaffinity(0)) if threads < 0 else threads
        cmd = [sys.executable, "-m", "rlmorning.cli", "train", *args, "--run-dir", str(run), "--no-progress",
               "--device", "cpu", "--set", f"torch_threads={n}"]
        for s in sets:
            cmd += ["--set", s]
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
        env.update(openmp)  # with neither set, rlmorning would set its own: "torch's waiting" sets one
        if not openmp:
            env["GOMP_SPINCOUNT"] = "300000"  # libgomp's own default when neither variable is set
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        lines = (run / "metrics.csv").read_text().splitlines()
    header = lines[0].split(",")
    step_col, sps_col = header.index("step"), header.index("sps")
    sps = sorted(float(r.split(",")[sps_col]) for r in lines[1:]
                 if int(float(r.split(",")[step_col])) > skip and r.split(",")[sps_col])
    return sps[len(sps) // 2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--busy", type=int, default=1, help="competing busy processes in the 'beside load' column")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, {cores} usable cores; "
          f"env steps/s (higher is better); load = {args.busy} busy process(es)")
    for workload in args.workloads:
        print(f"\n{workload}:\n| variant | alone | beside load |\n|---|---:|---:|")
        results = {}
        for name, (threads, openmp) in VARIANTS.items():
            alone = measure(workload, threads, openmp)
            busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
            try:
                loaded = measure(workload, threads, openmp)
            finally:
                for b in busy:
                    b.kill()
                    b.wait()
            results[name] = (alone, loaded)
            print(f"| {name} | {alone:.0f} | {loaded:.0f} |", flush=True)
        d, one, plain = results["default"], results["threads=1"], results["threads=all, torch's waiting"]
        print(f"default / threads=1: alone {d[0] / one[0]:.2f}x, beside load {d[1] / one[1]:.2f}x (target >= 1); "
              f"all threads with torch's waiting beside load: {plain[1] / one[1]:.2f}x")


if __name__ == "__main__":
    main()
