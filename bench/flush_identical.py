"""Does ``flush_subnormals`` change what DQN learns? Trains the same seeded run with it true and false and
compares the final weights bit for bit.

    python bench/flush_identical.py                                  # CartPole 8,000 and MinAtar 9,000 steps
    python bench/flush_identical.py --runs CartPole-v1:dqn_classic:20000
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import datetime
import platform
import tempfile
from pathlib import Path

import torch

from rlmorning import api
from rlmorning.run import load_checkpoint


def final_weights(env: str, config: str, steps: int, flush: bool, seed: int) -> dict[str, torch.Tensor]:
    """The online network's weights after ``steps`` env steps of a one-thread run."""
    run = Path(tempfile.mkdtemp(prefix="rlm-bench-flush-")) / "run"
    api.train("dqn", env, config=config, run_dir=run, steps=steps, seed=seed, progress=False,
              overrides=[f"flush_subnormals={str(flush).lower()}", "eval_every=0", "heldout_states=0",
                         f"checkpoint_every={steps}", "torch_threads=1"])
    return load_checkpoint(run / "checkpoints" / "latest.pt")["agent"]["online"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", default=["CartPole-v1:dqn_classic:8000", "MinAtar/Breakout:dqn_minatar:9000"],
                   help="ENV:PRESET:STEPS")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"{datetime.date.today()}, {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"seed {args.seed}")
    for spec in args.runs:
        env, config, steps = spec.rsplit(":", 2)
        on = final_weights(env, config, int(steps), True, args.seed)
        off = final_weights(env, config, int(steps), False, args.seed)
        differing = [k for k in on if not torch.equal(on[k], off[k])]
        print(f"{env} ({config}, {steps} steps): weights with and without the flush "
              + ("bit-identical" if not differing else f"differ in {', '.join(differing)}"))


if __name__ == "__main__":
    main()
