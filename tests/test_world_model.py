"""World models: codecs, GRU dynamics, imagination, the imagined vector env, the
``worldmodel`` agent through the trainer, and the ``dream`` video."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning import envs as envs_mod
from rlmorning.agents import AGENTS, AgentSetting
from rlmorning.agents.nets.world_model_nets import CODECS, DYNAMICS, make_codec, make_dynamics
from rlmorning.agents.world_model import WorldModel, WorldModelAgent, WorldModelConfig
from rlmorning.cli import main
from rlmorning.envs import real_next_obs
from rlmorning.errors import RlmError

pytest.importorskip("minatar")

SMALL = {"latent_dim": 16, "codec_channels": 8, "hidden": 64}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_agent(env: gym.vector.VectorEnv, seed: int = 0, **kw: object) -> WorldModelAgent:
    cfg = WorldModelConfig(**{**SMALL, "batch_size": 16, "seq_len": 5, "learning_starts": 0,
                              "train_freq": 10**9, **kw})
    return WorldModelAgent(cfg, AgentSetting(env.single_observation_space, env.single_action_space,
                                             num_envs=env.num_envs, total_steps=1, seed=seed))


@pytest.fixture(scope="module")
def breakout():
    """A fixed dataset: 1,500 random-policy transitions of MinAtar Breakout (2 envs)."""
    env = envs_mod.make_vector(envs_mod.resolve("MinAtar/Breakout"), 2, 0)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    steps = []
    for _ in range(750):
        a = rng.integers(0, env.single_action_space.n, 2)
        nxt, r, te, tr, info = env.step(a)
        steps.append((obs, a, r, te, tr, real_next_obs(nxt, info, te | tr)))
        obs = nxt
    yield env, steps
    env.close()


def fill(agent: WorldModelAgent, steps: list) -> None:
    for s in steps:
        agent.observe(*s)


@pytest.fixture(scope="module")
def trained(breakout):
    """A VAE + GRU model after 200 updates on the fixed dataset, with its first and last metrics."""
    env, steps = breakout
    torch.manual_seed(0)
    agent = make_agent(env)
    fill(agent, steps)
    first = agent.train_step()
    for _ in range(198):
        agent.train_step()
    last = agent.train_step()
    return agent, first, last


def test_registries_and_unknown_names():
    assert {"ae", "vae"} <= set(CODECS.names())
    assert "gru" in DYNAMICS.names()
    assert "worldmodel" in AGENTS
    with pytest.raises(RlmError, match="Valid: ae, grid-ae, vae, vqvae"):
        make_codec("vqgan", (4, 10, 10))
    with pytest.raises(RlmError, match="Valid: conv-gru, gru, mdn-gru"):
        make_dynamics("lstm", 8, 3)
    with pytest.raises(RlmError, match="unknown world-model codec 'pixelcnn'"):
        WorldModel((4, 10, 10), 3, codec="pixelcnn")


@pytest.mark.parametrize("name", ["ae", "vae"])
def test_codec_and_dynamics_shapes(name):
    codec = make_codec(name, (4, 10, 10), latent_dim=12, channels=8)
    x = torch.randint(0, 2, (5, 4, 10, 10), dtype=torch.uint8)
    z, mu, kl = codec.encode(x)
    assert z.shape == mu.shape == (5, 12) and kl.shape == (5,)
    assert (kl == 0).all() if name == "ae" else (kl >= 0).all()
    assert codec.decode(z).shape == (5, 4, 10, 10)
    dyn = make_dynamics("gru", 12, 3, hidden=20)
    h = dyn.initial(z)
    h2, z2, r, t = dyn(z, torch.tensor([0, 1, 2, 0, 1]), h)
    assert h2.shape == (5, 20) and z2.shape == (5, 12) and r.shape == t.shape == (5,)


@pytest.mark.parametrize("codec", ["ae", "vae"])
def test_losses_drop_on_fixed_breakout_data(breakout, codec, trained):
    if codec == "vae":
        _, first, last = trained
    else:
        env, steps = breakout
        torch.manual_seed(1)
        agent = make_agent(env, codec="ae")
        fill(agent, steps)
        first = agent.train_step()
        for _ in range(148):
            agent.train_step()
        last = agent.train_step()
    assert last["recon_loss"] < 0.25 * first["recon_loss"], (first, last)
    assert last["pred_loss"] < 0.25 * first["pred_loss"], (first, last)
    assert last["term_loss"] < 0.8 * first["term_loss"], (first, last)
    assert last["reward_loss"] < 0.2, (first, last)
    if codec == "vae":
        assert last["kl"] > 0


def test_imagine_shapes_and_one_step_beats_random(trained):
    agent, _, _ = trained
    model = agent.model
    b = agent.sample(64, 5)
    out = model.imagine(b["frames"][0], b["actions"])
    assert out["frames"].shape == (5, 64, 4, 10, 10)
    assert out["rewards"].shape == out["terminals"].shape == (5, 64)
    assert ((out["frames"] >= 0) & (out["frames"] <= 1)).all()
    binary = model.imagine(b["frames"][0], b["actions"], binary=True)
    assert binary["frames"].dtype == torch.uint8 and binary["terminals"].dtype == torch.bool
    real = torch.as_tensor(b["frames"][1])
    acc = (binary["frames"][0] == real).float().mean().item()
    rand = (torch.randint(0, 2, real.shape, dtype=torch.uint8) == real).float().mean().item()
    assert acc > 0.95 and acc > rand + 0.3, (acc, rand)
    # a policy instead of actions sees the imagined frames
    seen = []

    def policy(frames: np.ndarray) -> np.ndarray:
        seen.append(frames.shape)
        return np.zeros(len(frames), np.int64)

    out = model.imagine(b["frames"][0][:3], policy, horizon=4)
    assert out["frames"].shape == (4, 3, 4, 10, 10) and seen == [(3, 4, 10, 10)] * 4
    metrics = agent.evaluate_model(batch=64, horizon=5)
    assert {"kstep_acc_1", "copy_acc_1", "kstep_acc_5", "copy_acc_5", "reward_sign_acc"} <= set(metrics)
    # reward calibration: the real mean over the valid steps, the model's unrounded open-loop mean beside it
    b = agent.sample(64, 5)
    res = model.kstep_metrics(b)
    valid = b["mask"].astype(bool)
    assert res["reward_real_mean"] == pytest.approx(float(b["rewards"][valid].mean()), abs=1e-6)
    pred = model.imagine(b["frames"][0], b["actions"])["rewards"].numpy()
    assert res["reward_pred_mean"] == pytest.approx(float(pred[valid].mean()), abs=1e-5)


def test_as_env_step_reset_api(trained):
    agent, _, _ = trained
    starts = agent.sample(8, 1)["frames"][0]
    env = agent.model.as_env(starts, num_envs=3, horizon=4, seed=0)
    assert isinstance(env, gym.vector.VectorEnv) and env.num_envs == 3
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    obs, info = env.reset(seed=1)
    assert obs.shape == (3, 4, 10, 10) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    done_before = np.zeros(3, bool)
    for t in range(9):
        obs, r, te, tr, info = env.step(env.action_space.sample())
        assert obs.shape == (3, 4, 10, 10) and r.shape == te.shape == tr.shape == (3,)
        assert set(np.unique(obs)) <= {0, 1}
        assert not (te & tr).any()
        assert not (done_before & (te | tr)).any()  # the step after an end is a reset
        assert (r[done_before] == 0).all()
        done_before = te | tr
        if t == 3:
            assert (te | tr | done_before).all()  # horizon 4 truncates
    with pytest.raises(RlmError):
        agent.model.as_env(np.zeros((2, 3, 10, 10), np.uint8))


def test_checkpoint_round_trip(breakout, trained):
    agent, _, _ = trained
    env, _ = breakout
    state = agent.state_dict(include_buffers=True)
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    loaded = torch.load(blob, weights_only=True)
    other = make_agent(env, seed=5)
    other.load_state_dict(loaded)
    assert other.updates == agent.updates and len(other.replay) == len(agent.replay)
    x = agent.sample(4, 3)
    a = agent.model.imagine(x["frames"][0], x["actions"])
    b = other.model.imagine(x["frames"][0], x["actions"])
    for k in ("frames", "rewards", "terminals"):
        torch.testing.assert_close(a[k], b[k])
    with pytest.raises(RlmError, match="does not fit"):
        make_agent(env, latent_dim=7).load_state_dict(state)


def test_train_worldmodel_run_logs_kstep_and_dream_video(tmp_path, capsys):
    run = tmp_path / "run"
    summary = api.train(
        "worldmodel", "MinAtar/Breakout", run_dir=run, steps=600, seed=0, device="cpu", progress=False,
        overrides=[f"{k}={v}" for k, v in SMALL.items()] + [
            "codec=vae", "dynamics=gru", "context=1",  # the flat model (the preset is grid-ae + conv-gru)
            "learning_starts=100", "train_freq=4", "batch_size=8", "seq_len=4", "kstep_every=20",
            "kstep_batch=32", "kstep_horizon=5", "log_every=200", "eval_every=600", "eval_episodes=2",
            "checkpoint_every=600", "torch_threads=1"],
    )
    assert summary["steps"] == 600
    with (run / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    cols = set(rows[0])
    for c in ("recon_loss", "kl", "reward_loss", "term_loss", "kstep_acc_1", "copy_acc_1", "kstep_acc_5",
              "copy_acc_5", "reward_sign_acc", "eval_return_mean"):
        assert c in cols, c
    assert any(r["kstep_acc_1"] for r in rows)
    agent, cfg = api.load_agent(run, "latest")
    assert cfg.agent == "worldmodel" and agent.q_values(np.zeros((1, 4, 10, 10), np.uint8)) is None

    out = tmp_path / "dream.mp4"
    capsys.readouterr()
    assert main(["dream", str(run), "--horizon", "6", "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed
    frames = _read_ffmpeg(out)
    steps = int(printed.split("frames, ")[1].split(" ")[0])
    assert len(frames) == steps + 1 and 1 <= steps <= 6
    assert frames[0].ndim == 3 and frames[0].shape[2] == 3
    # default output folder
    from rlmorning.viz.dream import dream

    res = dream(run, horizon=3, seed=3)
    assert res["video"].parent == run / "videos" and res["video"].is_file()
    with pytest.raises(RlmError, match="for grey"):
        dream(run, horizon=3, upsample="srcnn")

    # plot --metric kstep_error: the last k-step check of the run, error against k beside copy-last-frame
    png = tmp_path / "kstep.png"
    assert main(["plot", str(run), "--metric", "kstep_error", "--out", str(png)]) == 0
    data = json.loads(png.with_suffix(".json").read_text())["groups"][0]
    last = [r for r in rows if r.get("kstep_err_1")][-1]
    assert data["k"] == [1, 2, 3, 4, 5] and data["at_step"] == [int(last["step"])]
    np.testing.assert_allclose(data["model_err_mean"], [float(last[f"kstep_err_{k}"]) for k in range(1, 6)])
    np.testing.assert_allclose(data["copy_err_mean"], [float(last[f"copy_err_{k}"]) for k in range(1, 6)])
    np.testing.assert_allclose(1 - float(last["kstep_acc_1"]), float(last["kstep_err_1"]), atol=1e-6)


def _read_ffmpeg(path: Path) -> list[np.ndarray]:
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = reader.__next__()
    w, h = meta["size"]
    return [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def test_ale_64x64_world_model_and_srcnn_dream(tmp_path, capsys):
    """ALE Pong at 64x64 (env_kwargs frame_size): the strided codec, a short run, and a dream rendered at
    display size with a freshly fitted SRCNN (its held-out PSNR is reported next to bicubic's)."""
    run = tmp_path / "pong"
    api.train("worldmodel", "Pong", run_dir=run, steps=120, seed=0, device="cpu", progress=False,
              overrides=["env_kwargs={frame_size: 64}", "latent_dim=16", "codec_channels=4", "hidden=32",
                         "learning_starts=40", "train_freq=8", "batch_size=4", "seq_len=3", "kstep_every=0",
                         "eval_every=0", "checkpoint_every=120", "log_every=120", "torch_threads=1"])
    agent, _ = api.load_agent(run, "latest")
    assert agent.model.obs_shape == (4, 64, 64) and agent.model.codec.strided and agent.updates >= 5
    out = tmp_path / "dream.mp4"
    capsys.readouterr()
    assert main(["dream", str(run), "--horizon", "4", "--out", str(out), "--upsample", "srcnn",
                 "--display-size", "128", "--srcnn-steps", "30"]) == 0
    printed = capsys.readouterr().out
    assert "SRCNN on held-out screens: PSNR" in printed
    frames = _read_ffmpeg(out)
    assert len(frames) == 5 and frames[0].shape[1] > 128  # label strip + a 128 px frame with borders
    from rlmorning.viz.dream import dream

    with pytest.raises(RlmError, match="unknown upsampler 'bogus'. Valid: nearest, bicubic, srcnn"):
        dream(run, upsample="bogus")


VARIANTS = {
    "vqvae+pixelcnn": {"codec": "vqvae", "prior": "pixelcnn", "prior_kwargs": {"channels": 16, "layers": 2}},
    "mdn-gru": {"dynamics": "mdn-gru", "dynamics_kwargs": {"mixtures": 3}},
    "adversarial": {"adversarial": 0.1},
    "grid-ae+conv-gru": {"codec": "grid-ae", "dynamics": "conv-gru", "codec_kwargs": {"latent_channels": 4},
                         "dynamics_kwargs": {"channels": 8}},
    "vqvae+conv-gru": {"codec": "vqvae", "dynamics": "conv-gru", "dynamics_kwargs": {"channels": 8}},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_world_model_variants_train_and_round_trip(breakout, variant):
    """vqvae (+ PixelCNN prior), mdn-gru and the PatchGAN term plug into the same WorldModel: losses fall,
    their own metrics are logged, checkpoints round-trip, and the prior samples start frames."""
    env, steps = breakout
    torch.manual_seed(0)
    agent = make_agent(env, batch_size=8, seq_len=4, **VARIANTS[variant])
    fill(agent, steps[:400])
    first = agent.train_step()
    for _ in range(58):
        agent.train_step()
    last = agent.train_step()
    assert last["recon_loss"] < 0.5 * first["recon_loss"] and last["pred_loss"] < 0.5 * first["pred_loss"]
    extra = {"vqvae+pixelcnn": ("vq_loss", "prior_nll"), "mdn-gru": ("latent_loss",),
             "adversarial": ("gan_g_loss", "gan_d_loss"), "grid-ae+conv-gru": ("latent_loss",),
             "vqvae+conv-gru": ("vq_loss", "latent_loss")}[variant]
    assert set(extra) <= set(last)
    if variant == "vqvae+pixelcnn":
        assert last["prior_nll"] < first["prior_nll"]
        frames = agent.model.sample_frames(5, generator=torch.Generator().manual_seed(1))
        again = agent.model.sample_frames(5, generator=torch.Generator().manual_seed(1))
        assert frames.shape == (5, 4, 10, 10) and frames.dtype == torch.uint8 and torch.equal(frames, again)
        assert agent.model.frame_log_prob(frames).shape == (5,)
        imagined = agent.model.as_env(None, num_envs=2, horizon=3, seed=0)
        obs, _ = imagined.reset()
        assert obs.shape == (2, 4, 10, 10) and imagined.step(np.zeros(2, np.int64))[0].shape == (2, 4, 10, 10)
    if variant == "mdn-gru":  # latent_loss is the mixture NLL (a log-density: it may go below 0), not a square
        h = agent.model.dyn.initial(torch.zeros(2, agent.model.dyn.latent_dim))
        target = torch.full((2, agent.model.dyn.latent_dim), 50.0)
        assert agent.model.dyn.latent_loss(h, target).shape == (2,)
    state = agent.state_dict(include_buffers=False)
    blob = io.BytesIO()
    torch.save(state, blob)
    blob.seek(0)
    other = make_agent(env, seed=4, batch_size=8, seq_len=4, **VARIANTS[variant])
    other.load_state_dict(torch.load(blob, weights_only=True))
    x = agent.sample(4, 3)
    torch.manual_seed(7)
    a = agent.model.imagine(x["frames"][0], x["actions"])
    torch.manual_seed(7)
    b = other.model.imagine(x["frames"][0], x["actions"])
    torch.testing.assert_close(a["frames"], b["frames"])


def test_world_model_part_errors():
    with pytest.raises(RlmError, match="prior 'pixelcnn' models discrete codes: use codec 'vqvae'"):
        WorldModel((4, 10, 10), 3, codec="vae", prior="pixelcnn")
    with pytest.raises(RlmError, match="unknown world-model prior 'glow'. Valid: none, pixelcnn"):
        WorldModel((4, 10, 10), 3, prior="glow")
    model = WorldModel((4, 10, 10), 3, latent_dim=8, codec_channels=4, hidden=16)
    with pytest.raises(RlmError, match="no prior"):
        model.sample_frames(2)
    with pytest.raises(RlmError, match="give start frames"):
        model.as_env(None, num_envs=2)


def test_frame_skip_starts_as_the_plain_model_and_learns(breakout):
    """frame_skip adds a zero-initialised conv of the previous frame to predicted logits: at init the
    predictions equal the plain model's; after training the skip is used, and imagination carries the
    previous frame in its state (as_env and imagine agree)."""
    env, steps = breakout
    torch.manual_seed(3)
    plain = make_agent(env, batch_size=8, seq_len=4)
    torch.manual_seed(3)
    skip = make_agent(env, batch_size=8, seq_len=4, frame_skip=True)
    fill(plain, steps[:300])
    fill(skip, steps[:300])
    x = plain.sample(6, 3)
    a, b = plain.model.imagine(x["frames"][0], x["actions"]), skip.model.imagine(x["frames"][0], x["actions"])
    torch.testing.assert_close(a["frames"], b["frames"])
    first = skip.train_step()
    for _ in range(40):
        last = skip.train_step()
    assert skip.model.frame_skip.weight.abs().sum() > 0 and last["pred_loss"] < first["pred_loss"]
    out = skip.model.imagine(x["frames"][0][:2], x["actions"][:, :2], binary=True)
    imagined = skip.model.as_env(x["frames"][0][:2], num_envs=2, horizon=10)
    imagined.reset()
    for t in range(3):
        obs, *_ = imagined.step(np.asarray(x["actions"][t, :2]))
        np.testing.assert_array_equal(obs, out["frames"][t].numpy())


def test_context_run_logs_kstep_after_the_observed_frames_and_dream_marks_them(tmp_path, monkeypatch):
    """A spatial model with context=3: k-step metrics score the horizon after 3 observed frames, and the
    dream video marks frames 0-2 as observed, the rest as imagined."""
    run = tmp_path / "run"
    overrides = ["codec=grid-ae", "dynamics=conv-gru", "codec_channels=8", "hidden=16", "context=3",
                 "codec_kwargs={latent_channels: 4}", "dynamics_kwargs={channels: 8}", "learning_starts=100",
                 "train_freq=4", "batch_size=8", "seq_len=5", "kstep_every=10", "kstep_batch=16",
                 "kstep_horizon=4", "log_every=300", "eval_every=0", "checkpoint_every=300", "torch_threads=1"]
    api.train("worldmodel", "MinAtar/Breakout", run_dir=run, steps=300, seed=0, device="cpu", progress=False,
              overrides=overrides)
    with (run / "metrics.csv").open() as fh:
        last = [r for r in csv.DictReader(fh) if r.get("kstep_err_1")][-1]
    assert last["kstep_err_4"] and "kstep_err_5" not in last  # the horizon after the context, not the window
    import rlmorning.viz.dream as dream_mod

    flags: list[bool] = []
    real_compose = dream_mod.compose

    def recording(real, pred, t, observed, **kw):
        flags.append(observed)
        return real_compose(real, pred, t, observed, **kw)

    monkeypatch.setattr(dream_mod, "compose", recording)
    res = dream_mod.dream(run, horizon=6, seed=1, out=tmp_path / "d.mp4")
    assert res["steps"] >= 4 and flags[:3] == [True, True, True] and not any(flags[3:])
    with pytest.raises(RlmError, match="'context' \\(9\\) must be <= seq_len"):
        api.train("worldmodel", "MinAtar/Breakout", run_dir=tmp_path / "bad", steps=10, seed=0, device="cpu",
                  progress=False, overrides=["context=9", "seq_len=8"])


def test_reward_nonzero_weight_scales_the_error_on_rewarded_steps_only(breakout):
    """reward_nonzero_weight multiplies the reward error where the real reward is non-zero: a batch of only
    rewarded steps gets exactly w times the plain loss, a batch without rewards the plain loss."""
    env, steps = breakout
    torch.manual_seed(5)
    plain = make_agent(env)
    torch.manual_seed(5)
    weighted = make_agent(env, reward_nonzero_weight=4.0)
    fill(plain, steps[:200])
    batch = plain.sample(8, 4)
    for value, factor in ((1.0, 4.0), (0.0, 1.0)):
        b = {**batch, "rewards": np.full_like(np.asarray(batch["rewards"]), value)}
        torch.manual_seed(1)  # the VAE samples its latents
        _, m_plain = plain.model.losses(b)
        torch.manual_seed(1)
        _, m_weighted = weighted.model.losses(b)
        assert m_plain["reward_loss"] > 0
        assert m_weighted["reward_loss"] == pytest.approx(factor * m_plain["reward_loss"], rel=1e-5)
        assert m_weighted["pred_loss"] == pytest.approx(m_plain["pred_loss"], rel=1e-6)
    with pytest.raises(RlmError, match="'reward_nonzero_weight' must be > 0"):
        WorldModel((4, 10, 10), 3, reward_nonzero_weight=0.0)
