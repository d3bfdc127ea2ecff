"""Env name resolution, the Atari/MinAtar/Gymnasium factories, frame stacking and env-state capture."""

from __future__ import annotations

import io
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from rlmorning import envs
from rlmorning.envs import EnvInfo, FrameStack, env_names, make_eval, make_vector, real_next_obs, resolve
from rlmorning.envs.state import capture_env_state, restore_env_state
from rlmorning.errors import RlmError

CARTPOLE_X, CARTPOLE_THETA = 2.4, 12 * 2 * np.pi / 360


# ------------------------------------------------------------------------------------------- resolve
@pytest.mark.parametrize(
    ("name", "family", "env_id", "stack"),
    [
        ("Breakout", "atari", "breakout", 4),
        ("ALE/Breakout-v5", "atari", "breakout", 4),
        ("BreakoutNoFrameskip-v4", "atari", "breakout", 4),
        ("breakout", "atari", "breakout", 4),
        ("SpaceInvaders", "atari", "space_invaders", 4),
        ("space_invaders", "atari", "space_invaders", 4),
        ("ALE/SpaceInvaders-v5", "atari", "space_invaders", 4),
        ("PongNoFrameskip-v4", "atari", "pong", 4),
        ("UpNDown", "atari", "up_n_down", 4),  # one of the Atari 100k games; its ROM id is not plain snake case
        ("ALE/UpNDown-v5", "atari", "up_n_down", 4),
        ("UpNDown-v4", "atari", "up_n_down", 4),
        ("TicTacToe3D", "atari", "tic_tac_toe_3d", 4),
        ("CartPole-v1", "gym", "CartPole-v1", 1),
        ("MinAtar/Breakout", "minatar", "Breakout", 1),
        ("MinAtar/Breakout-v1", "minatar", "Breakout", 1),
        ("MinAtar/SpaceInvaders", "minatar", "SpaceInvaders", 1),
    ],
)
def test_resolve(name, family, env_id, stack):
    info = resolve(name)
    assert info == EnvInfo(family, env_id, stack)


def test_display_names():
    assert resolve("space_invaders").display_name == "SpaceInvaders"
    assert resolve("ALE/Breakout-v5").display_name == "Breakout"
    assert resolve("MinAtar/Breakout-v1").display_name == "MinAtar/Breakout"
    assert resolve("CartPole-v1").display_name == "CartPole-v1"


@pytest.mark.parametrize(
    ("name", "shown", "suggestion"),
    [("Breakot", "Breakot", "Breakout"), ("CartPol-v1", "CartPol-v1", "CartPole-v1"),
     ("SpaceInvader", "SpaceInvader", "SpaceInvaders"), ("MinAtar/Brekout", "Brekout", "Breakout")],
)
def test_unknown_env_suggests_close_match_in_one_line(name, shown, suggestion):
    with pytest.raises(RlmError) as exc:
        resolve(name)
    msg = str(exc.value)
    assert msg.startswith("unknown ") and f"'{shown}'" in msg
    assert f"Did you mean '{suggestion}'?" in msg
    assert "\n" not in msg


def test_unknown_env_without_close_match():
    with pytest.raises(RlmError) as exc:
        resolve("zzqqxx")
    msg = str(exc.value)
    assert "unknown env 'zzqqxx'" in msg and "Did you mean" not in msg
    assert "rlmorning envs" in msg and "\n" not in msg


def test_every_listed_atari_game_resolves_to_its_rom() -> None:
    from rlmorning.envs.atari import atari_games, game_title

    for rom in atari_games():
        assert resolve(game_title(rom)) == EnvInfo("atari", rom, 4), rom
        assert resolve(f"ALE/{game_title(rom)}-v5").id == rom


@pytest.mark.parametrize("name", ["Breakout-ram-v4", "ALE/Breakout-ram-v5"])
def test_ram_observation_ids_are_refused_with_the_pixel_game_named(name: str) -> None:
    with pytest.raises(RlmError) as exc:
        resolve(name)
    msg = str(exc.value)
    assert "'Breakout'" in msg and "aux=hallucination|objects" in msg and "\n" not in msg


