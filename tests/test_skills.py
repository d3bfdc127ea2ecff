"""Skill discovery (agents/skills.py): the intrinsic reward, per-episode skill draws, resume, learning on a toy
env where two skills are trivially separable, config errors, fine-tuning, plot-skills and record --skill."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.skills import SkillsAgent, SkillsConfig
from rlmorning.agents.skills_nets import Discriminator, Trunk, intrinsic_reward, log_prior
from rlmorning.cli import main
from rlmorning.errors import RlmError
from rlmorning.run import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TOY = "rlmorning-test/SkillsToy-v0"


class SkillsToy(gym.Env):
    """Two actions, two places: the observation is the one-hot of the last action (zeros at the start), so
    the action alone decides which state is visited. Reward 1 for action 1. Episodes end (truncated) after
    ``length`` steps. Its state can be checkpointed, so ``--resume`` continues the open episodes."""

    # render() returns None: the recorder draws the observation
    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, length: int = 5, render_mode: str | None = None) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length = length
        self.t, self.last = 0, -1

    def _obs(self) -> np.ndarray:
        obs = np.zeros(2, np.float32)
        if self.last >= 0:
            obs[self.last] = 1.0
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t, self.last = 0, -1
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        self.last = int(action)
        return self._obs(), float(action == 1), False, self.t >= self.length, {}

    def render(self) -> None:
        return None

    def checkpoint_state(self) -> dict:
        return {"t": self.t, "last": self.last}

    def restore_checkpoint_state(self, data: dict) -> None:
        self.t, self.last = int(data["t"]), int(data["last"])


if TOY not in gym.registry:
    gym.register(id=TOY, entry_point=SkillsToy)

TOY_SETTINGS = ["num_skills=2", "encoder_kwargs.hidden=[32]", "head_hidden=32", "batch_size=32", "lr=0.003",
                "disc_lr=0.01", "train_freq=1", "learning_starts=100", "target_update_period=50", "eps_start=1.0",
                "eps_end=0.0", "eps_fraction=0.2", "gamma=0.9", "buffer_size=300", "eval_every=0",
                "checkpoint_every=0", "log_every=100", "heldout_states=0", "torch_threads=1", "progress=false"]


def toy_agent(num_envs: int = 3, seed: int = 0, **overrides: object) -> SkillsAgent:
    values: dict = dict(num_skills=4, encoder="mlp", encoder_kwargs={"hidden": [8]}, head_hidden=8, buffer_size=200,
                        batch_size=8, learning_starts=10)
    values.update(overrides)
    torch.manual_seed(seed)
    return SkillsAgent(SkillsConfig(**values), AgentSetting(SkillsToy().observation_space, gym.spaces.Discrete(2),
                                                            num_envs=num_envs, total_steps=1000, seed=seed))


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-skill run on the toy env, trained for 600 steps."""
    path = tmp_path_factory.mktemp("skills") / "toy"
    api.train("skills", TOY, config="skills_classic", run_dir=path, steps=600, seed=0, device="cpu",
              overrides=TOY_SETTINGS)
    return path


def metric_column(run: Path, name: str) -> list[float]:
    import csv

    with open(run / "metrics.csv") as fh:
        return [float(r[name]) for r in csv.DictReader(fh) if r.get(name)]


# ------------------------------------------------------------------------------------------- the reward
def test_intrinsic_reward_is_log_q_minus_log_p_on_a_hand_made_discriminator() -> None:
    space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    trunk = Trunk(space, "mlp", {"hidden": []}, normalize=False)  # identity features: out_dim 2
    disc = Discriminator(trunk, "categorical", 3, 1)
    with torch.no_grad():  # logits = [x0, x1, 0]
        disc.head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        disc.head.bias.zero_()
    obs = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    codes = torch.tensor([[0.0], [2.0]])
    r = intrinsic_reward(disc, obs, codes)
    expected = [2.0 - math.log(math.exp(2) + 1 + 1) + math.log(3), 0.0 - math.log(1 + math.e + 1) + math.log(3)]
    assert torch.allclose(r, torch.tensor(expected), atol=1e-6)

    g = Discriminator(Trunk(space, "mlp", {"hidden": []}, normalize=False), "gaussian", 4, 1)
    with torch.no_grad():  # mean = x0, log_std = x1
        g.head.weight.copy_(torch.eye(2))
        g.head.bias.zero_()
    obs = torch.tensor([[0.5, math.log(2.0)]])
    z = torch.tensor([[1.5]])
    log_q = -0.5 * ((1.5 - 0.5) / 2.0) ** 2 - math.log(2.0) - 0.5 * math.log(2 * math.pi)
    log_p = -0.5 * 1.5**2 - 0.5 * math.log(2 * math.pi)
    assert torch.allclose(intrinsic_reward(g, obs, z), torch.tensor([log_q - log_p]), atol=1e-6)
    assert torch.allclose(log_prior(z, "gaussian", 4), torch.tensor([log_p]), atol=1e-6)


