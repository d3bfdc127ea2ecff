"""Recurrent A2C: learning signal on Copy-v0, the NTM core on Tuple actions, checkpoints and resume."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmorning import api, cli
from rlmorning.agents.a2c import A2CAgent, A2CConfig
from rlmorning.agents.base import AgentSetting
from rlmorning.envs.algorithmic import CopyEnv
from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV, load_checkpoint

SMALL = ["torch_threads=1", "num_envs=8", "n_steps=5", "lr=0.003", "lstm_size=64", "eval_episodes=2",
         "log_every=1000"]


def train(run: Path, steps: int, *extra: str, env: str = "rlmorning/Copy-v0", seed: int = 0) -> Path:
    api.train("a2c", env, overrides=SMALL + list(extra), run_dir=run, steps=steps, seed=seed, progress=False)
    return run


def copy_symbol_probability(agent: A2CAgent) -> float:
    """Mean probability that the first step writes the symbol under the head (0.2 for a uniform policy)."""
    with torch.no_grad():
        logits, _, _ = agent._step(agent._encode_obs(np.arange(5)), agent.initial_state(5))
    return float(torch.softmax(logits[2], -1).diag().mean())


def test_lstm_learns_to_copy_the_symbol_it_reads(tmp_path: Path) -> None:
    run = train(tmp_path / "lstm", 5000, "eval_every=2500", "checkpoint_every=2500")
    agent, _ = api.load_agent(run)
    assert copy_symbol_probability(agent) > 0.3
    rows = [r for r in MetricsCSV.read(run / "metrics.csv") if r.get("entropy")]
    assert float(rows[-1]["entropy"]) < float(rows[0]["entropy"]) - 0.03
    assert float(rows[-1]["curriculum_min_length"]) >= 2
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "latest.pt").is_file()


def test_ntm_core_runs_resumes_and_plots_memory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ntm = ("core=ntm", "controller_size=16", "memory_size=8", "memory_width=4", "eval_every=200",
           "checkpoint_every=200", "log_every=100")
    run = train(tmp_path / "ntm", 200, *ntm)
    summary = api.resume(run, steps=400, progress=False)
    assert summary["steps"] == 400
    steps = [int(float(r["step"])) for r in MetricsCSV.read(run / "metrics.csv")]
    assert max(steps) == 400 and steps == sorted(steps)
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["agent"]["updates"] == 400 // 8 // 5
    assert cli.main(["plot-memory", str(run), "--length", "3"]) == 0
    assert Path(capsys.readouterr().out.strip()).is_file()


def test_resume_on_an_ntm_task_is_exact_and_same_seed_same_params(tmp_path: Path) -> None:
    extra = ("controller_size=8", "lstm_size=16", "eval_every=0", "checkpoint_every=120", "log_every=40",
             "env_kwargs.bits=3", "env_kwargs.max_length=2")
    env = "rlmorning/NTMCopy-v0"  # MultiBinary actions, rewarded per correct bit; envs can be checkpointed
    full = train(tmp_path / "full", 240, *extra, env=env)
    part = train(tmp_path / "part", 120, *extra, env=env)
    twin = train(tmp_path / "twin", 120, *extra, env=env)
    p_twin = load_checkpoint(twin / "checkpoints" / "latest.pt")["agent"]["net"]
    for k, v in load_checkpoint(part / "checkpoints" / "latest.pt")["agent"]["net"].items():
        assert torch.equal(v, p_twin[k]), k
    api.resume(part, steps=240, progress=False)

    def rows(run: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")}
                for r in MetricsCSV.read(run / "metrics.csv")]

    assert rows(full) == rows(part)
    p_full = load_checkpoint(full / "checkpoints" / "latest.pt")["agent"]["net"]
    p_part = load_checkpoint(part / "checkpoints" / "latest.pt")["agent"]["net"]
    for k, v in p_full.items():
        assert torch.equal(v, p_part[k]), k


class CountingA2C(A2CAgent):
    """A2C with one more counter, declared in a single place: its name in ``saved``."""

    saved = (*A2CAgent.saved, "rollouts_trained")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.rollouts_trained = 0

    def _train(self) -> dict[str, float]:
        self.rollouts_trained += 1
        return super()._train()


def test_a_counter_declared_once_survives_save_load_and_resume(tmp_path: Path,
                                                               counter_survives_resume: Callable[..., Any]) -> None:
    extra = ("controller_size=8", "lstm_size=16", "eval_every=0", "checkpoint_every=120", "log_every=40",
             "env_kwargs.bits=3", "env_kwargs.max_length=2")

    def train_ntm_copy(run: Path, steps: int) -> Path:
        return train(run, steps, *extra, env="rlmorning/NTMCopy-v0")

    full, part = counter_survives_resume("a2c", CountingA2C, "rollouts_trained", train_ntm_copy, tmp_path, 240)
    p_full = load_checkpoint(full / "checkpoints" / "latest.pt")["agent"]["net"]
    for k, v in load_checkpoint(part / "checkpoints" / "latest.pt")["agent"]["net"].items():
        assert torch.equal(v, p_full[k]), k


def make_agent(core: str = "lstm", seed: int = 0) -> tuple[A2CAgent, CopyEnv]:
    env = CopyEnv()
    cfg = A2CConfig(core=core, lstm_size=16, controller_size=8, memory_size=6, memory_width=3, n_steps=4)
    torch.manual_seed(seed)
    agent = A2CAgent(cfg, AgentSetting(env.observation_space, env.action_space, num_envs=2, total_steps=100,
                                       seed=seed))
    return agent, env


@pytest.mark.parametrize("core", ["lstm", "ntm"])
def test_state_dict_round_trip_mid_rollout(core: str) -> None:
    a, _ = make_agent(core)
    rng = np.random.default_rng(0)
    state = a.initial_state(2)
    obs = rng.integers(0, 6, 2)
    seen: list[dict[str, float]] = []
    for t in range(6):  # one update after 4 steps, then 2 steps of the next rollout
        actions, state = a.act(obs, state, explore=True)
        assert isinstance(actions, tuple) and len(actions) == 3 and actions[2].shape == (2,)
        nxt = rng.integers(0, 6, 2)
        done = np.array([t == 2, False])
        a.observe(obs, actions, rng.standard_normal(2), done, np.zeros(2, bool), nxt, None, {})
        state = a.reset_state(state, done)
        m = a.update(t)
        assert bool(m) == (t == 3)
        seen += [m] if m else []
        obs = nxt
    assert np.isfinite(list(seen[0].values())).all()
    b, _ = make_agent(core, seed=1)
    b.load_state_dict(a.state_dict())
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k])
    assert len(b.rollout["rewards"]) == 2 and b.rollout_state is not None
    # same generator, same resumed recurrent state -> the same sampled actions
    out_a, _ = a.act(obs, state, explore=True)
    out_b, _ = b.act(obs, b.fresh_state(2), explore=True)
    for pa, pb in zip(out_a, out_b, strict=True):
        assert np.array_equal(pa, pb)
    # greedy actions ignore the generator
    g1, _ = a.act(obs, a.initial_state(2), explore=False)
    g2, _ = b.act(obs, b.initial_state(2), explore=False)
    assert all(np.array_equal(x, y) for x, y in zip(g1, g2, strict=True))


def test_bad_spaces_are_one_line_errors() -> None:
    cfg = A2CConfig()
    with pytest.raises(RlmError, match="actions"):
        A2CAgent(cfg, AgentSetting(gym.spaces.Discrete(3), gym.spaces.Box(-1, 1, (2,)), total_steps=1))
    with pytest.raises(RlmError, match="core"):
        A2CAgent(A2CConfig(core="gru"), AgentSetting(gym.spaces.Discrete(3), gym.spaces.Discrete(2), total_steps=1))