def test_env_names():
    names = env_names()
    assert set(names) == {"atari", "minatar", "rlmorning", "gymnasium"}
    assert "Breakout" in names["atari"] and "SpaceInvaders" in names["atari"]
    assert "MinAtar/Breakout" in names["minatar"]
    assert "CartPole-v1" in names["gymnasium"]
    assert "UpNDown" in names["atari"] and not any("UpNDown" in n for n in names["gymnasium"])
    assert all(n.startswith("rlmorning/") for n in names["rlmorning"])
    # every listed name resolves to its family
    fam = {"atari": "atari", "minatar": "minatar", "rlmorning": "gym", "gymnasium": "gym"}
    for family, listed in names.items():
        for name in listed[:3]:
            assert resolve(name).family == fam[family], name


# -------------------------------------------------------------------------------------- Atari: train
def lives_of(info) -> np.ndarray:
    return np.asarray(info["lives"])


def test_atari_vector_stack_and_life_loss():
    env = make_vector(resolve("Breakout"), 2, seed=0)
    try:
        assert env.single_observation_space.shape == (4, 84, 84)
        assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        obs, _ = env.reset(seed=1)
        assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:, :3].any(), "reset stack must be [0, 0, 0, frame]"
        assert obs[:, 3].any(axis=(1, 2)).all()
        rng = np.random.default_rng(0)
        prev, prev_lives = obs, np.array([5, 5])
        for _ in range(2000):
            obs, rewards, terminated, truncated, info = env.step(rng.integers(0, 4, 2))
            assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
            done = np.asarray(terminated) | np.asarray(truncated)
            if not done.any():
                np.testing.assert_array_equal(obs[:, :3], prev[:, 1:])
                assert not info.get("episode_end", np.zeros(2, bool)).any()
            else:
                final = info["final_obs"]
                assert final.shape == (2, 4, 84, 84) and final.dtype == np.uint8
                for i in np.flatnonzero(done):
                    # the finished row: the stack shifted by one with the last frame appended ...
                    np.testing.assert_array_equal(final[i, :3], prev[i, 1:])
                    # ... and the next obs starts a new (zero-padded) stack
                    assert not obs[i, :3].any() and obs[i, 3].any()
                for i in np.flatnonzero(~done):
                    np.testing.assert_array_equal(obs[i, :3], prev[i, 1:])
                    np.testing.assert_array_equal(final[i], obs[i])
                np.testing.assert_array_equal(real_next_obs(obs, info, done)[done], final[done])
                life_loss = np.asarray(terminated) & (prev_lives > 1)
                if life_loss.any():
                    # episodic life: a lost life (not the last one) ends the learner's episode only
                    assert not info["episode_end"][life_loss].any()
                    break
            prev, prev_lives = obs, lives_of(info)
        else:
            pytest.fail("no life was lost in 2000 random Breakout steps")
    finally:
        env.close()


