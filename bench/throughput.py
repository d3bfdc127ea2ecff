"""Training throughput: rlmorning DQN vs Stable-Baselines3 DQN on Breakout, same settings, same run.

Both use the Nature CNN, batch 32, one gradient step per 4 env steps (the same replay ratio), Adam,
target update every 1000 steps. Each first fills ``--learning-starts`` transitions, then the timed
window of ``--measure`` env steps runs with learning on. Prints env steps/s of each, the ratio, and a
per-phase breakdown of rlmorning's step (env, act, observe/replay write, update incl. sampling).

    python bench/throughput.py                     # defaults: 2000 warm-up + 3000 timed steps
    python bench/throughput.py --num-envs 4 --rounds 5   # 5 pairs, order alternating; medians at the end
    python bench/throughput.py --num-envs 4 --precision bf16

This host's speed drifts by tens of percent within minutes, and the two libraries run one after the other:
with ``--rounds`` each round times both (the order alternates, so a drift does not favour one side) and the
summary gives the median of the per-round ratios.
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import platform
import statistics
import time

import numpy as np
import torch


def bench_rlmorning(args: argparse.Namespace) -> dict[str, float]:
    from rlmorning.api import resolve_run_config
    from rlmorning.trainer import Trainer

    overrides = [
        f"learning_starts={args.learning_starts}", "train_freq=4", "gradient_steps=1", "batch_size=32",
        "target_update_period=1000", f"buffer_size={args.buffer_size}", "eval_every=0", "checkpoint_every=0",
        "heldout_states=0", "log_every=0", f"precision={args.precision}", f"torch_threads={args.threads}",
        # SB3's defaults: epsilon 1 -> 0.05 over exploration_fraction 0.1 of the run
        "eps_end=0.05", f"eps_decay_steps={max(1, (args.learning_starts + args.measure) // 10)}",
    ]
    import atexit
    import shutil
    import tempfile

    cfg = resolve_run_config("dqn", "Breakout", config="dqn_atari", overrides=overrides,
                             steps=args.learning_starts + args.measure, num_envs=args.num_envs, device="cpu",
                             progress=False)
    scratch = tempfile.mkdtemp(prefix="bench-rlm-")
    atexit.register(shutil.rmtree, scratch, True)  # the run directory is scratch
    trainer = Trainer(cfg, scratch)
    agent, env = trainer.agent, trainer.env
    phases = {"act": 0.0, "env": 0.0, "observe": 0.0, "update": 0.0}

    def one_step(timed: bool) -> int:
        t0 = time.perf_counter()
        actions, _ = agent.act(trainer.obs, None, explore=True)
        t1 = time.perf_counter()
        next_obs, rewards, terminated, truncated, info = env.step(actions)
        t2 = time.perf_counter()
        from rlmorning.envs import real_next_obs

        done = np.asarray(terminated) | np.asarray(truncated)
        agent.observe(trainer.obs, actions, rewards, terminated, truncated, real_next_obs(next_obs, info, done))
        trainer.obs = next_obs
        t3 = time.perf_counter()
        agent.update(0)
        t4 = time.perf_counter()
        if timed:
            phases["act"] += t1 - t0
            phases["env"] += t2 - t1
            phases["observe"] += t3 - t2
            phases["update"] += t4 - t3
        return args.num_envs

    steps = 0
    while steps < args.learning_starts:
        steps += one_step(False)
    start, done_steps = time.perf_counter(), 0
    while done_steps < args.measure:
        done_steps += one_step(True)
    elapsed = time.perf_counter() - start
    env.close()
    out = {"sps": done_steps / elapsed, "updates": agent.updates}
    out.update({f"ms_per_step_{k}": 1000 * v / (done_steps / args.num_envs) for k, v in phases.items()})
    return out


def bench_sb3(args: argparse.Namespace) -> dict[str, float]:
    import ale_py
    import gymnasium as gym
    from _sb3_timer import quiet_logger, sb3_timer, timed_sps
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=args.sb3_envs, seed=0), 4)

    model = DQN(
        "CnnPolicy", env, buffer_size=args.buffer_size, learning_starts=args.learning_starts, batch_size=32,
        # SB3 counts train_freq in vector steps: keep one update per 4 env transitions for any n_envs
        train_freq=max(1, 4 // args.sb3_envs), gradient_steps=1, target_update_interval=1000, learning_rate=1e-4,
        optimize_memory_usage=False, device="cpu", seed=0, verbose=0,
    )
    quiet_logger(model)
    timer = sb3_timer(args.learning_starts)
    model.learn(args.learning_starts + args.measure, callback=timer)
    sps = timed_sps(model, timer)
    env.close()
    return {"sps": sps}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--learning-starts", type=int, default=2000)
    p.add_argument("--measure", type=int, default=3000, help="timed env steps after learning starts")
    p.add_argument("--buffer-size", type=int, default=50_000)
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=0, help="rlmorning torch threads (0 = its default)")
    p.add_argument("--sb3-threads", type=int, default=0, help="SB3 torch threads (0 = torch default)")
    p.add_argument("--sb3-envs", type=int, default=1)
    p.add_argument("--skip-sb3", action="store_true")
    p.add_argument("--rounds", type=int, default=1,
                   help="timed pairs (rlmorning and SB3; the order alternates); the median ratio is reported")
    args = p.parse_args()
    if args.rounds < 1:
        p.error("--rounds must be >= 1")
    default_threads = torch.get_num_threads()
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} default threads")
    ratios: list[float] = []
    for r in range(args.rounds):
        sb3_first = r % 2 == 1 and not args.skip_sb3
        if args.rounds > 1:
            print(f"\n== round {r + 1} of {args.rounds}" + (" (SB3 first)" if sb3_first else ""))
        sb3 = run_sb3(args, default_threads) if sb3_first else None
        rlm = run_rlmorning(args)
        if args.skip_sb3:
            continue
        sb3 = sb3 or run_sb3(args, default_threads)
        ratios.append(rlm["sps"] / sb3["sps"])
        print(f"ratio rlmorning/sb3: {ratios[-1]:.2f}x")
    if len(ratios) > 1:
        print(f"\nratio over {len(ratios)} rounds: median {statistics.median(ratios):.2f}x "
              f"(min {min(ratios):.2f}x, max {max(ratios):.2f}x)")


def run_rlmorning(args: argparse.Namespace) -> dict[str, float]:
    rlm = bench_rlmorning(args)
    print(f"rlmorning: {rlm['sps']:.1f} env steps/s (num_envs={args.num_envs}, precision={args.precision}, "
          f"threads={torch.get_num_threads()}, updates={rlm['updates']})")
    print("  per vector step (ms): " + ", ".join(
        f"{k.removeprefix('ms_per_step_')} {v:.2f}" for k, v in rlm.items() if k.startswith("ms_per_step")))
    return rlm


def run_sb3(args: argparse.Namespace, default_threads: int) -> dict[str, float]:
    torch.set_num_threads(args.sb3_threads or default_threads)
    sb3 = bench_sb3(args)
    print(f"sb3:       {sb3['sps']:.1f} env steps/s (n_envs={args.sb3_envs}, threads={torch.get_num_threads()})")
    return sb3


if __name__ == "__main__":
    main()
