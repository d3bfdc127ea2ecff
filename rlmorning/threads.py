"""CPU thread policy: how many threads torch uses, and how its idle threads wait.

Two facts measured on a 2-core host (``bench/threads.py``):

* OpenMP threads that *spin* while waiting for each other collapse when another process holds a core:
  a spinning thread burns the time slice its partner needs. CartPole DQN beside one busy process ran at
  ~230 steps/s with 2 spinning threads and ~700 with 1 thread; with passive waiting 2 threads ran at
  ~740. So rlmorning asks OpenMP for passive waiting (``OMP_WAIT_POLICY=PASSIVE``) unless the user set
  the variable; this only works before torch is first imported, which importing ``rlmorning`` ensures
  when it comes first.
* Thread counts change the order of floating-point sums, so results differ in the last bits between
  thread counts: the count is therefore fixed for a run (from the config or the cores this process may
  use), never tuned from timings, so the same seed and config give the same result.
"""

from __future__ import annotations

import os

WAIT_POLICY_VAR = "OMP_WAIT_POLICY"


def prefer_passive_waiting() -> None:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already chooses a policy."""
    os.environ.setdefault(WAIT_POLICY_VAR, "PASSIVE")


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under ``taskset`` or a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_torch_threads() -> int:
    """All cores this process may use: env stepping and learning alternate, so torch's threads have them
    to themselves; with passive waiting a shared machine costs a share of the CPU, not a collapse.
    Set ``torch_threads`` to pin another count (e.g. one per parallel sweep trial)."""
    return available_cores()
