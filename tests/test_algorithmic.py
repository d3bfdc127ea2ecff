"""Tests of the gym 0.19 algorithmic environments ported to Gymnasium."""

from __future__ import annotations

import itertools
import re
import warnings

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from rlmorning.envs.algorithmic import (
    ALGORITHMIC_ENV_IDS,
    CopyEnv,
    DuplicatedInputEnv,
    FlattenedActions,
    RepeatCopyEnv,
    ReversedAddition3Env,
    ReversedAdditionEnv,
    ReverseEnv,
    register_algorithmic_envs,
)

LEFT, RIGHT = CopyEnv.movement_index("left"), CopyEnv.movement_index("right")
UP, DOWN = ReversedAdditionEnv.movement_index("up"), ReversedAdditionEnv.movement_index("down")
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

THRESHOLDS = {
    "rlmorning/Copy-v0": 25.0,
    "rlmorning/DuplicatedInput-v0": 9.0,
    "rlmorning/RepeatCopy-v0": 75.0,
    "rlmorning/Reverse-v0": 25.0,
    "rlmorning/ReversedAddition-v0": 25.0,
    "rlmorning/ReversedAddition3-v0": 25.0,
}


def play_perfect(env: CopyEnv, input_tape: list[int]) -> float:
    """Reset ``env`` on ``input_tape`` and copy it perfectly; return the episode's reward."""
    env.reset(options={"input": input_tape})
    total, terminated = 0.0, False
    for symbol in input_tape:
        assert not terminated
        _, reward, terminated, _, _ = env.step((RIGHT, 1, symbol))
        total += reward
    assert terminated
    return total


