"""Small networks, where framework overhead dominates: rlmorning DQN vs Stable-Baselines3 DQN, same run.

Two workloads, each with the settings of an rlmorning preset given to both libraries:

* ``minatar``: MinAtar Breakout, ``dqn_minatar`` (conv 3x3x16 + FC 128, RMSprop, batch 32, one update per
  env step, target every 1000 steps);
* ``cartpole``: CartPole-v1, ``dqn_classic`` (MLP 256-256, Adam, 128 updates of batch 64 every 256 steps).

rlmorning and SB3 run **side by side**, each in its own process pinned to its own core with one torch
thread. Each first fills ``learning_starts`` transitions and learns for ``WARM_STEPS`` more (not timed: with
``--set compile=true`` rlmorning compiles there; the compile time is printed), then trains ``--measure`` env
steps with learning on (timed). Prints env steps/s of each and the ratio. ``--profile`` then times one more
rlmorning run alone, split into the phases of a trainer step (act, env, replay write, sample, forward+loss,
backward, optimizer, trainer bookkeeping).

    python bench/small_nets.py                          # both workloads, then the rlmorning profiles
    python bench/small_nets.py --workloads minatar --measure 20000
    python bench/small_nets.py --set batch_size=64         # an rlmorning override, SB3 unchanged
    python bench/small_nets.py --set compile=true          # rlmorning's update through torch.compile
    python bench/small_nets.py --torch-rmsprop             # without FlooredRMSprop (torch's RMSprop)
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import atexit
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

WORKLOADS: dict[str, dict[str, Any]] = {
    "minatar": {"env": "MinAtar/Breakout", "config": "dqn_minatar", "measure": 10_000},
    "cartpole": {"env": "CartPole-v1", "config": "dqn_classic", "measure": 20_000},
}
WARM_STEPS = 256
"""Env steps of learning before the timed window (dqn_classic's first update round comes 256 steps in)."""


# ------------------------------------------------------------------------------------------ rlmorning
def _rlm_trainer(workload: str, steps: int, overrides: list[str], num_envs: int = 1) -> Any:
    from rlmorning.api import resolve_run_config
    from rlmorning.trainer import Trainer

    w = WORKLOADS[workload]
    sets = ["eval_every=0", "checkpoint_every=0", "heldout_states=0", "log_every=1000000000",
            "torch_threads=1", *overrides]
    cfg = resolve_run_config("dqn", w["env"], config=w["config"], overrides=sets, steps=steps, num_envs=num_envs,
                             device="cpu", progress=False)
    scratch = tempfile.mkdtemp(prefix="bench-small-")
    atexit.register(shutil.rmtree, scratch, True)
    return Trainer(cfg, scratch)


def _fill_replay(trainer: Any, steps: int) -> None:
    """The warm-up before learning starts (not timed): the trainer's own step, without its schedule."""
    while trainer.state.step < steps:
        new_steps, _ = trainer._vector_step()
        trainer.state.step += new_steps


def run_rlmorning(workload: str, measure: int, overrides: list[str], num_envs: int = 1) -> dict[str, Any]:
    """Env steps/s (summed over the parallel envs) of the real training loop once learning has started."""
    probe = _rlm_trainer(workload, 1, overrides)
    starts = probe.agent.config.learning_starts
    probe.env.close()
    trainer = _rlm_trainer(workload, starts + WARM_STEPS + measure, overrides, num_envs)
    _fill_replay(trainer, starts + WARM_STEPS)
    warm = trainer.state.step
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    trainer.env.close()
    compiled = getattr(trainer.agent, "compiled_parts", [])
    compile_s = sum(f.compile_seconds or 0.0 for f in compiled)
    return {"sps": (trainer.state.step - warm) / elapsed, "updates": trainer.agent.updates,
            "learning_starts": starts, "compile_s": compile_s, "optimizer": type(trainer.agent.optimizer).__name__,
            "compile_failed": [f.failed for f in compiled if f.failed]}


class _PhaseClock:
    """Accumulated seconds per phase, by wrapping callables."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t0

        return timed


def profile_rlmorning(workload: str, measure: int, overrides: list[str]) -> dict[str, float]:
    """Milliseconds per env step in each phase of the trainer's step (alone on one core)."""
    probe = _rlm_trainer(workload, 1, overrides)
    starts = probe.agent.config.learning_starts
    probe.env.close()
    trainer = _rlm_trainer(workload, starts + WARM_STEPS + measure, overrides)
    _fill_replay(trainer, starts + WARM_STEPS)
    agent = trainer.agent
    clock = _PhaseClock()
    # outer phases of a trainer step; inner phases of an update (the update's own time is split below)
    agent.act = clock.wrap("act", agent.act)
    trainer.env.step = clock.wrap("env", trainer.env.step)
    agent.observe = clock.wrap("replay write", agent.observe)
    agent.update = clock.wrap("update", agent.update)
    agent.replay.sample = clock.wrap("sample", agent.replay.sample)
    agent.optimizer.step = clock.wrap("optimizer", agent.optimizer.step)
    agent.optimizer.zero_grad = clock.wrap("optimizer", agent.optimizer.zero_grad)
    backward = torch.Tensor.backward
    torch.Tensor.backward = clock.wrap("backward", backward)  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        trainer.train()
        elapsed = time.perf_counter() - t0
    finally:
        torch.Tensor.backward = backward  # type: ignore[method-assign]
    s = clock.seconds
    inner = s["sample"] + s["backward"] + s["optimizer"]
    phases = {
        "act": s["act"], "env": s["env"], "replay write": s["replay write"], "sample": s["sample"],
        "forward+loss": s["update"] - inner, "backward": s["backward"], "optimizer": s["optimizer"],
        "trainer bookkeeping": elapsed - s["act"] - s["env"] - s["replay write"] - s["update"],
    }
    trainer.env.close()
    return {k: 1000 * v / measure for k, v in phases.items()}


# ---------------------------------------------------------------------------------------------- SB3
def _sb3_model(workload: str, learning_starts: int, total: int) -> Any:
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
    from torch import nn

    if workload == "cartpole":
        env = gym.make("CartPole-v1")
        return DQN("MlpPolicy", env, learning_rate=2.3e-3, batch_size=64, buffer_size=100_000,
                   learning_starts=learning_starts, gamma=0.99, target_update_interval=10, train_freq=256,
                   gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                   max_grad_norm=10.0, policy_kwargs={"net_arch": [256, 256]}, device="cpu", seed=0, verbose=0)

    from rlmorning.envs.minatar import make_minatar

    class MinAtarTrunk(BaseFeaturesExtractor):
        """Young & Tian's trunk: conv 3x3 (16) + FC 128, as rlmorning's ``minatar`` encoder."""

        def __init__(self, space: gym.spaces.Box) -> None:
            super().__init__(space, features_dim=128)
            c, h, w = space.shape
            self.net = nn.Sequential(nn.Conv2d(c, 16, 3), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(16 * (h - 2) * (w - 2), 128), nn.ReLU())

        def forward(self, obs: torch.Tensor) -> torch.Tensor:
            return self.net(obs)

    env = make_minatar("Breakout", 0)
    policy_kwargs = {
        "features_extractor_class": MinAtarTrunk, "net_arch": [], "normalize_images": False,
        "optimizer_class": torch.optim.RMSprop,
        "optimizer_kwargs": {"alpha": 0.95, "centered": True, "eps": 0.01},
    }
    return DQN("CnnPolicy", env, learning_rate=2.5e-4, batch_size=32, buffer_size=100_000,
               learning_starts=learning_starts, gamma=0.99, target_update_interval=1000, train_freq=1,
               gradient_steps=1, exploration_initial_eps=1.0, exploration_final_eps=0.1,
               exploration_fraction=100_000 / total,  # dqn_minatar: 1 -> 0.1 over 100k steps
               max_grad_norm=1e9, policy_kwargs=policy_kwargs, device="cpu",
               seed=0, verbose=0)


def run_sb3(workload: str, measure: int, learning_starts: int) -> dict[str, Any]:
    from _sb3_timer import quiet_logger, sb3_timer, timed_sps

    model = _sb3_model(workload, learning_starts, learning_starts + WARM_STEPS + measure)
    quiet_logger(model)
    timer = sb3_timer(learning_starts + WARM_STEPS)
    model.learn(learning_starts + WARM_STEPS + measure, callback=timer)
    return {"sps": timed_sps(model, timer)}


# -------------------------------------------------------------------------------------------- driver
def _use_torch_rmsprop() -> None:
    """The floor-before-sqrt lever off: rlmorning's DQN steps ``torch.optim.RMSprop`` (multi-tensor) itself."""
    import rlmorning.agents.dqn as dqn

    dqn.FlooredRMSprop = lambda params, **kw: torch.optim.RMSprop(params, foreach=True, **kw)  # type: ignore


def _worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    if args.torch_rmsprop:
        _use_torch_rmsprop()
    if args.worker == "rlmorning":
        out = run_rlmorning(args.workloads[0], args.measure, args.set, args.num_envs)
    elif args.worker == "sb3":
        out = run_sb3(args.workloads[0], args.measure, args.learning_starts)
    else:
        out = profile_rlmorning(args.workloads[0], args.measure, args.set)
    print("RESULT " + json.dumps(out), flush=True)


def _spawn(worker: str, workload: str, measure: int, core: int, args: argparse.Namespace,
           learning_starts: int = 0) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", worker, "--workloads", workload, "--measure", str(measure),
           "--learning-starts", str(learning_starts)]
    for s in args.set:
        cmd += ["--set", s]
    if worker == "rlmorning":
        cmd += ["--num-envs", str(args.num_envs)]
    if worker != "sb3" and args.torch_rmsprop:
        cmd += ["--torch-rmsprop"]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, {core}))


