"""Replay memory per Atari transition: rlmorning vs Stable-Baselines3 (with and without
``optimize_memory_usage``), measured from the allocated arrays of each buffer in the same run.

Each buffer is built for ``--capacity`` transitions of ``uint8 [4, 84, 84]`` observations with 4
discrete actions; bytes per transition = allocated bytes / capacity (every array is linear in the
capacity), and the line for 1M transitions is that number times 1M.

    python bench/replay_memory.py --capacity 20000
"""

from __future__ import annotations

import argparse
import datetime
import platform

import gymnasium as gym
import numpy as np


def rlmorning_bytes(capacity: int) -> float:
    from rlmorning.replay import ReplayBuffer, smallest_int_dtype

    buf = ReplayBuffer(capacity, 1, (4, 84, 84), np.uint8, frame_stack=4, action_dtype=smallest_int_dtype(4))
    return buf.nbytes / capacity


def sb3_bytes(capacity: int, optimize: bool) -> float:
    from stable_baselines3.common.buffers import ReplayBuffer

    obs = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    buf = ReplayBuffer(capacity, obs, gym.spaces.Discrete(4), device="cpu", optimize_memory_usage=optimize,
                       handle_timeout_termination=not optimize)
    arrays = [buf.observations, buf.actions, buf.rewards, buf.dones, getattr(buf, "timeouts", None)]
    if not optimize:
        arrays.append(buf.next_observations)
    return sum(a.nbytes for a in arrays if a is not None) / capacity


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--capacity", type=int, default=20_000)
    args = p.parse_args()
    print(f"{datetime.date.today()} {platform.machine()} capacity={args.capacity}")
    ours = rlmorning_bytes(args.capacity)
    rows = [("rlmorning ReplayBuffer", ours),
            ("SB3 ReplayBuffer", sb3_bytes(args.capacity, False)),
            ("SB3 ReplayBuffer optimize_memory_usage=True", sb3_bytes(args.capacity, True))]
    print(f"{'buffer':48s} {'bytes/transition':>16s} {'GB at 1M':>9s} {'vs rlmorning':>12s}")
    for name, b in rows:
        print(f"{name:48s} {b:16,.0f} {b * 1e6 / 1e9:9.2f} {b / ours:11.2f}x")


if __name__ == "__main__":
    main()
