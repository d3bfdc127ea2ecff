"""Gradient steps of a real run, with and without subnormal floats flushed in the optimizer step.

Loads a copy of a run's ``checkpoints/latest.pt`` (weights, optimizer state, replay; the run itself is not
touched), prints the share of the optimizer's running averages that are subnormal (below ~1.2e-38: the slow
case of x86 arithmetic), then times the agent's own gradient step (sample, forward, backward, optimizer) round
robin in three variants, each update from the checkpoint's own weights and optimizer state:
``flush_subnormals`` off; off with the optimizer step on one thread (what the default does besides flushing,
measured alone); on (the default: the optimizer step flushes, on one thread). Medians of the update and of
its optimizer step, in ms.

    python bench/subnormals.py runs/<run>                  # the run's thread count
    python bench/subnormals.py runs/<run> --threads 1 --reps 20
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import copy
import datetime
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def load_copy(run: Path, threads: int) -> tuple[Any, Path]:
    """A trainer resumed from a hard-linked copy of ``run`` (files are replaced, never written in place)."""
    from _resumable import resumed_trainer

    scratch = Path(tempfile.mkdtemp(prefix="rlm-bench-subnormals-"))
    copy = scratch / "run"
    shutil.copytree(run, copy, copy_function=os.link, ignore=shutil.ignore_patterns(".lock", "tb"))
    settings = {"torch_threads": threads} if threads else {}
    return resumed_trainer(copy, warn=False, progress=False, **settings), scratch


def subnormal_share(optimizer: torch.optim.Optimizer) -> float:
    """Share of the optimizer state's float elements (moments, averages) that are subnormal."""
    tiny = torch.finfo(torch.float32).tiny
    total = sub = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value) and value.is_floating_point() and value.numel() > 1:
                total += value.numel()
                sub += int(((value != 0) & (value.abs() < tiny)).sum())
    return sub / max(total, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="a DQN run folder with checkpoints/latest.pt")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: the run's own setting)")
    p.add_argument("--reps", type=int, default=10, help="updates per variant (round robin)")
    args = p.parse_args()
    if not (args.run / "checkpoints" / "latest.pt").is_file():
        raise SystemExit(f"'{args.run}' has no checkpoints/latest.pt")
    trainer, scratch = load_copy(args.run, args.threads)
    try:
        agent = trainer.agent
        if not hasattr(agent, "_optimizer_step"):
            raise SystemExit(f"'{args.run}' is not a DQN run")
        print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s); {args.run} at step {trainer.state.step}")
        print(f"subnormal share of the optimizer's state: {subnormal_share(agent.optimizer):.3f}")
        step = agent._optimizer_step

        def one_thread(opt: torch.optim.Optimizer) -> None:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                step(opt)
            finally:
                torch.set_num_threads(threads)

        variants: dict[str, tuple[bool, Callable[[Any], None]]] = {
            "flush_subnormals=false": (False, step), "false, optimizer step on 1 thread": (False, one_thread),
            "flush_subnormals=true (default)": (True, step)}
        update_ms: dict[str, list[float]] = {name: [] for name in variants}
        step_ms: dict[str, list[float]] = {name: [] for name in variants}
        saved_state = copy.deepcopy(agent.optimizer.state_dict())
        saved_params = [q.detach().clone() for q in agent.online.parameters()]
        for _ in range(args.reps):
            for name, (flush, fn) in variants.items():
                # every timed update starts from the checkpoint's weights and optimizer state: a flushed step
                # zeroes the subnormals, which would leave the next variant a faster state
                agent.optimizer.load_state_dict(copy.deepcopy(saved_state))
                with torch.no_grad():
                    for q, saved in zip(agent.online.parameters(), saved_params, strict=True):
                        q.copy_(saved)
                agent.config.flush_subnormals = flush

                def timed(opt: torch.optim.Optimizer, fn: Callable[[Any], None] = fn, name: str = name) -> None:
                    t0 = time.perf_counter()
                    fn(opt)
                    step_ms[name].append(1e3 * (time.perf_counter() - t0))

                agent._optimizer_step = timed
                t0 = time.perf_counter()
                agent._gradient_step()
                update_ms[name].append(1e3 * (time.perf_counter() - t0))
        for name in variants:
            print(f"{name:34s} update {statistics.median(update_ms[name]):8.1f} ms, "
                  f"optimizer step {statistics.median(step_ms[name]):7.1f} ms")
        print(f"subnormal share after the last (flushed) update: {subnormal_share(agent.optimizer):.3f}")
    finally:
        trainer.env.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
