"""CPU thread policy: how many threads torch uses, and how its idle threads wait.

Two facts measured on a 2-core host (``bench/threads.py``):

* OpenMP threads that *spin* while waiting for each other collapse when another process holds a core:
  a spinning thread burns the time slice its partner needs. CartPole DQN beside one busy process ran at
  ~230 steps/s with 2 spinning threads and ~700 with 1 thread; with passive waiting 2 threads ran at
  ~740. Threads that sleep at once, though, pay a wake-up for every parallel kernel: an Atari 100k
  update (hundreds of kernels) ran 20-45% slower with passive waiting than with spinning, alone on the
  machine (``bench/live_step.py``). So rlmorning asks OpenMP for a *short* spin: passive waiting
  (``OMP_WAIT_POLICY=PASSIVE``, which LLVM's OpenMP honours) with GNU OpenMP's spin count set to
  ``GOMP_SPINCOUNT=1000`` (~10 us, long enough to catch the next kernel of an update, short enough that
  a thread whose partner is descheduled goes to sleep). Neither is set when the user sets either. This
  only works before torch is first imported, which importing ``rlmorning`` ensures when it comes first.
* Thread counts change the order of floating-point sums, so results differ in the last bits between
  thread counts: the count is fixed when a run starts (:func:`default_torch_threads`) and written to the
  run's config.yaml, never tuned from timings later, so a resume or a re-run of that config.yaml gives
  the same result.
"""

from __future__ import annotations

import os
import time

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"
SPIN_COUNT_VAR = "GOMP_SPINCOUNT"
SHORT_SPIN = "1000"
"""GNU OpenMP's busy-wait iterations before a thread sleeps (~10 us; its own default is 300,000, ~3 ms)."""
SHORT_SPIN_ENV = {WAIT_POLICY_VAR: "PASSIVE", SPIN_COUNT_VAR: SHORT_SPIN}
"""The OpenMP variables importing rlmorning sets (benchmarks start children with them)."""


def prefer_short_spin() -> None:
    """Ask OpenMP to spin briefly, then sleep (``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=1000``),
    unless the environment already sets either variable (the user's choice is kept whole)."""
    if WAIT_POLICY_VAR in os.environ or SPIN_COUNT_VAR in os.environ:
        return
    os.environ.update(SHORT_SPIN_ENV)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset`` or a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """Per-CPU (idle, total) jiffies from /proc/stat."""
    out = {}
    with open("/proc/stat") as fh:
        for line in fh:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                values = [int(v) for v in fields[:8]]
                out[int(name[3:])] = (values[3] + values[4], sum(values))  # idle + iowait
    return out


def idle_cores(sample_s: float = 0.25) -> int | None:
    """How many of this process's cores were mostly idle (>= 50%) over ``sample_s`` seconds, or None where
    /proc/stat is not readable."""
    try:
        before = _cpu_times()
        time.sleep(sample_s)
        after = _cpu_times()
    except OSError:
        return None
    free = 0
    for cpu in _affinity():
        if cpu in before and cpu in after:
            total = after[cpu][1] - before[cpu][1]
            if total > 0 and (after[cpu][0] - before[cpu][0]) / total >= 0.5:
                free += 1
    return free


def _affinity() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def default_torch_threads(obs_shape: tuple[int, ...] | None = None) -> int:
    """The thread count ``torch_threads: 0`` resolves to when a run starts (then written to its config.yaml,
    so a resume or a re-run from that file uses the same count and gives the same result):

    * small networks (observations that are not Atari-sized frames: vectors, MinAtar's 10x10 grids): 1. Their
      kernels are too small to split: CartPole DQN ran at ~800 steps/s with 1 thread and ~370 with 2;
    * Atari-sized frames (>= 36 px): the cores of this process that are idle now (at least 1). Alone, 2
      threads train ~25% faster than 1; beside a busy process a second thread only waits for the first.
    """
    if obs_shape is None or len(obs_shape) != 3 or min(obs_shape[1:]) < 36:
        return 1
    free = idle_cores()
    return max(1, min(available_cores(), free if free is not None else available_cores()))
