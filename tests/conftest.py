"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run a module's tests with one torch thread (small nets: threads only add overhead and contention)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def train_seeds() -> Callable[[Path, str, int, list[str]], list[Path]]:
    """``train_seeds(root, env, steps, overrides)``: short DQN runs with seeds 0 and 1 under ``root``, named
    ``<first word of env, lower case>-<seed>`` (``breakout-0``, ``cartpole-1``)."""
    from rlmorning import api

    def train(root: Path, env: str, steps: int, overrides: list[str]) -> list[Path]:
        runs = []
        for seed in (0, 1):
            run = root / f"{env.split('-')[0].lower()}-{seed}"
            api.train("dqn", env, run_dir=run, steps=steps, seed=seed, progress=False, overrides=overrides)
            runs.append(run)
        return runs

    return train
