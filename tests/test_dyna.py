"""Model-based DQN: Dyna and SimPLe modes, the imagined buffer, and training a world model from
another run's replay."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning import envs as envs_mod
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.dqn import DQNAgent
from rlmorning.agents.dyna import DynaDQNAgent, DynaDQNConfig, DynaModelConfig, make_dqn_agent, parse_world_model
from rlmorning.agents.imagination import ImaginedBuffer
from rlmorning.envs import real_next_obs
from rlmorning.errors import RlmError

pytest.importorskip("minatar")

SMALL_MODEL = {"latent_dim": 16, "hidden": 64, "codec_channels": 8}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_dqn(env, model: dict | None = None, **kw: object) -> DynaDQNAgent | DQNAgent:
    """A Dyna-DQN agent with a small model (``model`` entries override its settings); ``model=None``-free DQN
    with ``no_model=True``."""
    no_model = kw.pop("no_model", False)
    settings = {"codec": "vae", "dynamics": "gru", **SMALL_MODEL, "learning_starts": 50, "imagine_starts": 100,
                "batch_size": 8, "seq_len": 4, "rollout_batch": 8, "rollout_every": 4, "rollout_horizon": 3,
                "kstep_every": 0, **(model or {})}
    cfg = DynaDQNConfig(**{"encoder": "minatar", "train_freq": 1, "learning_starts": 50, "batch_size": 8,
                           "model": None if no_model else DynaModelConfig(**settings), **kw})
    return make_dqn_agent(cfg, AgentSetting(env.single_observation_space, env.single_action_space,
                                            num_envs=env.num_envs, total_steps=10_000))


def drive(agent: DynaDQNAgent, env, steps: int) -> list[dict[str, float]]:
    obs, _ = env.reset(seed=0)
    logs = []
    for t in range(steps):
        a, _ = agent.act(obs, None, True)
        nxt, r, te, tr, info = env.step(a)
        agent.observe(obs, a, r, te, tr, real_next_obs(nxt, info, te | tr))
        logs.append(agent.update(t))
        obs = nxt
    return logs


@pytest.fixture(scope="module")
def env():
    e = envs_mod.make_vector(envs_mod.resolve("MinAtar/Breakout"), 1, 0)
    yield e
    e.close()


def test_parse_world_model_names_and_errors(env):
    assert parse_world_model("vae-gru") == ("vae", "gru")
    assert parse_world_model("vqvae-mdn-gru") == ("vqvae", "mdn-gru")
    assert parse_world_model("ae-mdn-gru") == ("ae", "mdn-gru")
    with pytest.raises(RlmError, match="unknown world_model 'vae-lstm'. Valid: .*vae-gru"):
        parse_world_model("vae-lstm")
    with pytest.raises(RlmError, match="unknown config key 'model.latnet_dim'. Did you mean 'model.latent_dim'"):
        api.resolve_run_config("dqn", "MinAtar/Breakout", config="dyna_minatar", overrides=["model.latnet_dim=4"])
    with pytest.raises(RlmError, match="imagined_ratio does not apply"):
        make_dqn(env, {"mode": "simple", "imagined_ratio": 0.5})
    with pytest.raises(RlmError, match="'model.mode' must be one of dyna, simple"):
        make_dqn(env, {"mode": "planet"})
    with pytest.raises(RlmError, match="imagined_ratio"):
        make_dqn(env, {"imagined_ratio": 0.0})
    with pytest.raises(RlmError, match="'model.imagined_reward' must be one of mean, round, got 'sampled'"):
        make_dqn(env, {"imagined_reward": "sampled"})
    with pytest.raises(RlmError, match="'model.imagined_termination' must be one of expected, threshold"):
        make_dqn(env, {"imagined_termination": "soft"})
    with pytest.raises(RlmError, match=r"'model.context' \(5\) must be <= model.seq_len \(4\)"):
        make_dqn(env, {"context": 5})


def test_imagined_buffer_ring_and_checkpoint():
    buf = ImaginedBuffer(5, (2,), np.uint8, seed=0)
    for i in range(3):
        buf.add(np.full((3, 2), i, np.uint8), np.array([i] * 3), np.full(3, float(i)), np.full((3, 2), i + 1, np.uint8),
                np.full(3, 0.9, np.float32))
    assert len(buf) == 5 and buf.count == 9
    b = buf.sample(200)
    assert set(np.unique(b["actions"])) == {1, 2}  # the oldest rows were overwritten
    assert (b["next_obs"][:, 0] == b["obs"][:, 0] + 1).all() and (b["returns"] == b["actions"]).all()
    other = ImaginedBuffer(5, (2,), np.uint8, seed=9)
    other.load_state_dict(buf.state_dict())
    x, y = buf.sample(7), other.sample(7)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k])


def test_dyna_trains_model_imagines_and_mixes_batches(env):
    agent = make_dqn(env, {"imagined_ratio": 0.5})
    logs = drive(agent, env, 220)
    planner = agent.planner
    assert planner.model.updates > 0 and len(planner.imagined) > 0
    keys = set().union(*logs)
    assert {"loss", "recon_loss", "pred_loss", "imagined_return", "imagined_size"} <= keys
    losses = [m["model_loss"] for m in logs if "model_loss" in m]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    # imagined frames are binary planes of the env's shape; discounts gamma * (1 - p_term) lie in [0, gamma]
    n = len(planner.imagined)
    assert set(np.unique(planner.imagined.next_obs[:n])) <= {0, 1}
    assert (planner.imagined.discounts[:n] >= 0).all() and (planner.imagined.discounts[:n] <= np.float32(0.99)).all()
    # a batch: batch_size real transitions plus imagined_ratio x batch_size imagined ones
    batch = agent.dqn._batch()
    assert len(batch["obs"]) == 8 + 4 and len(batch["returns"]) == 12
    # the reward head's expected reward, not rounded (MinAtar's rewards are integers)
    assert planner.integer_rewards and (planner.imagined.rewards[:n] != np.round(planner.imagined.rewards[:n])).any()


@pytest.mark.parametrize(("reward_mode", "term_mode", "reward", "discount"),
                         [("round", "threshold", 0.0, 0.99), ("mean", "expected", 0.3, 0.99 * 0.8)])
def test_imagined_reward_and_termination_modes(env, reward_mode, term_mode, reward, discount):
    agent = make_dqn(env, {"imagined_reward": reward_mode, "imagined_termination": term_mode})
    drive(agent, env, 60)  # replay holds real start states
    planner = agent.planner
    real_step = planner.model.step_latent

    def step_with_known_heads(z, h, actions):  # reward 0.3 and termination probability 0.2 on every row
        z, h, probs, r, pt = real_step(z, h, actions)
        return z, h, probs, torch.full_like(r, 0.3), torch.full_like(pt, 0.2)

    planner.model.step_latent = step_with_known_heads  # type: ignore[method-assign]
    planner.rollout(agent._imagination_policy, 0.1)
    n = len(planner.imagined)
    assert n == 8 * 3  # p = 0.2 < 0.5: no row stops in either mode
    np.testing.assert_allclose(planner.imagined.rewards[:n], reward, rtol=1e-6)
    np.testing.assert_allclose(planner.imagined.discounts[:n], discount, rtol=1e-6)


def test_rollouts_start_after_observing_the_models_context(env):
    """A model with context 3 reads the 3 real frames up to each start (and the 2 actions between them);
    rows nearer their episode's start than that begin from the lone start frame."""
    agent = make_dqn(env, {"context": 3})
    drive(agent, env, 150)
    planner, replay = agent.planner, agent.replay
    rng_state = replay.rng.bit_generator.state
    obs, z, h = planner.start_states(64)
    replay.rng.bit_generator.state = rng_state  # draw the same windows again
    seq = replay.sample_sequences(64, 2)
    full = seq["frame_mask"].all(axis=0)
    assert full.any() and (~full).any()
    np.testing.assert_array_equal(obs[full], seq["frames"][-1, full])
    np.testing.assert_array_equal(obs[~full], seq["frames"][0, ~full])
    z_ctx, h_ctx = planner.model.start(seq["frames"][:, full], seq["actions"][:, full])
    z_one, h_one = planner.model.start(seq["frames"][0, ~full])
    torch.testing.assert_close(z[torch.as_tensor(full)], z_ctx)
    torch.testing.assert_close(h[torch.as_tensor(full)], h_ctx)
    torch.testing.assert_close(z[torch.as_tensor(~full)], z_one)
    torch.testing.assert_close(h[torch.as_tensor(~full)], h_one)
    # the observed history changes the state: the context is not ignored
    assert not torch.allclose(h_ctx, planner.model.start(seq["frames"][-1, full])[1])