def random_breakout_steps(rng_seed: int, reset_seed: int, steps: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Random actions in a one-env Breakout vector env (closed when the loop ends or is left): yields
    ``(obs, terminated, info, lives before the step)`` for each step."""
    env = make_vector(resolve("Breakout"), 1, seed=0)
    try:
        rng = np.random.default_rng(rng_seed)
        prev_lives = lives_of(env.reset(seed=reset_seed)[1])
        for _ in range(steps):
            obs, _, terminated, _, info = env.step(rng.integers(0, 4, 1))
            yield obs, terminated, info, prev_lives
            prev_lives = lives_of(info)
    finally:
        env.close()


def test_atari_final_frame_of_a_life_loss_is_the_real_screen():
    checked = 0
    for obs, terminated, info, prev_lives in random_breakout_steps(0, 1, 2000):
        if terminated[0] and prev_lives[0] > 1:
            # the game goes on after a lost life, so the screen returned now is the episode's last frame
            np.testing.assert_array_equal(info["final_obs"][0, 3], obs[0, 3])
            checked += 1
            if checked == 3:
                return
    pytest.fail("fewer than 3 lives lost in 2000 random Breakout steps")


def test_atari_episode_end_true_at_game_over():
    for _, terminated, info, prev_lives in random_breakout_steps(1, 0, 4000):
        game_over = bool(terminated[0]) and prev_lives[0] == 1
        if game_over:
            assert info["episode_end"][0], "episode_end must be True when the last life is lost"
            return
        if terminated[0]:
            assert not info["episode_end"][0]
    pytest.fail("no Breakout game ended in 4000 random steps")


def test_atari_truncation_is_an_episode_end():
    env = make_vector(resolve("Breakout"), 1, seed=0, max_frames=200)
    try:
        env.reset(seed=0)
        fire = 1
        for _ in range(200):
            obs, _, terminated, truncated, info = env.step(np.array([fire]))
            if truncated[0]:
                assert info["episode_end"][0]
                assert not obs[0, :3].any()
                return
            assert not info.get("episode_end", np.zeros(1, bool))[0] or terminated[0]
        pytest.fail("max_frames=200 did not truncate within 200 steps")
    finally:
        env.close()


def test_atari_training_rewards_are_clipped():
    rng = np.random.default_rng(0)
    seen = []
    for clip in (True, False):
        env = make_vector(resolve("SpaceInvaders"), 1, seed=0, clip_rewards=clip)
        try:
            rewards = np.concatenate([env.step(rng.integers(0, 6, 1))[1] for _ in range(400)])
        finally:
            env.close()
        seen.append(set(np.unique(rewards).tolist()))
    clipped, raw = seen
    assert clipped <= {-1, 0, 1} and 1 in clipped
    assert max(raw) > 1, "control: SpaceInvaders gives rewards of 5..30 without clipping"


# --------------------------------------------------------------------------------------- Atari: eval
def wrapper_chain(env: gym.Env) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    names.append(type(env).__name__)
    return names


def test_atari_eval_obs_and_unclipped_rewards():
    env = make_eval(resolve("SpaceInvaders"), seed=0)
    try:
        assert env.observation_space.shape == (4, 84, 84)
        chain = wrapper_chain(env)
        assert not any("Reward" in n or "Clip" in n for n in chain), chain
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        assert not obs[:3].any() and obs[3].any()
        prev = obs
        obs, *_ = env.step(0)
        assert not obs[:2].any()
        np.testing.assert_array_equal(obs[2], prev[3])
        rewards = []
        env.action_space.seed(0)  # a seeded random policy: the same episode every run
        for _ in range(600):
            obs, r, terminated, truncated, _ = env.step(env.action_space.sample())
            rewards.append(float(r))
            if terminated or truncated:
                break
        assert max(rewards) > 1, "evaluation rewards must be the true (unclipped) game score"
    finally:
        env.close()


def test_atari_eval_runs_until_game_over():
    env = make_eval(resolve("Breakout"), seed=0)
    try:
        env.action_space.seed(0)
        _, info = env.reset(seed=3)
        lives = [info["lives"]]
        assert lives[0] == 5
        for _ in range(5000):
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            if info["lives"] != lives[-1]:
                lives.append(info["lives"])
            if terminated or truncated:
                break
        assert terminated and not truncated
        assert lives == [5, 4, 3, 2, 1, 0], "a life loss must not end an evaluation episode"
    finally:
        env.close()


def test_atari_eval_view_equals_training_view_through_a_life_loss():
    """Same seed, same actions: the evaluation env shows the agent the stacks the training env showed it,
    including the zero-padded restart after a life loss (the game and its score go on). MsPacman: a game
    without FIRE, so no start-of-game FIRE (done by ALE in training, by a wrapper in evaluation) shifts the
    two games apart."""
    train = make_vector(resolve("MsPacman"), 1, seed=0, noop_max=0)
    evaluation = make_eval(resolve("MsPacman"), seed=0, noop_max=0)
    try:
        train_obs, _ = train.reset(seed=0)
        eval_obs, info = evaluation.reset(seed=0)
        np.testing.assert_array_equal(train_obs[0], eval_obs)
        rng = np.random.default_rng(0)
        lives, restarts = info["lives"], 0
        for _ in range(2000):
            action = int(rng.integers(evaluation.action_space.n))
            train_obs, *_ = train.step(np.array([action]))
            eval_obs, _, terminated, _, info = evaluation.step(action)
            np.testing.assert_array_equal(train_obs[0], eval_obs)
            if info["lives"] < lives:
                restarts += 1
                assert not eval_obs[:3].any() and eval_obs[3].any()  # a new stack: zeros, then this frame
                assert not terminated
            lives = info["lives"]
            if restarts == 2:
                break
        assert restarts == 2
    finally:
        train.close()
        evaluation.close()


def test_atari_eval_without_episodic_life_keeps_the_stack():
    env = make_eval(resolve("Breakout"), seed=0, noop_max=0, episodic_life=False)
    try:
        obs, info = env.reset(seed=0)
        lives = info["lives"]
        env.action_space.seed(0)
        for _ in range(2000):
            prev = obs
            obs, _, _, _, info = env.step(env.action_space.sample())
            if info["lives"] < lives:
                np.testing.assert_array_equal(obs[:3], prev[1:])
                return
        raise AssertionError("no life was lost")
    finally:
        env.close()


def test_atari_eval_max_frames_truncates():
    env = make_eval(resolve("Breakout"), seed=0, max_frames=400)
    try:
        env.reset(seed=0)
        steps = 0
        while steps < 200:
            _, _, terminated, truncated, _ = env.step(0)  # NOOP: the ball never launches again
            steps += 1
            if terminated or truncated:
                break
        assert truncated and steps <= 110  # 400 frames = 100 agent steps after the no-op start
    finally:
        env.close()


# ------------------------------------------------------------------------------------------ FrameStack
class Counter(gym.Env):
    """Frames filled with the step count since reset (1, 2, ...); terminates after ``length`` steps."""

    metadata: dict = {}

    def __init__(self, length: int, shape: tuple[int, ...]) -> None:
        self.length = length
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        return np.full(self.observation_space.shape, self.t + 1, np.uint8)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= self.length, False, {}


def expected_stack(frames: list[int], k: int) -> list[int]:
    return ([0] * k + frames)[-k:]


@pytest.mark.parametrize("shape", [(2, 3), (1, 2, 3)])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_frame_stack_zero_pads_after_reset(mode, shape):
    lengths, k = (2, 3), 3
    vec = gym.vector.SyncVectorEnv([lambda n=n: Counter(n, shape) for n in lengths], autoreset_mode=mode)
    env = FrameStack(vec, k)
    assert env.single_observation_space.shape == (k, 2, 3)
    obs, _ = env.reset(seed=0)
    episodes = [[1], [1]]
    for i in range(2):
        assert obs[i, :, 0, 0].tolist() == [0, 0, 1]
    pending = [False, False]
    for _ in range(10):
        obs, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.int64))
        assert obs.shape == (2, k, 2, 3) and obs.dtype == np.uint8
        done = np.asarray(terminated) | np.asarray(truncated)
        for i in range(2):
            if mode == AutoresetMode.NEXT_STEP and pending[i]:
                episodes[i] = [1]  # this step was the reset
            else:
                episodes[i].append(episodes[i][-1] + 1)
            if mode == AutoresetMode.SAME_STEP and done[i]:
                assert info["final_obs"][i, :, 0, 0].tolist() == expected_stack(episodes[i], k)
                episodes[i] = [1]
            assert obs[i, :, 0, 0].tolist() == expected_stack(episodes[i], k), (i, episodes[i])
            # each frame is constant: no mixing of rows
            assert (obs[i] == obs[i, :, :1, :1]).all()
            pending[i] = bool(done[i])
        if mode == AutoresetMode.SAME_STEP and done.any():
            for i in np.flatnonzero(~done):
                np.testing.assert_array_equal(info["final_obs"][i], obs[i])


# ---------------------------------------------------------------------------------------- gym family
def test_cartpole_vector_real_next_obs():
    env = make_vector(resolve("CartPole-v1"), 3, seed=0)
    try:
        assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        env.action_space.seed(0)
        for _ in range(500):
            next_obs, _, terminated, truncated, info = env.step(env.action_space.sample())
            done = np.asarray(terminated) | np.asarray(truncated)
            real = real_next_obs(next_obs, info, done)
            if not done.any():
                np.testing.assert_array_equal(real, next_obs)
                continue
            for i in range(3):
                if done[i]:
                    np.testing.assert_array_equal(real[i], info["final_obs"][i])
                    x, theta = real[i][0], real[i][2]
                    assert abs(x) > CARTPOLE_X or abs(theta) > CARTPOLE_THETA or truncated[i]
                    assert np.all(np.abs(next_obs[i]) <= 0.05)  # the reset obs
                    assert not np.array_equal(real[i], next_obs[i])
                else:
                    np.testing.assert_array_equal(real[i], next_obs[i])
            assert real is not next_obs
            return
        pytest.fail("no CartPole episode ended in 500 random steps")
    finally:
        env.close()


def test_gym_eval_env():
    env = make_eval(resolve("CartPole-v1"), seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.shape == (4,)
    finally:
        env.close()


def test_bad_env_kwargs_and_autoreset_mode():
    with pytest.raises(RlmError, match="autoreset_mode must be"):
        make_vector(resolve("CartPole-v1"), 1, 0, autoreset_mode="sometimes")
    with pytest.raises(RlmError, match="bad env_kwargs for Breakout"):
        make_vector(resolve("Breakout"), 1, 0, no_such_option=3)


# ------------------------------------------------------------------------------------------- MinAtar
def test_minatar_obs_channels_first():
    info = resolve("MinAtar/Breakout")
    env = make_vector(info, 2, seed=0)
    try:
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.uint8
        assert obs.shape[0] == 2 and obs.shape[2:] == (10, 10) and obs.shape[1] == 4
        assert set(np.unique(obs).tolist()) <= {0, 1} and obs.any()
        obs, *_ = env.step(np.zeros(2, dtype=np.int64))
        assert obs.shape == (2, 4, 10, 10) and obs.dtype == np.uint8
    finally:
        env.close()
    ev = make_eval(info, seed=0)
    try:
        o, _ = ev.reset(seed=0)
        assert o.shape == (4, 10, 10) and o.dtype == np.uint8
        assert ev.observation_space.shape == (4, 10, 10)
    finally:
        ev.close()
    si = make_eval(resolve("MinAtar/SpaceInvaders"), seed=0)
    try:
        assert si.reset(seed=0)[0].shape == (6, 10, 10)
    finally:
        si.close()


# --------------------------------------------------------------------------------------- env state
def test_capture_restore_cartpole_round_trip(tmp_path):
    env = make_vector(resolve("CartPole-v1"), 2, seed=0)
    other = make_vector(resolve("CartPole-v1"), 2, seed=99)
    try:
        rng = np.random.default_rng(0)
        for _ in range(7):
            env.step(rng.integers(0, 2, 2))
        state = capture_env_state(env)
        assert state is not None and state["kind"] == "sync"
        # plain data: survives a weights_only torch round trip
        torch.save(state, tmp_path / "s.pt")
        state = torch.load(tmp_path / "s.pt", weights_only=True)
        assert restore_env_state(other, state) is True
        actions = rng.integers(0, 2, (200, 2))  # long enough for several autoresets (RNG of reset)
        dones = 0
        for a in actions:
            o1, r1, te1, tr1, i1 = env.step(a)
            o2, r2, te2, tr2, i2 = other.step(a)
            np.testing.assert_array_equal(o1, o2)
            np.testing.assert_array_equal(r1, r2)
            np.testing.assert_array_equal(te1, te2)
            np.testing.assert_array_equal(tr1, tr2)
            dones += int(np.sum(te1 | tr1))
        assert dones >= 2
    finally:
        env.close()
        other.close()


def test_restore_rejects_mismatch():
    env = make_vector(resolve("CartPole-v1"), 2, seed=0)
    three = make_vector(resolve("CartPole-v1"), 3, seed=0)
    try:
        state = capture_env_state(env)
        assert restore_env_state(three, state) is False
        assert restore_env_state(env, {"kind": "other"}) is False
    finally:
        env.close()
        three.close()


def test_capture_returns_none_for_the_cpp_atari_env():
    atari = make_vector(resolve("Breakout"), 2, seed=0)  # two envs: ale-py's C++ vector env by default
    try:
        assert capture_env_state(atari) is None
    finally:
        atari.close()
    one = make_vector(resolve("Breakout"), 1, seed=0)  # one env: the Python backend, saved (test_atari_python.py)
    try:
        assert capture_env_state(one)["types"][-1] == "PythonAtariVectorEnv"
    finally:
        one.close()


@pytest.mark.parametrize("game", ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"])
def test_minatar_state_continues_the_episodes_exactly(game: str) -> None:
    """Saved mid-episode (through torch.save / torch.load(weights_only=True)) and restored into envs built with
    another seed: the same actions give the same observations, rewards and flags, sticky actions included."""
    env = make_vector(resolve(f"MinAtar/{game}"), 2, seed=3)
    rng = np.random.default_rng(0)
    n = env.single_action_space.n

    def play(e: gym.vector.VectorEnv, steps: int) -> list[tuple]:
        return [tuple(np.copy(x) for x in e.step(rng_actions[t])[:4]) for t in range(steps)]

    rng_actions = rng.integers(0, n, (150, 2))
    play(env, 150)
    buffer = io.BytesIO()
    torch.save(capture_env_state(env), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    rng_actions = rng.integers(0, n, (400, 2))
    expected = play(env, 400)
    other = make_vector(resolve(f"MinAtar/{game}"), 2, seed=77)
    assert restore_env_state(other, saved)
    got = play(other, 400)
    for t, (e, g) in enumerate(zip(expected, got, strict=True)):
        for a, b in zip(e, g, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
    if game != "Freeway":  # (a Freeway episode lasts 2,500 steps)
        assert any(e[2].any() for e in expected)  # episodes ended after the restore, and the next ones matched too
    env.close()
    other.close()


def test_eval_protocol_text():
    atari = envs.eval_protocol(resolve("Breakout"), sticky_actions=0.25, epsilon=0.05, max_frames=108_000)
    assert "true game score" in atari and "unclipped" in atari and "all lives" in atari
    assert "p=0.25" in atari and "epsilon=0.05" in atari and "108000" in atari
    gym_p = envs.eval_protocol(resolve("CartPole-v1"), sticky_actions=0.0, epsilon=0.0, max_frames=1)
    assert gym_p == "undiscounted episode return, epsilon=0.0"


def test_atari_envs_print_no_ale_banner(capfd: pytest.CaptureFixture[str]) -> None:
    """ALE prints a banner per emulator unless its logger is set to errors (eval and record make several)."""
    from rlmorning.envs import make_eval

    env = make_eval(resolve("Breakout"), seed=0)
    env.reset(seed=0)
    env.close()
    out, err = capfd.readouterr()
    assert "Arcade Learning Environment" not in out + err


@pytest.fixture
def unmakeable_ids():
    """Two registered ids that cannot be made: one whose module needs a package that is not installed, one
    that Gymnasium keeps only to raise an ImportError with a hint (as it does for MuJoCo v2/v3)."""
    import gymnasium as gym

    def _raise_test_error(**kwargs):
        raise ImportError("these envs moved to another package\nsecond line")

    gym.register("NeedsMissingPackage-v0", entry_point="rlmorning_no_such_package.envs:Env")
    gym.register("MovedAway-v0", entry_point=_raise_test_error)
    yield ["NeedsMissingPackage-v0", "MovedAway-v0"]
    for k in ("NeedsMissingPackage-v0", "MovedAway-v0"):
        del gym.registry[k]


def test_envs_that_cannot_be_made_are_named_not_listed(unmakeable_ids, tmp_path):
    """`rlmorning envs` lists only ids that can be made; the others come grouped by why, and training on one
    stops at once with Gymnasium's one-line reason, before a run folder is made."""
    from rlmorning import api
    from rlmorning.envs import unavailable_gym_ids

    names = env_names()["gymnasium"]
    assert "CartPole-v1" in names and not set(unmakeable_ids) & set(names)
    missing = unavailable_gym_ids()
    assert missing["these envs moved to another package"] == ["MovedAway-v0"]
    assert any("NeedsMissingPackage-v0" in ids and "rlmorning_no_such_package" in why for why, ids in missing.items())
    for env_id in unmakeable_ids:
        with pytest.raises(RlmError, match=f"env '{env_id}' cannot be made here: ") as exc:
            api.train("dqn", env_id, run_dir=tmp_path / env_id, steps=10)
        assert "\n" not in str(exc.value)
        assert not (tmp_path / env_id).exists()


@pytest.mark.parametrize(("env_id", "size", "ones"), [("FrozenLake-v1", 16, 1), ("CliffWalking-v1", 48, 1),
                                                      ("Blackjack-v1", 32 + 11 + 2, 3)])
def test_discrete_observations_arrive_one_hot(env_id: str, size: int, ones: int) -> None:
    info = resolve(env_id)
    vec = make_vector(info, 2, seed=0)
    obs, *_ = vec.step(vec.action_space.sample())
    assert vec.single_observation_space == spaces.Box(0, 1, (size,), np.uint8)
    assert obs.shape == (2, size) and obs.dtype == np.uint8 and (obs.sum(1) == ones).all()
    vec.close()
    ev = make_eval(info, seed=0)
    first, _ = ev.reset(seed=0)
    assert first.shape == (size,) and first.dtype == np.uint8 and first.sum() == ones
    ev.close()


def test_own_algorithmic_ids_and_box_envs_keep_their_observations() -> None:
    assert isinstance(make_eval(resolve("rlmorning/Copy-v0"), seed=0).observation_space, spaces.Discrete)
    assert make_eval(resolve("CartPole-v1"), seed=0).observation_space.dtype == np.float32


def test_dqn_trains_and_evaluates_on_frozenlake(tmp_path) -> None:
    from rlmorning import api

    res = api.train("dqn", "FrozenLake-v1", run_dir=tmp_path / "fl",
                    overrides=["steps=400", "learning_starts=100", "eval_every=400", "eval_episodes=2",
                               "heldout_states=0", "progress=false"])
    assert res["steps"] == 400
    ev = api.evaluate_run(tmp_path / "fl", episodes=2)
    assert ev["episodes"] == 2 and 0.0 <= ev["mean"] <= 1.0
