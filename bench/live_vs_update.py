"""Where a live ``atari100k`` step loses time against ``bench/update.py``'s update, measured in one process.

Resumes a copy of a run's ``latest.pt`` (weights, optimizer, full replay) and interleaves ``--rounds`` rounds
of: 40 live trainer steps; 40 gradient steps of that run's agent, phase by phase; 40 gradient steps of
``bench/update.py``'s fresh agent (small random replay), phase by phase. Prints each phase's median ms.

    python bench/live_vs_update.py runs/atari100k/Boxing/seed2 --rounds 6 --threads 1
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads)

# isort: split
import argparse
import collections
import importlib.util
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
STEPS = 40


def phases(agent: Any) -> dict[str, float]:
    """One gradient step of ``agent`` (same maths as ``_gradient_step``), seconds per phase."""
    out: dict[str, float] = {}
    t = time.perf_counter()

    def mark(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        out[name], t = now - t, now

    b = agent._batch()
    mark("replay sample")
    obs, _ = agent._train_obs(b["obs"])
    nxt, _ = agent._train_obs(b["next_obs"])
    mark("augmentation")
    actions = torch.as_tensor(b["actions"].astype(np.int64))
    _, optimizer = agent._learner()
    optimizer.zero_grad(set_to_none=True)
    y = agent._td_target(torch.as_tensor(b["returns"]), torch.as_tensor(b["discounts"]), nxt)
    mark("Q(s') forward")
    q = agent.online(obs).float().gather(1, actions.unsqueeze(1)).squeeze(1)
    loss = agent._loss_fn(q, y)
    mark("Q(s) forward")
    loss.backward()
    mark("backward")
    optimizer.step()
    mark("optimizer")
    out["one gradient step"] = sum(out.values())
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="an atari100k run folder with checkpoints/latest.pt")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    from rlmorning.agents import AGENTS
    from rlmorning.config import RunConfig, split_config
    from rlmorning.run import read_config
    from rlmorning.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        shutil.copytree(args.run, run, ignore=shutil.ignore_patterns("videos", "tb", "best.pt"))
        flat = read_config(run)
        agent_name, env = flat.pop("agent"), flat.pop("env")
        flat.update(progress=False, torch_threads=args.threads)
        trainer_cfg, agent_cfg = split_config(flat, AGENTS.get(agent_name).config_cls, upgrade=True)
        trainer = Trainer(RunConfig(agent=agent_name, env=env, trainer=trainer_cfg, agent_config=agent_cfg), run,
                          resume=True)
        spec = importlib.util.spec_from_file_location("bench_update", HERE / "update.py")
        update = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(update)  # type: ignore[union-attr]
        fresh = update.make_agent("atari100k", dict.fromkeys(
            ("shared_target", "channels_last", "fused_adam", "augment"), True))
        times: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            for _ in range(STEPS):
                trainer._vector_step()
            times["live trainer step (act, env, store, update)"].append((time.perf_counter() - t0) / STEPS)
            for name, agent in (("the run's agent", trainer.agent), ("bench/update.py's agent", fresh)):
                for _ in range(STEPS):
                    for phase, seconds in phases(agent).items():
                        times[f"{name}: {phase}"].append(seconds)
        trainer.env.close()
    print(f"{args.run}, {args.threads} torch thread(s), median of {args.rounds} x {STEPS} steps, ms:")
    for key, values in times.items():
        print(f"  {key:55s} {1e3 * statistics.median(values):7.2f}")


if __name__ == "__main__":
    main()
