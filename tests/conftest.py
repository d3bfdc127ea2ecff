"""Shared fixtures."""

from __future__ import annotations

import builtins
import dataclasses
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_raises_keyboard_interrupt() -> Iterator[None]:
    """Give the tests (and the runs they start) Python's usual Ctrl-C, however pytest was started.

    A shell starts a background job (``pytest &``, ``nohup``) with SIGINT ignored, and a child inherits that:
    the interrupt tests would then wait for a signal that never arrives. Training keeps honouring an ignored
    SIGINT, as a Unix program should; only the test session resets it.
    """
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


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


@pytest.fixture
def hide_package(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    """``hide_package(name)``: for the rest of the test, importing ``name`` or any of its submodules fails as if it
    were not installed (modules already imported are dropped from ``sys.modules`` too)."""
    real_import = builtins.__import__
    hidden: list[str] = []

    def is_hidden(name: str) -> bool:
        return any(name == h or name.startswith(f"{h}.") for h in hidden)

    def guarded_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if is_hidden(name):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    def hide(name: str) -> None:
        hidden.append(name)
        for mod in [m for m in sys.modules if is_hidden(m)]:
            monkeypatch.delitem(sys.modules, mod)
        monkeypatch.setattr(builtins, "__import__", guarded_import)

    return hide


@pytest.fixture
def counter_survives_resume(monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Path, Path]]:
    """``counter_survives_resume(agent, cls, counter, train, root, steps)``: with ``agent`` built as ``cls`` (a
    subclass whose ``counter``, declared only in ``saved``, counts gradient steps), ``train(run, steps)`` runs
    ``root/full`` for ``steps`` and ``root/part`` for half of them, then resumes ``part`` to ``steps``. The counter
    must reach the checkpoint, come back with the loaded agent and count on after the resume; returns
    ``(full, part)`` for the caller's own checks."""
    from rlmorning import api
    from rlmorning.agents import AGENTS
    from rlmorning.run import load_checkpoint

    def check(agent: str, cls: type, counter: str, train: Callable[[Path, int], Path], root: Path,
              steps: int) -> tuple[Path, Path]:
        monkeypatch.setitem(AGENTS._items, agent, dataclasses.replace(AGENTS.get(agent), factory=cls))
        full = train(root / "full", steps)
        part = train(root / "part", steps // 2)
        saved = load_checkpoint(part / "checkpoints" / "latest.pt")["agent"][counter]
        loaded, _ = api.load_agent(part, "latest")
        assert isinstance(loaded, cls) and getattr(loaded, counter) == saved == loaded.updates > 0
        api.resume(part, steps=steps, progress=False)
        done = [api.load_agent(run, "latest")[0] for run in (full, part)]
        assert getattr(done[0], counter) == getattr(done[1], counter) == done[0].updates > saved  # counted on
        return full, part

    return check


@pytest.fixture
def checkpointed_cartpole_run(tmp_path: Path) -> tuple[Path, Callable[[], bool]]:
    """A 300-step CartPole DQN run with its checkpoint, and a check that its files are still as trained (for
    tools that must leave a run untouched)."""
    from rlmorning.api import train

    run = tmp_path / "run"
    train("dqn", "CartPole-v1", run_dir=run, overrides=["steps=300", "learning_starts=50", "eval_every=0",
                                                        "checkpoint_every=300", "heldout_states=0"],
          device="cpu", progress=False)

    def files() -> dict[Path, tuple[int, bytes]]:
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run.rglob("*") if p.is_file()}

    before = files()
    return run, lambda: files() == before