def _result(proc: subprocess.Popen) -> dict[str, Any]:
    out, _ = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"worker failed (exit {proc.returncode})")
    line = [ln for ln in out.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line.removeprefix("RESULT "))


def _learning_starts(workload: str, overrides: list[str]) -> int:
    from rlmorning.api import resolve_run_config

    w = WORKLOADS[workload]
    cfg = resolve_run_config("dqn", w["env"], config=w["config"], overrides=overrides, steps=1, num_envs=1,
                             device="cpu", progress=False)
    return int(cfg.agent_config.learning_starts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    p.add_argument("--measure", type=int, default=0, help="timed env steps (0: the workload's default)")
    p.add_argument("--set", action="append", default=[], help="an rlmorning config override (repeatable)")
    p.add_argument("--num-envs", type=int, default=1,
                   help="rlmorning's parallel envs (same replay ratio: one update per train_freq env steps)")
    p.add_argument("--no-profile", action="store_true", help="skip the per-phase profile")
    p.add_argument("--cores", type=int, nargs=2, default=None, help="the two cores to pin to")
    p.add_argument("--torch-rmsprop", action="store_true",
                   help="rlmorning's DQN steps torch.optim.RMSprop instead of FlooredRMSprop (that lever off; "
                        "same numbers, the MinAtar preset's optimizer)")
    p.add_argument("--worker", choices=["rlmorning", "sb3", "profile"], help=argparse.SUPPRESS)
    p.add_argument("--learning-starts", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        _worker(args)
        return
    cores = args.cores or sorted(os.sched_getaffinity(0))[:2]
    if len(cores) < 2:
        raise SystemExit("needs two cores (one per library); pass --cores A B")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
          f"each library pinned to its own core (cores {cores[0]} and {cores[1]}), 1 torch thread; "
          f"rlmorning overrides: {args.set or 'none'}, rlmorning num_envs={args.num_envs}"
          + (", rlmorning on torch.optim.RMSprop" if args.torch_rmsprop else ""))
    profiles = {}
    for workload in args.workloads:
        w = WORKLOADS[workload]
        measure = args.measure or w["measure"]
        starts = _learning_starts(workload, args.set)
        rlm = _spawn("rlmorning", workload, measure, cores[0], args)
        sb3 = _spawn("sb3", workload, measure, cores[1], args, learning_starts=starts)
        r, s = _result(rlm), _result(sb3)
        print(f"{workload:8s} {w['env']} ({w['config']}, {starts} + {WARM_STEPS} warm-up + {measure} timed steps): "
              f"rlmorning {r['sps']:.0f} steps/s ({r['optimizer']}), sb3 {s['sps']:.0f} steps/s, "
              f"ratio {r['sps'] / s['sps']:.2f}x")
        if r.get("compile_s"):
            print(f"         rlmorning compiled its update in {r['compile_s']:.1f} s (before the timed window)")
        for reason in r.get("compile_failed", []):
            print(f"         rlmorning's torch.compile failed, it ran eagerly: {reason}")
        if any(o.replace(" ", "") in ("compile=true", "compile=True") for o in args.set):
            print("         no per-phase profile with compile: the compiled forward and backward are one graph")
        elif not args.no_profile:
            profiles[workload] = _result(_spawn("profile", workload, measure, cores[0], args))
    for workload, prof in profiles.items():
        total = sum(prof.values())
        print(f"{workload} profile, ms per env step alone on one core (total {total:.3f}): " + ", ".join(
            f"{k} {v:.3f} ({100 * v / total:.0f}%)" for k, v in prof.items()))


if __name__ == "__main__":
    main()