def test_update_relabels_rewards_with_the_current_discriminator() -> None:
    agent = toy_agent(num_envs=1, num_skills=2, batch_size=16, learning_starts=16, train_freq=1)
    obs = np.zeros((1, 2), np.float32)
    state = agent.initial_state(1)
    for _ in range(40):
        actions, state = agent.act(obs, state, explore=True)
        nxt = np.eye(2, dtype=np.float32)[actions]
        agent.observe(obs, actions, np.zeros(1), np.array([False]), np.array([False]), nxt)
        obs = nxt
    with torch.no_grad():  # a discriminator that is sure of skill 0 everywhere: reward log 1 - log 1/2 for z = 0
        agent.discriminator.head.weight.zero_()
        agent.discriminator.head.bias.copy_(torch.tensor([30.0, -30.0]))
    b = agent.replay.sample(16)
    r = agent.intrinsic_rewards(b["next_obs"], b["actions"][:, 1:])
    expected = np.where(b["actions"][:, 1] == 0, math.log(2), -60.0 + math.log(2))
    assert np.allclose(r, expected, atol=1e-4)
    metrics = agent.update(40)
    assert {"intrinsic_reward", "disc_accuracy", "disc_loss", "loss", "extrinsic_reward"} <= set(metrics)


# ------------------------------------------------------------------------------------- drawing skills
def test_skills_are_drawn_per_episode_from_the_seed() -> None:
    a, b, c = toy_agent(seed=5), toy_agent(seed=5), toy_agent(seed=6)
    obs = np.zeros((3, 2), np.float32)
    draws = {}
    for name, agent in (("a", a), ("b", b), ("c", c)):
        state = agent.initial_state(3)
        assert np.isnan(state).all()
        seq = []
        for t in range(12):
            _, state = agent.act(obs, state, explore=True)
            seq.append(state[:, 0].copy())
            state = agent.reset_state(state, np.array([t % 3 == 2, False, t % 4 == 3]))  # episode ends
        draws[name] = np.stack(seq)
    s = draws["a"]
    assert np.array_equal(s, draws["b"])  # same seed: same skills
    assert not np.array_equal(s, draws["c"])
    assert set(np.unique(s)) <= {0.0, 1.0, 2.0, 3.0}
    assert (s[:, 1] == s[0, 1]).all()  # env 1's episode never ended: one skill throughout
    for t in range(1, 12):  # env 0 may change skill only at the start of an episode
        if t % 3 != 0:
            assert s[t, 0] == s[t - 1, 0]
    assert len(set(s[::3, 0])) > 1


def test_greedy_acting_covers_skills_in_turn_without_touching_the_training_rng() -> None:
    agent = toy_agent(num_envs=1)
    before = agent.skill_rng.bit_generator.state
    _, state = agent.act(np.zeros((6, 2), np.float32), agent.initial_state(6), explore=False)
    assert state[:, 0].tolist() == [0, 1, 2, 3, 0, 1]
    assert agent.skill_rng.bit_generator.state == before
    agent.set_skill(2)
    _, state = agent.act(np.zeros((2, 2), np.float32), agent.initial_state(2), explore=True)
    assert state[:, 0].tolist() == [2, 2]
    with pytest.raises(RlmError, match=r"skill 4 is out of range: this run has skills 0\.\.3"):
        agent.set_skill(4)


