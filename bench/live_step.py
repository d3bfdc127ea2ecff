"""Milliseconds per step of a real run's training loop, per OpenMP waiting variant, alone and beside load.

A short micro-benchmark (``bench/update.py``) can time a different thing than a run: its process may
load torch before rlmorning sets OpenMP's waiting, its updates run back to back, and its replay is small.
This script times the loop a run actually executes: it resumes a copy of a run's ``latest.pt`` (weights,
optimizer, full replay) in a fresh process per cell, takes ``--steps`` trainer steps (act, env step,
store, update) and reports the mean milliseconds of a whole step and of its update. Variants (the
OpenMP environment each child starts with):

* ``short spin`` (rlmorning's default): passive waiting after 1000 spins (``GOMP_SPINCOUNT=1000``, ~10 us);
* ``passive``: threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``);
* ``OpenMP default``: GNU OpenMP's own spin of 300,000 iterations (~3 ms: what plain PyTorch does).

"beside load" runs one busy process (a Python loop, like a browser tab or a second run) on the same
cores during the cell. Cells are interleaved over ``--reps`` rounds; the table gives each cell's median.
The run's own thread count (its config.yaml) is used; the run folder itself is not modified.

    python bench/live_step.py runs/atari100k/Pong/seed0
    python bench/live_step.py runs/atari100k/Pong/seed0 --steps 300 --reps 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlmorning.threads import SHORT_SPIN_ENV

VARIANTS = {  # name: the OpenMP variables the child starts with (others removed)
    "short spin (default)": SHORT_SPIN_ENV,
    "passive": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "0"},
    "OpenMP default": {"GOMP_SPINCOUNT": "300000"},  # libgomp's count with neither variable set (rlmorning
}                                                     # would set its own if neither were set)
BUSY = "while True: pass"
RUN_FILES = ("config.yaml", "heldout_states.npz", "versions.json", "metrics.csv")


def copy_run(run: Path, dest: Path) -> Path:
    """A throwaway copy of ``run`` (the checkpoint hard-linked where possible: it is only read)."""
    (dest / "checkpoints").mkdir(parents=True)
    for name in RUN_FILES:
        if (run / name).is_file():
            shutil.copy2(run / name, dest / name)
    src = run / "checkpoints" / "latest.pt"
    try:
        os.link(src, dest / "checkpoints" / "latest.pt")
    except OSError:
        shutil.copy2(src, dest / "checkpoints" / "latest.pt")
    return dest


def child(run: Path, steps: int, warmup: int) -> None:
    """Resume ``run`` and print the mean ms of a whole trainer step and of its update, as JSON."""
    import rlmorning  # noqa: F401  (before torch: the OpenMP variables above are the child's own)

    # isort: split
    from _resumable import resumed_trainer

    trainer = resumed_trainer(run, progress=False)
    update_times: list[float] = []
    update = trainer.agent.update

    def timed_update(step: int) -> dict[str, float]:
        t0 = time.perf_counter()
        out = update(step)
        update_times.append(time.perf_counter() - t0)
        return out

    trainer.agent.update = timed_update
    step_times = []
    for _ in range(warmup + steps):
        t0 = time.perf_counter()
        trainer._vector_step()
        step_times.append(time.perf_counter() - t0)
    trainer.env.close()
    print(json.dumps({"step_ms": 1e3 * statistics.fmean(step_times[warmup:]),
                      "update_ms": 1e3 * statistics.fmean(update_times[warmup:])}))


def measure(run: Path, variant: dict[str, str], steps: int, warmup: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(variant)
    out = subprocess.run([sys.executable, __file__, "--child", str(run), "--steps", str(steps),
                          "--warmup", str(warmup)], env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a run folder with checkpoints/latest.pt (e.g. an atari100k run)")
    p.add_argument("--steps", type=int, default=200, help="timed trainer steps per cell")
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--reps", type=int, default=2, help="interleaved rounds; each cell's median is reported")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--spin", type=int, nargs="*", default=[],
                   help="extra rows: passive waiting after N spins (GOMP_SPINCOUNT=N), e.g. --spin 300 1000")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.run, args.steps, args.warmup)
        return
    if not (args.run / "checkpoints" / "latest.pt").is_file():
        sys.exit(f"error: '{args.run}' has no checkpoints/latest.pt (give a run folder that has been trained)")
    variants = {name: VARIANTS[name] for name in args.variants}
    variants.update({f"spin {n}": {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": str(n)} for n in args.spin})
    cells: dict[tuple[str, bool], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for name in variants:
                for loaded in (False, True):
                    copy = copy_run(args.run, Path(tmp) / f"{rep}-{len(cells)}")
                    busy = subprocess.Popen([sys.executable, "-c", BUSY]) if loaded else None
                    try:
                        cells.setdefault((name, loaded), []).append(
                            measure(copy, variants[name], args.steps, args.warmup))
                    finally:
                        if busy is not None:
                            busy.kill()
                            busy.wait()
                    shutil.rmtree(copy)
                    last = cells[(name, loaded)][-1]
                    print(f"  round {rep + 1}: {name}, {'beside load' if loaded else 'alone'}: "
                          f"{last['step_ms']:.1f} ms/step", flush=True)

    def med(name: str, loaded: bool, key: str) -> float:
        return statistics.median(c[key] for c in cells[(name, loaded)])

    print(f"\n{datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} usable cores; run {args.run}; {args.steps} steps per cell, "
          f"median of {args.reps} rounds")
    print("| OpenMP waiting | alone: ms/step (update) | steps/s | beside load: ms/step (update) | steps/s |")
    print("|---|---:|---:|---:|---:|")
    for name in variants:
        a, b = med(name, False, "step_ms"), med(name, True, "step_ms")
        print(f"| {name} | {a:.1f} ({med(name, False, 'update_ms'):.1f}) | {1e3 / a:.1f} | "
              f"{b:.1f} ({med(name, True, 'update_ms'):.1f}) | {1e3 / b:.1f} |")


if __name__ == "__main__":
    main()
