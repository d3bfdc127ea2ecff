"""docs/design.md's example agent: the code block runs as written, registers itself, trains on CartPole-v1
through the real trainer, and its run directory, checkpoint and learned policy are what the page says."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest
import torch

from rlmorning import api
from rlmorning.agents import AGENTS, Agent, AgentSetting
from rlmorning.run import MetricsCSV

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def example_code() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DESIGN.read_text(encoding="utf-8"), flags=re.S)
    found = [b for b in blocks if 'AGENTS.register("hillclimb"' in b]
    assert len(found) == 1, "docs/design.md should hold exactly one code block registering 'hillclimb'"
    return found[0]


@pytest.fixture
def hillclimb():
    """Execute the example as a module; restore the agent registry afterwards."""
    saved = dict(AGENTS._items), dict(AGENTS._help)
    module = types.ModuleType("design_example")
    sys.modules[module.__name__] = module
    try:
        exec(compile(example_code(), str(DESIGN), "exec"), module.__dict__)
        yield module
    finally:
        AGENTS._items, AGENTS._help = saved
        del sys.modules[module.__name__]


def test_example_agent_trains_with_the_real_trainer(hillclimb, tmp_path):
    spec = AGENTS.get("hillclimb")
    setting = AgentSetting(*_cartpole_spaces(), num_envs=2, total_steps=1, device=torch.device("cpu"), seed=0,
                           inference=True)
    built = spec.factory(spec.config_cls(), setting)
    assert isinstance(built, Agent)  # every method of the protocol is there
    run = tmp_path / "run"
    summary = api.train("hillclimb", "CartPole-v1", run_dir=run, steps=2000, seed=0, progress=False,
                        overrides=["noise=0.5", "eval_every=1000", "eval_episodes=5", "log_every=250",
                                   "checkpoint_every=1000", "heldout_states=0"])
    assert summary["steps"] == 2000

    rows = MetricsCSV.read(run / "metrics.csv")
    assert len([r for r in rows if r.get("best_return")]) >= 6
    evals = [float(r["eval_return_mean"]) for r in rows if r.get("eval_return_mean")]
    assert len(evals) == 2
    # all-zero weights (the start) always push left: ~9 steps; a random linear policy rarely passes 100
    assert summary["best_eval"] > 150

    agent, cfg = api.load_policy(run, "best")
    assert isinstance(agent, hillclimb.HillClimbAgent) and cfg.agent_config.noise == 0.5
    assert agent.best.abs().sum() > 0
    result = api.evaluate_run(run, episodes=3, checkpoint="best", epsilon=0.0)
    assert result["mean"] > 150


def _cartpole_spaces():
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