def test_replay_stores_each_transition_with_its_skill() -> None:
    agent = toy_agent(num_envs=2)
    obs = np.zeros((2, 2), np.float32)
    state = agent.initial_state(2)
    for _ in range(20):
        actions, state = agent.act(obs, state, explore=True)
        agent.observe(obs, actions, np.zeros(2), np.zeros(2, bool), np.zeros(2, bool), obs)
    stored = agent.replay.actions  # [env, slot, 1 + w]
    assert np.array_equal(stored[0, :20, 1], np.full(20, state[0, 0]))
    assert np.array_equal(stored[1, :20, 1], np.full(20, state[1, 0]))


# ------------------------------------------------------------------------------------------- learning
def test_two_separable_skills_reach_near_perfect_discriminator_accuracy(toy_run: Path) -> None:
    accuracy = metric_column(toy_run, "disc_accuracy")
    assert accuracy[0] < 0.9 and min(accuracy[-2:]) >= 0.97, accuracy
    mi = metric_column(toy_run, "intrinsic_reward")
    assert mi[-1] > 0.9 * math.log(2)  # the bound approaches I(S; Z) = log 2
    agent, _ = api.load_policy(toy_run, "latest")
    actions, _ = agent.act(np.zeros((2, 2), np.float32), agent.initial_state(2), explore=False)
    assert sorted(actions.tolist()) == [0, 1]  # skill 0 and skill 1 go to different places


def test_gaussian_codes_train_and_report_the_bound() -> None:
    agent = toy_agent(num_envs=1, code="gaussian", code_dim=2, batch_size=8, learning_starts=8, train_freq=1)
    obs = np.zeros((1, 2), np.float32)
    state = agent.initial_state(1)
    for t in range(30):
        actions, state = agent.act(obs, state, explore=True)
        agent.observe(obs, actions, np.zeros(1), np.array([False]), np.array([t % 5 == 4]), obs)
        state = agent.reset_state(state, np.array([t % 5 == 4]))
    assert state.shape == (1, 2)
    metrics = agent.update(30)
    assert math.isfinite(metrics["intrinsic_reward"]) and "disc_accuracy" not in metrics


def test_pixel_observations_use_the_encoder_registry_and_project_by_pca() -> None:
    from rlmorning.viz.skills import project

    space = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    agent = SkillsAgent(SkillsConfig(num_skills=3, encoder="minatar", head_hidden=16, buffer_size=100, batch_size=4,
                                     learning_starts=4, train_freq=1),
                        AgentSetting(space, gym.spaces.Discrete(3), total_steps=100))
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 2, (1, 4, 10, 10), dtype=np.uint8)
    state = agent.initial_state(1)
    for _ in range(10):
        actions, state = agent.act(obs, state, explore=True)
        nxt = rng.integers(0, 2, (1, 4, 10, 10), dtype=np.uint8)
        agent.observe(obs, actions, np.zeros(1), np.array([False]), np.array([False]), nxt)
        obs = nxt
    assert "disc_accuracy" in agent.update(10)
    pts, axes, how = project(agent, "MinAtar/Breakout", rng.integers(0, 2, (20, 4, 10, 10), dtype=np.uint8), "auto")
    assert pts.shape == (20, 2) and axes[0].startswith("PC1") and "discriminator" in how


