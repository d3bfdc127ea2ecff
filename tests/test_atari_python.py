"""The Atari training env in Python (envs/atari_python.py): the same as the C++ training env, RAM aligned with
frames, and a saved state that continues exactly."""

from __future__ import annotations

import io

import ale_py
import numpy as np
import pytest
import torch

from rlmorning.envs.atari import make_atari_vector
from rlmorning.envs.atari_python import NoopSampler, PythonAtariVectorEnv
from rlmorning.envs.state import capture_env_state, restore_env_state
from rlmorning.errors import RlmError


@pytest.mark.parametrize(
    "mode, noop_max, max_frames, steps",
    [("same_step", 30, 108_000, 260), ("next_step", 30, 108_000, 200), ("same_step", 0, 400, 150)],
)
def test_ram_env_equals_cpp_training_env(mode: str, noop_max: int, max_frames: int, steps: int) -> None:
    """Same seed and actions: same frames, rewards, flags, lives, episode_end, no-op starts and final frames."""
    kwargs = dict(noop_max=noop_max, autoreset_mode=mode, max_frames=max_frames)
    cpp = make_atari_vector("breakout", 2, 11, num_threads=1, backend="cpp", **kwargs)
    ram = make_atari_vector("breakout", 2, 11, ram=True, **kwargs)
    obs_c, info_c = cpp.reset(seed=11)
    obs_r, info_r = ram.reset(seed=11)
    np.testing.assert_array_equal(obs_c, obs_r)
    np.testing.assert_array_equal(info_c["episode_frame_number"], info_r["episode_frame_number"])
    rng = np.random.default_rng(5)
    life_losses = game_ends = truncations = 0
    for t in range(steps):
        actions = rng.integers(0, cpp.single_action_space.n, 2)
        oc, rc, tc, trc, ic = cpp.step(actions)
        orr, rr, tr, trr, ir = ram.step(actions)
        np.testing.assert_array_equal(oc, orr, err_msg=f"obs at step {t}")
        np.testing.assert_array_equal(rc, rr)
        np.testing.assert_array_equal(tc, tr)
        np.testing.assert_array_equal(trc, trr)
        for key in ("lives", "episode_end", "frame_number", "episode_frame_number"):
            np.testing.assert_array_equal(ic[key], ir[key], err_msg=f"{key} at step {t}")
        assert ir["ram"].shape == (2, 128) and ir["ram"].dtype == np.uint8
        done = tc | trc
        if mode == "same_step" and done.any():
            np.testing.assert_array_equal(ic["final_obs"][done], ir["final_obs"][done])
            assert ir["final_ram"].shape == (2, 128)
        life_losses += int((tc & ~ic["episode_end"]).sum())
        game_ends += int((tc & ic["episode_end"]).sum())
        truncations += int(trc.sum())
    assert life_losses > 0
    if max_frames < 108_000:
        assert truncations > 0
    else:
        assert game_ends > 0


def test_noop_sampler_matches_cpp_no_op_starts() -> None:
    """The no-op count of a reset (visible as episode_frame_number = max(d, 1)) follows std::mt19937(seed)."""
    env = ale_py.vector_env.AtariVectorEnv("pong", 8, num_threads=1, stack_num=1, noop_max=30)
    _, info = env.reset(seed=100)
    expected = [max(NoopSampler(30, 100 + i)(), 1) for i in range(8)]
    assert info["episode_frame_number"].tolist() == expected
    assert len(set(expected)) > 4  # the starts differ, so the comparison means something


def _reference(seed: int) -> ale_py.ALEInterface:
    ale = ale_py.ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.setInt("random_seed", seed)
    ale.loadROM(str(ale_py.roms.get_rom_path("breakout")))
    ale.reset_game()
    ale.act(ale_py.Action.FIRE)
    return ale


def test_ram_is_the_ram_after_the_observed_frame() -> None:
    """info['ram'] equals getRAM() of a seeded ALE stepping the same actions (4 frames each), through life
    losses and a game over (final_ram before the reset, ram after it)."""
    env = make_atari_vector("breakout", 1, 3, ram=True, noop_max=0)
    _, info = env.reset(seed=3)
    ale = _reference(3)
    actions_set = ale.getMinimalActionSet()
    np.testing.assert_array_equal(info["ram"][0], ale.getRAM())
    rng = np.random.default_rng(0)
    games = 0
    for _ in range(400):
        a = int(rng.integers(0, len(actions_set)))
        _, _, term, trunc, info = env.step(np.array([a]))
        for _ in range(4):
            ale.act(actions_set[a])
            if ale.game_over():
                break
        if ale.game_over():
            np.testing.assert_array_equal(info["final_ram"][0], ale.getRAM())
            assert term[0] and info["episode_end"][0]
            ale.reset_game()
            ale.act(ale_py.Action.FIRE)
            games += 1
        np.testing.assert_array_equal(info["ram"][0], ale.getRAM())
        screen = env.unwrapped.screens_rgb()[0]
        np.testing.assert_array_equal(screen, ale.getScreenRGB())
    assert games >= 1