# ----------------------------------------------------------------- registration / API
@pytest.mark.parametrize("env_id", ALGORITHMIC_ENV_IDS)
def test_check_env_passes_without_warnings(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_registration_thresholds_no_time_limit_and_idempotent() -> None:
    assert set(ALGORITHMIC_ENV_IDS) == set(THRESHOLDS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # re-registering an id would warn
        register_algorithmic_envs()
    for env_id, threshold in THRESHOLDS.items():
        spec = gym.spec(env_id)
        assert spec.reward_threshold == threshold
        assert spec.max_episode_steps is None
        assert spec.entry_point.startswith("rlmorning.envs.algorithmic.tasks:")
    assert isinstance(gym.make("rlmorning/ReversedAddition3-v0").unwrapped, ReversedAddition3Env)
    assert gym.make("rlmorning/ReversedAddition3-v0").unwrapped.rows == 3


def test_spaces() -> None:
    assert CopyEnv().observation_space == gym.spaces.Discrete(6)
    assert CopyEnv().action_space == gym.spaces.Tuple(
        (gym.spaces.Discrete(2), gym.spaces.Discrete(2), gym.spaces.Discrete(5))
    )
    assert ReverseEnv().observation_space == gym.spaces.Discrete(3)
    assert ReversedAdditionEnv().action_space == gym.spaces.Tuple(
        (gym.spaces.Discrete(4), gym.spaces.Discrete(2), gym.spaces.Discrete(3))
    )


# ----------------------------------------------------------------- rewards and endings
def test_copy_correct_writes_score_one_each_and_end_on_last() -> None:
    env = CopyEnv()
    tape = [0, 1, 2, 3]
    obs, info = env.reset(seed=0, options={"input": tape})
    assert obs == 0 and type(obs) is int
    assert info["target"] == (0, 1, 2, 3)
    total = 0.0
    for i, symbol in enumerate(tape):
        obs, reward, terminated, truncated, _ = env.step((RIGHT, 1, symbol))
        assert reward == 1.0
        assert terminated == (i == len(tape) - 1)
        assert truncated is False
        assert obs == (tape[i + 1] if i + 1 < len(tape) else env.base)  # blank off the tape
        total += reward
    assert total == len(env.target)


def test_wrong_write_gives_minus_half_and_ends() -> None:
    env = CopyEnv()
    env.reset(options={"input": [0, 1, 2]})
    assert env.step((RIGHT, 1, 0))[1:3] == (1.0, False)
    _, reward, terminated, _, _ = env.step((RIGHT, 1, 4))
    assert (reward, terminated) == (-0.5, True)


def test_writing_after_the_end_counts_as_wrong() -> None:
    env = CopyEnv()
    env.reset(options={"input": [2]})
    assert env.step((RIGHT, 1, 2))[1:3] == (1.0, True)
    with pytest.warns(UserWarning, match="reset"):
        _, reward, terminated, _, _ = env.step((RIGHT, 1, 2))
    assert (reward, terminated) == (-0.5, True)


def test_moving_without_writing_hits_time_limit_at_gyms_step() -> None:
    env = CopyEnv()
    env.reset(options={"input": [0, 1]})
    limit = len([0, 1]) + len([0, 1]) + 4
    assert env.time_limit == limit == 8
    for step in range(1, limit + 1):
        obs, reward, terminated, _, _ = env.step((LEFT, 0, 0))
        assert (reward, terminated) == (0.0, False), step
        assert obs == env.base
    _, reward, terminated, _, _ = env.step((LEFT, 0, 0))
    assert (reward, terminated) == (-1.0, True)


def test_time_limit_penalty_replaces_a_correct_write() -> None:
    env = CopyEnv()
    env.reset(options={"input": [0, 1, 2]})  # limit 3 + 3 + 4 = 10
    for _ in range(9):
        env.step((LEFT, 0, 0))
    assert env.step((RIGHT, 1, 0))[1:3] == (1.0, False)  # step 10: still in time
    assert env.step((RIGHT, 1, 1))[1:3] == (-1.0, True)  # step 11: correct, but too late


def test_reversed_addition_time_limit_uses_input_width_twice() -> None:
    env = ReversedAdditionEnv()
    _, info = env.reset(options={"input": [[2, 2], [2, 2]]})
    assert info["target"] == (1, 2, 1)  # 8 + 8 = 16 = 121 in base 3, least significant first
    assert env.time_limit == 2 * 2 + 4  # not 2 + 3 + 4
    for _ in range(8):
        assert env.step((RIGHT, 0, 0))[1:3] == (0.0, False)
    assert env.step((RIGHT, 0, 0))[1:3] == (-1.0, True)


def test_walking_off_the_tape_observes_blank() -> None:
    env = CopyEnv(base=2)
    env.reset(options={"input": [0, 1]})
    expected = [(LEFT, 2), (LEFT, 2), (RIGHT, 2), (RIGHT, 0), (RIGHT, 1), (RIGHT, 2)]
    for move, obs_expected in expected:
        obs, reward, terminated, _, _ = env.step((move, 0, 0))
        assert (obs, reward, terminated) == (obs_expected, 0.0, False)


# ----------------------------------------------------------------- targets
@pytest.mark.parametrize(
    ("env", "tape", "expected"),
    [
        (RepeatCopyEnv(), [0, 1, 2], [0, 1, 2, 2, 1, 0, 0, 1, 2]),
        (RepeatCopyEnv(), [4, 3], [4, 3, 3, 4, 4, 3]),
        (ReverseEnv(), [1, 0, 1, 1], [1, 1, 0, 1]),
        (ReverseEnv(), [0], [0]),
        (DuplicatedInputEnv(), [0, 0, 3, 3, 1, 1], [0, 3, 1]),
        (DuplicatedInputEnv(duplication=3), [2, 2, 2, 4, 4, 4], [2, 4]),
        (CopyEnv(), [4, 0, 2], [4, 0, 2]),
    ],
)
def test_tape_targets(env: CopyEnv, tape: list[int], expected: list[int]) -> None:
    _, info = env.reset(options={"input": tape})
    assert list(env.target) == expected == list(info["target"])


@pytest.mark.parametrize(
    ("rows", "columns", "expected"),
    [
        (2, [[1, 2], [1, 0], [2, 2]], [0, 2, 1, 1]),  # 22 + 20 = 42 = 1120 (base 3)
        (2, [[1, 1], [1, 1]], [2, 2]),
        (2, [[2, 1], [1, 1], [1, 1], [1, 0]], [0, 0, 0, 2]),
        (3, [[1, 1, 0], [0, 1, 1]], [2, 2]),
        (3, [[1, 1, 2], [0, 1, 1]], [1, 0, 1]),
        (3, [[2, 2, 2], [2, 2, 2]], [0, 2, 2]),  # 8 + 8 + 8 = 24 = 220 (base 3)
    ],
)
def test_reversed_addition_targets(rows: int, columns: list[list[int]], expected: list[int]) -> None:
    env = ReversedAdditionEnv(rows=rows)
    env.reset(options={"input": columns})
    assert list(env.target) == expected
    # Cross-check against integer addition: column k holds the base**k digit of every summand.
    summands = [sum(col[r] * 3**k for k, col in enumerate(columns)) for r in range(rows)]
    total = sum(summands)
    assert sum(d * 3**k for k, d in enumerate(expected)) == total


def test_reversed_addition_solved_by_writing_the_target() -> None:
    env = ReversedAdditionEnv()
    obs, _ = env.reset(options={"input": [[1, 2], [1, 0], [2, 2]]})
    assert obs == 1
    for i, digit in enumerate(env.target):
        _, reward, terminated, _, _ = env.step((LEFT, 1, digit))
        assert reward == 1.0 and terminated == (i == len(env.target) - 1)


def test_grid_navigation_reads_the_right_digits() -> None:
    env = ReversedAdditionEnv(rows=2, base=6)
    # Grid (columns [0, 3], [1, 4], [2, 5]):   0 1 2
    #                                          3 4 5
    obs, _ = env.reset(options={"input": [[0, 3], [1, 4], [2, 5]]})
    assert obs == 0
    navigation = [
        (DOWN, 3),
        (UP, 0),
        (RIGHT, 1),
        (DOWN, 4),
        (DOWN, 6),
        (RIGHT, 6),
        (UP, 5),
        (UP, 2),
        (LEFT, 1),
    ]
    for move, expected in navigation:
        obs, reward, terminated, _, _ = env.step((move, 0, 0))
        assert (obs, reward, terminated) == (expected, 0.0, False)
    assert env.read_head_position == (1, 0)


# ----------------------------------------------------------------- input generation and curriculum
def test_random_input_lengths_and_duplication() -> None:
    env = CopyEnv()
    dup = DuplicatedInputEnv()
    grid = ReversedAdditionEnv()
    for seed in range(20):
        env.reset(seed=seed)
        assert env.min_length <= len(env.input_data) <= env.min_length + 2
        assert all(0 <= s < env.base for s in env.input_data)
        dup.reset(seed=seed)
        tape = dup.input_data
        assert len(tape) in (2, 4)  # lengths 2..4 rounded down to a multiple of 2
        assert all(tape[i] == tape[i + 1] for i in range(0, len(tape), 2))
        grid.reset(seed=seed)
        assert 2 <= len(grid.input_data) <= 4 and all(len(col) == 2 for col in grid.input_data)
    triple = DuplicatedInputEnv(duplication=3)
    for seed in range(5):
        triple.reset(seed=seed, options={"min_length": 1})  # lengths 1..3 become 3
        assert len(triple.input_data) == 3 and len(set(triple.input_data)) == 1


def test_same_seed_same_input() -> None:
    a, b = CopyEnv(), CopyEnv()
    a.reset(seed=123)
    first = a.input_data
    a.reset()
    a.reset(seed=123)
    b.reset(seed=123)
    assert a.input_data == first == b.input_data
    inputs = set()
    for seed in range(10):
        env = CopyEnv()
        env.reset(seed=seed)
        inputs.add(env.input_data)
    assert len(inputs) > 1


def test_min_length_option() -> None:
    env = CopyEnv()
    _, info = env.reset(seed=0, options={"min_length": 7})
    assert info["min_length"] == 7 and 7 <= len(env.input_data) <= 9
    env.reset()
    assert 7 <= len(env.input_data) <= 9
    with pytest.raises(ValueError):
        env.reset(options={"min_length": 0})
    with pytest.raises(ValueError):
        env.reset(options={"bogus": 1})
    with pytest.raises(ValueError):
        env.reset(options={"input": [0, 5]})  # 5 is not a symbol of base 5
    with pytest.raises(ValueError):
        ReversedAdditionEnv().reset(options={"input": [[0, 1, 2]]})  # 3 rows on a 2-row grid


def test_copy_promotes_after_ten_perfect_episodes() -> None:
    env = CopyEnv()
    other = CopyEnv()
    other.reset(seed=0)
    assert env.min_length == 2
    for episode in range(10):
        assert play_perfect(env, [0, 1]) == 2.0
        assert env.min_length == 2
        assert len(env.reward_shortfalls) == episode  # the first reset records nothing
    env.reset(seed=0)  # records the 10th perfect episode -> promotion
    assert env.min_length == 3
    assert env.reward_shortfalls == []
    assert 3 <= len(env.input_data) <= 5
    assert other.min_length == 2  # curriculum state is per instance


def test_copy_promotion_tolerates_shortfall_of_one_but_not_more() -> None:
    env = CopyEnv()
    # Ten episodes that each miss one symbol (shortfall exactly -1.0): promotion.
    for _ in range(10):
        env.reset(options={"input": [0, 1]})
        env.step((RIGHT, 1, 0))
    env.reset()
    assert env.min_length == 3
    # One wrong write (-0.5 on a 2-symbol target: shortfall -2.5) in the window blocks it.
    env.reset(options={"input": [0, 1]})
    env.step((RIGHT, 1, 1))
    for _ in range(9):
        play_perfect(env, [0, 1])
    env.reset()
    assert env.min_length == 3
    assert min(env.reward_shortfalls) == -2.5


def test_reverse_needs_fifty_perfect_episodes_and_promotion_caps_at_30() -> None:
    env = ReverseEnv()
    assert env.min_length == 1
    for _ in range(50):
        env.reset(options={"input": [1]})
        assert env.step((LEFT, 1, 1))[1:3] == (1.0, True)
    env.reset()
    assert env.min_length == 2

    capped = CopyEnv()
    capped.reset(options={"min_length": 30})
    for _ in range(10):
        play_perfect(capped, [0])
    capped.reset()
    assert capped.min_length == 30


# ----------------------------------------------------------------- rendering and wrapper
def test_ansi_render_shows_input_target_and_head() -> None:
    env = CopyEnv(render_mode="ansi")
    env.reset(options={"input": [0, 1, 2, 3]})
    env.step((RIGHT, 1, 0))
    frame = env.render()
    assert isinstance(frame, str)
    plain = ANSI_ESCAPE.sub("", frame)
    assert "ABCD" in plain
    tape_line = next(line for line in frame.splitlines() if line.startswith("Observation Tape"))
    assert "\x1b[" in tape_line and "B\x1b[0m" in tape_line  # the read head (on "B") is highlighted
    assert "Targets             :   ABCD" in plain

    grid = ReversedAdditionEnv(render_mode="ansi")
    grid.reset(options={"input": [[1, 2], [1, 0], [2, 2]]})
    plain = ANSI_ESCAPE.sub("", grid.render() or "")
    assert "112" in plain and "202" in plain and "0211" in plain
    with pytest.warns(UserWarning, match="render_mode"):
        assert CopyEnv().render() is None  # no render mode


def test_flattened_actions_round_trip() -> None:
    for env in (CopyEnv(), ReversedAdditionEnv(), ReverseEnv()):
        wrapped = FlattenedActions(env)
        moves, base = len(env.MOVEMENTS), env.base
        assert wrapped.action_space == gym.spaces.Discrete(moves * 2 * base)
        decoded = [wrapped.unflatten(i) for i in range(wrapped.action_space.n)]
        assert decoded == list(itertools.product(range(moves), range(2), range(base)))
        for i, action in enumerate(decoded):
            assert env.action_space.contains(action)
            assert wrapped.flatten(action) == i
            assert wrapped.action(i) == action
        with pytest.raises(ValueError):
            wrapped.unflatten(wrapped.action_space.n)
    # Documented order: index = (move * 2 + write) * base + symbol.
    wrapped = FlattenedActions(CopyEnv())
    assert wrapped.unflatten((RIGHT * 2 + 1) * 5 + 3) == (RIGHT, 1, 3)
    wrapped.reset(options={"input": [3]})
    _, reward, terminated, _, _ = wrapped.step(wrapped.flatten((RIGHT, 1, 3)))
    assert (reward, terminated) == (1.0, True)