def test_simple_mode_learns_only_from_imagined_transitions(env):
    agent = make_dqn(env, {"mode": "simple"})
    logs = drive(agent, env, 100)  # before imagination starts: no DQN updates at all in simple mode
    assert agent.updates == 0 and not any("loss" in m for m in logs)
    calls = {"replay": 0, "rollouts": 0}
    real_sample, real_rollout = agent.replay.sample, agent.planner.rollout

    def counting_sample(n: int) -> dict:
        calls["replay"] += 1
        return real_sample(n)

    def counting_rollout(*args: object) -> float:
        calls["rollouts"] += 1
        return real_rollout(*args)

    agent.replay.sample = counting_sample  # type: ignore[method-assign]
    agent.planner.rollout = counting_rollout  # type: ignore[method-assign]
    drive(agent, env, 120)
    assert agent.updates > 0 and calls["rollouts"] > 0
    # replay.sample only supplies the rollouts' start states: the DQN's batches never touch real data
    assert calls["replay"] == calls["rollouts"]
    assert len(agent.dqn._batch()["obs"]) == 8


def test_dyna_run_is_deterministic_and_checkpoints(tmp_path):
    overrides = ["model={codec: vae, dynamics: gru, latent_dim: 16, hidden: 64, codec_channels: 8}",
                 "learning_starts=100", "model.learning_starts=100", "model.imagine_starts=200", "batch_size=8",
                 "model.batch_size=8", "model.seq_len=4", "model.rollout_batch=8", "model.rollout_every=8",
                 "model.kstep_every=20", "model.kstep_batch=16", "model.kstep_horizon=4", "log_every=100",
                 "eval_every=400", "eval_episodes=1", "checkpoint_every=400", "torch_threads=1", "train_freq=2"]
    rows = []
    for name in ("a", "b"):
        api.train("dqn", "MinAtar/Breakout", config="dqn_minatar", run_dir=tmp_path / name, steps=400, seed=3,
                  device="cpu", progress=False, overrides=overrides)
        with (tmp_path / name / "metrics.csv").open() as fh:
            rows.append([{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in csv.DictReader(fh)])
    assert rows[0] == rows[1]
    cols = set(rows[0][0])
    assert {"recon_loss", "kstep_err_1", "copy_err_4", "imagined_return", "eval_return_mean"} <= cols
    agent, cfg = api.load_agent(tmp_path / "a", "latest")
    assert cfg.agent == "dqn" and agent.planner is not None and agent.planner.model.updates > 0
    # a model-free config cannot silently drop a checkpoint's model, and vice versa
    free = make_dqn(envs_mod.make_vector(envs_mod.resolve("MinAtar/Breakout"), 1, 0), no_model=True)
    assert type(free) is DQNAgent
    free.load_state_dict(agent.state_dict(include_buffers=False))  # the Q-network still loads
    with pytest.raises(RlmError, match="no world model"):
        agent.load_state_dict(free.state_dict(include_buffers=False))


def test_worldmodel_from_a_dqn_runs_replay(tmp_path):
    src = tmp_path / "dqn"
    api.train("dqn", "MinAtar/Breakout", config="dqn_minatar", run_dir=src, steps=300, seed=0, device="cpu",
              progress=False, overrides=["learning_starts=100", "buffer_size=1000", "eval_every=0",
                                         "checkpoint_every=300", "torch_threads=1", "log_every=300"])
    run = tmp_path / "wm"
    api.train("worldmodel", "MinAtar/Breakout", run_dir=run, steps=40, seed=0, device="cpu", progress=False,
              overrides=[f"from_run={src}", "latent_dim=16", "hidden=64", "codec_channels=8", "learning_starts=0",
                         "train_freq=4", "batch_size=8", "seq_len=4", "kstep_every=5", "kstep_batch=16",
                         "kstep_horizon=4", "eval_every=0", "checkpoint_every=40", "torch_threads=1",
                         "log_every=20"])
    agent, _ = api.load_agent(run, "latest")
    assert agent.replay.stream_capacity == 1000 and len(agent.replay) >= 300  # the DQN's 300 steps + 40 new
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert any(r.get("kstep_err_1") for r in rows)
    with pytest.raises(RlmError, match="--num-envs 1"):
        api.train("worldmodel", "MinAtar/Breakout", run_dir=tmp_path / "wm2", steps=10, seed=0, device="cpu",
                  progress=False, num_envs=2, overrides=[f"from_run={src}", "eval_every=0"])
    with pytest.raises(RlmError, match="does not exist"):
        api.train("worldmodel", "MinAtar/Breakout", run_dir=tmp_path / "wm3", steps=10, seed=0, device="cpu",
                  progress=False, overrides=[f"from_run={tmp_path / 'nothing'}", "eval_every=0"])


def test_dyna_with_the_spatial_world_model(tmp_path):
    """``model.codec=grid-ae``, ``model.dynamics=conv-gru`` (latent grid + conv-GRU) plugs into Dyna-DQN like
    the flat models."""
    overrides = ["model.codec=grid-ae", "model.dynamics=conv-gru", "model.codec_channels=8",
                 "model.codec_kwargs.latent_channels=4", "model.dynamics_kwargs.channels=8", "model.hidden=32",
                 "learning_starts=100", "model.learning_starts=100", "model.imagine_starts=150", "batch_size=8",
                 "model.batch_size=8", "model.seq_len=4", "model.rollout_batch=8", "model.rollout_every=8",
                 "model.kstep_every=10", "model.kstep_batch=16", "model.kstep_horizon=4", "log_every=100",
                 "eval_every=0", "checkpoint_every=0", "torch_threads=1", "train_freq=2"]
    api.train("dqn", "MinAtar/Breakout", config="dqn_minatar", run_dir=tmp_path / "run", steps=300, seed=1,
              device="cpu", progress=False, overrides=overrides)
    with (tmp_path / "run" / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    last = rows[-1]
    assert float(last["imagined_return"]) == float(last["imagined_return"])  # logged, not nan
    assert 0.0 <= float(last["kstep_err_1"]) <= 1.0 and float(last["recon_loss"]) > 0
    agent, _ = api.load_agent(tmp_path / "run", "latest")
    assert agent.planner.model.codec_name == "grid-ae" and agent.planner.model.dynamics_name == "conv-gru"
