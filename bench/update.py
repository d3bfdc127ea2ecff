"""Milliseconds per DQN update on this CPU, each speed lever on and off, beside the CPU's fp32 GEMM rate.

Rows are timed round-robin (one update of each row in turn).
One update = Q(s') without grad, the online forward/backward and the optimizer step (and, where the target
net is a separate copy updated every step, that copy), batch 32, replay of random frames (the arithmetic
does not depend on the pixels). Presets: ``dqn_atari`` (Nature DQN) and ``atari100k`` (DrQ(eps), Dopamine's
network); ``atari100k-valid`` is atari100k on the Nature paper's unpadded convs (its cost, for comparison).

Levers (all keep the maths):
  shared_target  Q(s') once with the online net when the target equals it (atari100k: target period 1)
  channels_last  conv weights and inputs in NHWC layout
  fused_adam     Adam's fused kernel (off: the per-tensor loop SB3 runs on CPU)
  augment        cost of DrQ's shift + intensity (atari100k's default; off = no augmentation)

    python bench/update.py                 # 1 thread and all cores this process may use
    python bench/update.py --threads 2 --reps 60
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import platform
import statistics
import time
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from rlmorning.api import resolve_run_config
from rlmorning.threads import available_cores

PRESETS = {  # the levers that apply to each preset (dqn_atari's target net is a separate copy: period 1000)
    "dqn_atari": {"channels_last": True, "fused_adam": True},
    "atari100k": {"shared_target": True, "channels_last": True, "fused_adam": True, "augment": True},
    "atari100k-valid": {"shared_target": True, "channels_last": True, "fused_adam": True, "augment": True},
}
VARIANTS = {"atari100k-valid": ("atari100k", ["encoder_kwargs.padding=valid", "init=default"])}
"""Not presets: other maths, for its cost. atari100k-valid = atari100k on the Nature paper's unpadded convs
(7x7x64 features instead of Dopamine's 11x11x64)."""


def make_agent(preset: str, levers: dict[str, bool]) -> Any:
    from rlmorning.agents import AGENTS, AgentSetting

    config, extra = VARIANTS.get(preset, (preset, []))
    overrides = ["buffer_size=3000", "learning_starts=100",
                 f"memory_format={'channels_last' if levers['channels_last'] else 'contiguous'}", *extra]
    if config == "atari100k" and not levers.get("augment", True):
        overrides.append("augment=none")
    cfg = resolve_run_config("dqn", "Breakout", config=config, overrides=overrides, device="cpu", progress=False)
    import gymnasium as gym

    torch.manual_seed(0)
    setting = AgentSetting(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4), num_envs=1,
                           frame_stack=4, total_steps=100_000, device=torch.device("cpu"), seed=0)
    agent = AGENTS.get("dqn").factory(cfg.agent_config, setting)
    agent.shared_target = levers.get("shared_target", False) and agent.shared_target
    if not levers["fused_adam"]:
        c = cfg.agent_config
        agent.optimizer = torch.optim.Adam(agent.online.parameters(), lr=c.lr, eps=c.optimizer_eps,
                                           foreach=False, fused=False)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
    for t in range(500):
        nxt = rng.integers(0, 256, (1, 4, 84, 84), dtype=np.uint8)
        agent.observe(frame, rng.integers(0, 4, 1), rng.standard_normal(1), np.array([t % 97 == 96]),
                      np.array([False]), nxt)
        frame = nxt
    return agent


def one_update(agent: Any) -> None:
    agent._gradient_step()
    if not agent.shared_target and agent.config.target_update_period == 1:
        agent._sync_target()  # the copy the target net needs after every step


def interleaved_medians(agents: list[Any], reps: int, warmup: int = 5) -> list[float]:
    """Median ms per update of each agent, timed round-robin (one update of each in turn) so that a slow
    drift of the machine's speed (frequency, a neighbour) affects every row alike."""
    for agent in agents:
        for _ in range(warmup):
            one_update(agent)
    times: list[list[float]] = [[] for _ in agents]
    for _ in range(reps):
        for i, agent in enumerate(agents):
            t0 = time.perf_counter()
            one_update(agent)
            times[i].append(time.perf_counter() - t0)
    return [1000 * statistics.median(t) for t in times]


def update_flops(agent: Any) -> float:
    with FlopCounterMode(display=False) as counter:
        one_update(agent)
    return float(counter.get_total_flops())


def gemm_gflops(n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def lever_rows(preset: str) -> list[tuple[str, dict[str, bool]]]:
    best = PRESETS[preset]
    rows = [("all levers (default)", dict(best))]
    for lever in best:
        rows.append((f"{lever} off", {**best, lever: False}))
    if len(best) > 1:
        rows.append(("all off", {k: False for k in best}))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="*", default=None,
                   help="torch thread counts to measure (default: 1 and all cores this process may use)")
    p.add_argument("--reps", type=int, default=40, help="timed updates per row (median reported)")
    p.add_argument("--presets", nargs="*", default=list(PRESETS), choices=list(PRESETS))
    args = p.parse_args()
    threads = args.threads or sorted({1, available_cores()})
    print(f"machine: {platform.processor() or platform.machine()}, {available_cores()} usable cores, "
          f"torch {torch.__version__}, mkldnn {torch.backends.mkldnn.is_available()}")
    for n in threads:
        torch.set_num_threads(n)
        gemm = gemm_gflops()
        print(f"\n== {n} thread(s): fp32 GEMM 1024^3 runs at {gemm:.0f} GFLOP/s")
        for preset in args.presets:
            rows = lever_rows(preset)
            flops = update_flops(make_agent(preset, rows[0][1]))
            floor = flops / (gemm * 1e9) * 1000
            print(f"{preset}: {flops / 1e9:.2f} GFLOP per update -> arithmetic floor {floor:.1f} ms at the GEMM rate")
            agents = [make_agent(preset, levers) for _, levers in rows]
            for (name, _), ms in zip(rows, interleaved_medians(agents, args.reps), strict=True):
                print(f"  {name:<22} {ms:6.1f} ms   ({floor / ms:4.0%} of the GEMM rate)")
            del agents

if __name__ == "__main__":
    main()