# --------------------------------------------------------------------------------------------- resume
def test_resume_keeps_the_discriminator_and_the_current_skills(tmp_path: Path) -> None:
    # epsilon decays over a fixed number of steps: eps_fraction would scale it with each run's total steps
    settings = [s for s in TOY_SETTINGS if not s.startswith("checkpoint_every")] + ["checkpoint_every=100",
                                                                                     "eps_decay_steps=100"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    common = dict(config="skills_classic", steps=202, seed=3, device="cpu", overrides=settings)
    api.train("skills", TOY, run_dir=straight, **common)
    common["steps"] = 103  # stops mid-episode (episodes are 5 steps): skills in flight must survive
    api.train("skills", TOY, run_dir=split, **common)
    mid = load_checkpoint(split / "checkpoints" / "latest.pt")
    from rlmorning.envs.state import unpack_tree

    skills_mid = unpack_tree(mid["agent_state"])
    assert skills_mid.shape == (1, 1) and not np.isnan(skills_mid).any()
    api.resume(split, steps=202, progress=False)
    a = load_checkpoint(straight / "checkpoints" / "latest.pt")
    b = load_checkpoint(split / "checkpoints" / "latest.pt")
    for key in ("discriminator", "online"):
        for name, tensor in a["agent"][key].items():
            assert torch.equal(tensor, b["agent"][key][name]), (key, name)
    skills_end = unpack_tree(b["agent_state"])  # the episode in flight at the end has its skill
    assert not np.isnan(skills_end).any() and np.array_equal(unpack_tree(a["agent_state"]), skills_end)
    assert a["agent"]["skill_rng"] == b["agent"]["skill_rng"]


# ------------------------------------------------------------------------------------- config errors
@pytest.mark.parametrize(("item", "message"), [
    ("num_skils=4", "unknown config key 'num_skils'"),
    ("code=discrete", "config key 'code' must be one of categorical, gaussian, got 'discrete'"),
    ("num_skills=1", "config key 'num_skills' must be >= 2, got 1"),
    ("num_skills=many", "config key 'num_skills' expects an integer"),
    ("disc_lr=0", "config key 'disc_lr' must be > 0, got 0.0"),
])
def test_config_errors_are_one_line(item: str, message: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(RlmError) as err:
        api.resolve_run_config("skills", "MountainCar-v0", overrides=[item])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert main(["train", "skills", "--env", "MountainCar-v0", "--set", item]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


# ----------------------------------------------------------------------------------------- fine-tuning
def test_init_from_fine_tunes_the_skill_with_the_best_return(toy_run: Path, tmp_path: Path) -> None:
    policy, _ = api.load_policy(toy_run, "latest")
    greedy, _ = policy.act(np.zeros((2, 2), np.float32), policy.initial_state(2), explore=False)
    best = int(np.flatnonzero(greedy == 1)[0])  # the skill that takes the rewarded action
    run = tmp_path / "ft"
    settings = TOY_SETTINGS + [f"init_from={toy_run}", "init_episodes=1", "eps_start=0.0", "eps_end=0.0"]
    api.train("skills", TOY, config="skills_classic", run_dir=run, steps=200, seed=0, device="cpu", overrides=settings)
    assert metric_column(run, "init_skill") == [best]
    assert metric_column(run, "init_skill_return") == [5.0]
    state = load_checkpoint(run / "checkpoints" / "latest.pt")["agent"]
    assert state["fixed_skill"] == best and state["init_returns"][best] == 5.0
    assert not metric_column(run, "disc_accuracy")  # fine-tuning learns from the env's reward only
    agent, _ = api.load_policy(run, "latest")
    assert agent.act(np.zeros((1, 2), np.float32), agent.initial_state(1), explore=False)[0].tolist() == [1]

    wrong = TOY_SETTINGS[1:] + ["num_skills=3", f"init_from={toy_run}"]
    with pytest.raises(RlmError, match="was trained with num_skills=2; set the same values"):
        api.train("skills", TOY, config="skills_classic", run_dir=tmp_path / "bad", steps=50, seed=0,
                  device="cpu", overrides=wrong)
    assert not (tmp_path / "bad").exists()  # refused before any folder is made: the corrected command just works
    with pytest.raises(RlmError, match="has no checkpoints/latest.pt"):
        no_ckpt = tmp_path / "no-ckpt"
        no_ckpt.mkdir()
        (no_ckpt / "config.yaml").write_text((toy_run / "config.yaml").read_text())
        api.train("skills", TOY, config="skills_classic", run_dir=tmp_path / "bad2", steps=50, seed=0,
                  device="cpu", overrides=TOY_SETTINGS + [f"init_from={no_ckpt}"])
    assert not (tmp_path / "bad2").exists()


# -------------------------------------------------------------------------------- plot-skills, record
def test_plot_skills_writes_a_png(toy_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "skills.png"
    assert main(["plot-skills", str(toy_run), "--out", str(out), "--episodes", "2"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["num_skills"] == 2 and data["axes"] == ["obs[0]", "obs[1]"]
    assert data["discriminator_accuracy"] >= 0.8  # every state but the start states is told apart
    assert sorted(np.mean(s["returns"]) for s in data["skills"]) == [0.0, 5.0]
    assert data["coverage_distinctness"] > data["coverage_distinctness_shuffled"]
    printed = capsys.readouterr().out
    assert "chance 0.500" in printed and "coverage distinctness" in printed

    other = tmp_path / "dqnrun"
    other.mkdir()
    (other / "config.yaml").write_text("agent: dqn\nenv: CartPole-v1\n")
    assert main(["plot-skills", str(other)]) == 2
    assert capsys.readouterr().err.strip() == f"rlmorning: error: '{other}' is not a skills run (train one with " \
                                              "`rlmorning train skills`)"


def test_coverage_distinctness_is_zero_for_shared_states_and_one_for_disjoint_ones() -> None:
    from rlmorning.viz.skills import coverage_distinctness, shuffled_distinctness

    rng = np.random.default_rng(0)
    left, right = rng.uniform(0, 1, (200, 2)), rng.uniform(5, 6, (200, 2))
    labels = np.repeat([0, 1], 200)
    assert coverage_distinctness(np.concatenate([left, right]), labels, 2) == 1.0
    same = np.concatenate([left, left])
    assert coverage_distinctness(same, labels, 2) == 0.0
    # shuffled skills share their states: the baseline stays far below the disjoint skills' 1.0
    assert shuffled_distinctness(np.concatenate([left, right]), labels, 2, seed=0) < 0.5
    assert coverage_distinctness(left, np.zeros(200, int), 3) == 0.0  # skills that visited nothing are left out


def test_mean_frames_colour_object_channels_and_scale_each_to_its_peak() -> None:
    from rlmorning.viz.skills import mean_frames

    obs = np.zeros((2, 4, 2, 3, 3), np.uint8)  # 2 skills, 4 frames each, channels: paddle, bricks
    obs[0, :, 0, 2, 0] = 1  # skill 0 keeps the paddle left ...
    obs[1, :2, 0, 2, 2] = 1  # ... skill 1 right, half of the time
    obs[:, :, 1, 0, :] = 1  # bricks everywhere in every frame
    frames = mean_frames(list(obs))
    assert len(frames) == 2 and frames[0].shape == (3, 3, 3)
    assert frames[0][2, 0].sum() > 0 and frames[0][2, 2].sum() == 0
    assert frames[1][2, 2].sum() > 0 and frames[1][2, 0].sum() == 0
    np.testing.assert_allclose(frames[1][2, 2] * 2, frames[0][2, 0])  # scaled by the paddle's peak mean
    np.testing.assert_allclose(frames[0][0], frames[1][0])  # the shared bricks look the same
    grey = mean_frames([np.full((2, 4, 3, 3), 200, np.uint8)])  # Atari-like frames: the newest channel in grey
    np.testing.assert_allclose(grey[0], 1.0)


def test_record_one_skill(toy_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["record", str(toy_run), "--skill", "1", "--episodes", "1", "--checkpoint", "latest"]) == 0
    sidecars = list((toy_run / "videos" / "skill1").glob("*.json"))
    assert len(sidecars) == 1 and sidecars[0].with_suffix(".mp4").is_file()
    side = json.loads(sidecars[0].read_text())
    policy, _ = api.load_policy(toy_run, "latest")
    policy.set_skill(1)
    expected = int(policy.act(np.zeros((1, 2), np.float32), policy.initial_state(1), explore=False)[0][0])
    assert side["agent"] == "skills skill 1" and set(side["per_step"]["action"]) == {expected}
    capsys.readouterr()
    assert main(["record", str(toy_run), "--skill", "2", "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["rlmorning: error: skill 2 is out of range: this run has skills 0..1"]

    from types import SimpleNamespace

    from rlmorning.viz.skills import select_skill

    with pytest.raises(RlmError, match=r"^'runs/x' is not a skills run \(train one with `rlmorning train skills`\)$"):
        select_skill(SimpleNamespace(agent=object(), source="runs/x"), 0)
