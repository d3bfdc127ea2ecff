"""One RMSprop step on a trained MinAtar Q-network: torch's multi-tensor RMSprop vs rlmorning's FlooredRMSprop.

Trains ``dqn_minatar`` on MinAtar Breakout for ``--steps`` env steps (one torch thread), takes one gradient of a
replay batch, then times ``optimizer.step()`` of both optimizers on copies of the trained parameters and of
the optimizer's state, in alternating short blocks (each from fresh copies) so the host's drift hits both
alike. Prints the share of the averages that are exactly zero (what makes torch's square root slow on CPU),
the median microseconds per step of each, their ratio, and whether the two produced the same parameters
(they must: the floor changes no bit).

    python bench/rmsprop.py
    python bench/rmsprop.py --steps 20000 --blocks 9
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import copy
import datetime
import platform
import statistics
import tempfile
import time

import torch


def trained_agent(steps: int, seed: int) -> object:
    """A ``dqn_minatar`` agent after ``steps`` env steps on MinAtar Breakout (learning from step 1,000)."""
    from rlmorning.api import resolve_run_config
    from rlmorning.trainer import Trainer

    sets = ["eval_every=0", "checkpoint_every=0", "heldout_states=0", "log_every=1000000000", "torch_threads=1",
            "learning_starts=1000"]
    cfg = resolve_run_config("dqn", "MinAtar/Breakout", config="dqn_minatar", overrides=sets, steps=steps,
                             seed=seed, device="cpu", progress=False)
    trainer = Trainer(cfg, tempfile.mkdtemp(prefix="rlm-bench-rmsprop-"))
    trainer.train()
    return trainer.agent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6000, help="env steps of training before timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--blocks", type=int, default=30, help="alternating timed blocks per optimizer")
    p.add_argument("--reps", type=int, default=25, help="optimizer steps per block")
    args = p.parse_args()
    torch.set_num_threads(1)
    from rlmorning.agents.optim import FlooredRMSprop

    agent = trained_agent(args.steps, args.seed)
    agent._gradient_step()  # leaves a real batch's gradients in .grad
    source = agent.optimizer
    params = [p for p in agent.online.parameters()]
    zero = sum(int((source.state[p]["square_avg"] == 0).sum()) for p in params)
    total = sum(p.numel() for p in params)
    group = {k: source.param_groups[0][k] for k in ("lr", "alpha", "eps", "centered", "momentum")}

    def copy_of(cls: type, **extra: object) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
        clones = [p.detach().clone().requires_grad_(True) for p in params]
        for c, p in zip(clones, params, strict=True):
            c.grad = p.grad.clone()
        opt = cls(clones, **group, **extra)
        opt.load_state_dict(copy.deepcopy(source.state_dict()))
        return clones, opt

    names = ("torch.optim.RMSprop (foreach)", "FlooredRMSprop")
    makers = (lambda: copy_of(torch.optim.RMSprop, foreach=True), lambda: copy_of(FlooredRMSprop))
    times: dict[str, list[float]] = {name: [] for name in names}
    finals: dict[str, list[torch.Tensor]] = {}
    for _ in range(args.blocks):  # each block from fresh copies: with one fixed gradient, many steps drive the
        for name, make in zip(names, makers, strict=True):  # centered variance to rounding noise (NaN in torch)
            clones, opt = make()
            opt.step()  # the first step allocates; not timed
            t0 = time.perf_counter()
            for _ in range(args.reps):
                opt.step()
            times[name].append((time.perf_counter() - t0) / args.reps * 1e6)
            finals[name] = clones
    same = all(torch.equal(a, b) for a, b in zip(*finals.values(), strict=True))
    host = platform.processor() or platform.machine()
    print(f"{datetime.date.today()}, {host}, torch {torch.__version__}, 1 thread; "
          f"dqn_minatar after {args.steps} env steps (seed {args.seed})")
    print(f"RMSprop averages exactly zero: {zero / total:.1%} of {total:,}")
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, med in medians.items():
        low, high = min(times[name]), max(times[name])
        print(f"{name:32s} {med:8.1f} us per step (median of {args.blocks} blocks; range {low:.0f}-{high:.0f})")
    torch_us, ours_us = medians.values()
    print(f"ratio torch / Floored: {torch_us / ours_us:.2f}x; same parameters after {args.reps + 1} steps: {same}")


if __name__ == "__main__":
    main()
