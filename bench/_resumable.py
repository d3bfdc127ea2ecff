"""Resumable benchmark runs: train a run to its end (resuming it when interrupted) and cache its result."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from rlmorning import api


def train_or_resume(agent: str, env: str, run: Path, steps: int, seed: int, config: str, overrides: list[str]) -> None:
    """Train ``run`` to ``steps``, resuming it from ``checkpoints/latest.pt`` if it was interrupted; a run that
    stopped before its first checkpoint starts again."""
    if (run / "checkpoints" / "latest.pt").is_file():
        api.resume(run, steps=steps, device="cpu", progress=False)
        return
    if run.exists():
        shutil.rmtree(run)
    api.train(agent, env, config=config, run_dir=run, steps=steps, seed=seed, device="cpu", progress=False,
              overrides=overrides)


def result_path(out: Path, key: str) -> Path:
    """Where the cached JSON result ``key`` lives."""
    return out / "results" / f"{key}.json"


def read_cached(out: Path, key: str) -> dict | None:
    """The cached result ``key``, or None when it has not been computed."""
    path = result_path(out, key)
    return json.loads(path.read_text()) if path.is_file() else None


def write_cached(out: Path, key: str, result: dict) -> None:
    path = result_path(out, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def cached(out: Path, key: str, make: Callable[[], dict]) -> dict:
    """The JSON result ``out/results/<key>.json``, computed by ``make()`` (and its wall time added) when missing."""
    known = read_cached(out, key)
    if known is not None:
        return known
    t0 = time.perf_counter()
    result = make()
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    write_cached(out, key, result)
    print(json.dumps({"key": key, **result}), flush=True)
    return result


def resumed_trainer(run: Path, warn: bool = True, **settings: object) -> object:
    """A Trainer resumed from ``run``'s ``checkpoints/latest.pt``, its config.yaml read as ``train --resume``
    reads it (an older run's keys translated) with ``settings`` (config keys) replacing its values."""
    from rlmorning.agents import AGENTS
    from rlmorning.config import RunConfig, split_config
    from rlmorning.run import read_config
    from rlmorning.trainer import Trainer

    flat = read_config(run)
    agent, env = flat.pop("agent"), flat.pop("env")
    flat.update(settings)
    trainer_cfg, agent_cfg = split_config(flat, AGENTS.get(agent).config_cls, upgrade=True, warn=warn)
    return Trainer(RunConfig(agent=agent, env=env, trainer=trainer_cfg, agent_config=agent_cfg), run, resume=True)