def test_final_ram_rows_of_unfinished_envs_hold_the_current_ram() -> None:
    env = make_atari_vector("breakout", 2, 0, ram=True, noop_max=0, max_frames=40)
    env.reset(seed=0)
    for _ in range(10):
        _, _, term, trunc, info = env.step(np.array([1, 1]))
        if (term | trunc).any():
            break
    assert trunc.all()
    assert "final_ram" in info and not np.array_equal(info["final_ram"], info["ram"])


def test_bad_arguments_are_one_line_errors() -> None:
    for backend in ("python", "cpp"):  # both backends validate (the C++ one once took any other word as next_step)
        with pytest.raises(RlmError, match="autoreset_mode"):
            make_atari_vector("breakout", 1, 0, backend=backend, autoreset_mode="sometimes")
    with pytest.raises(RlmError, match="backend must be one of auto, cpp, python, got 'c'"):
        make_atari_vector("breakout", 1, 0, backend="c")
    with pytest.raises(RlmError, match="num_threads .4. sets the C.. backend's threads"):
        make_atari_vector("breakout", 1, 0, num_threads=4)  # one env: the Python backend, which has no threads
    with pytest.raises(RlmError, match="needs env_kwargs backend python or auto"):
        make_atari_vector("breakout", 1, 0, backend="cpp", ram=True)
    with pytest.raises(RlmError, match="unknown Atari ROM"):
        make_atari_vector("not_a_game", 1, 0, ram=True)
    env = make_atari_vector("breakout", 1, 0, ram=True)
    with pytest.raises(RlmError, match="actions"):
        env.step(np.array([0.5]))


def test_auto_backend_is_python_for_one_env_or_ram_else_cpp() -> None:
    def base(**kwargs: object) -> object:
        return make_atari_vector("breakout", **kwargs).unwrapped

    assert isinstance(base(num_envs=1, seed=0), PythonAtariVectorEnv)
    assert isinstance(base(num_envs=2, seed=0, ram=True), PythonAtariVectorEnv)
    assert isinstance(base(num_envs=2, seed=0), ale_py.vector_env.AtariVectorEnv)
    assert isinstance(base(num_envs=1, seed=0, backend="cpp"), ale_py.vector_env.AtariVectorEnv)
    assert capture_env_state(make_atari_vector("breakout", 2, 0)) is None  # the C++ env cannot be saved


def _steps(env: object, actions: np.ndarray) -> list[tuple]:
    out = []
    for a in actions:
        obs, rew, term, trunc, info = env.step(a)  # type: ignore[attr-defined]
        final = info["final_obs"].copy() if "final_obs" in info else None
        out.append((obs, rew, term, trunc, final, info["ram"], info["lives"], info["episode_end"],
                    info["episode_frame_number"]))
    return out


@pytest.mark.parametrize("mode", ["same_step", "next_step"])
def test_saved_state_continues_the_episodes_exactly(mode: str) -> None:
    """Saved mid-game (through torch.save / torch.load(weights_only=True)) and restored into an env built with
    another seed: the same actions give the same frames, rewards, flags, RAM and no-op starts, through life
    losses, game overs and truncations, with sticky actions (the emulator's RNG is part of the state)."""
    kwargs = dict(sticky_actions=0.25, max_frames=1200, autoreset_mode=mode, backend="python")
    env = make_atari_vector("breakout", 2, 5, **kwargs)
    rng = np.random.default_rng(1)
    _steps(env, rng.integers(0, 4, (130, 2)))
    buffer = io.BytesIO()
    torch.save(capture_env_state(env), buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    actions = rng.integers(0, 4, (400, 2))
    expected = _steps(env, actions)
    other = make_atari_vector("breakout", 2, 999, **kwargs)
    _steps(other, rng.integers(0, 4, (7, 2)))  # somewhere else entirely
    assert restore_env_state(other, saved)
    got = _steps(other, actions)
    for t, (e, g) in enumerate(zip(expected, got, strict=True)):
        for a, b in zip(e, g, strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"step {t}")
    terminated = np.array([e[2] for e in expected])
    episode_end = np.array([e[7] for e in expected])
    assert (terminated & ~episode_end).any() and episode_end.any()  # life losses and whole-game ends
    assert not restore_env_state(make_atari_vector("breakout", 2, 0), saved)  # not into the C++ backend


@pytest.mark.parametrize("game", ["pong", "boxing", "freeway", "ms_pacman", "space_invaders"])
def test_both_backends_agree_on_other_games(game: str) -> None:
    """One env, the default settings: the backend auto picks (Python) plays like the C++ env, frame for frame."""
    cpp, py = make_atari_vector(game, 1, 3, backend="cpp"), make_atari_vector(game, 1, 3)
    assert isinstance(py.unwrapped, PythonAtariVectorEnv)
    rng = np.random.default_rng(0)
    for t in range(300):
        a = rng.integers(0, cpp.single_action_space.n, 1)
        for x, y in zip(cpp.step(a)[:4], py.step(a)[:4], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=f"{game} step {t}")
