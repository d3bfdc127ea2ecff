"""Unit tests of :mod:`rlmorning.replay` with hand-computed expectations."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

import rlmorning.replay as replay
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer, smallest_int_dtype


def add1(buf: ReplayBuffer, obs, action, reward, next_obs, term=False, trunc=False, valid=None) -> None:
    """Add one step of a single-env buffer (or the same values for every env)."""
    n = buf.num_envs
    buf.add(
        np.stack([np.asarray(obs)] * n),
        np.full(n, action),
        np.full(n, reward, dtype=np.float32),
        np.full(n, term),
        np.full(n, trunc),
        np.stack([np.asarray(next_obs)] * n),
        valid=valid,
    )


def sample_by_obs(buf: ReplayBuffer, batch_size: int = 2000) -> dict[int, dict[str, np.ndarray]]:
    """Sample a lot from a K=1 buffer with scalar-id observations; one entry per distinct obs id."""
    batch = buf.sample(batch_size)
    keys, first, inverse = np.unique(batch["obs"][:, 0], return_index=True, return_inverse=True)
    for v in batch.values():  # the same transition always comes back identical
        np.testing.assert_array_equal(v, v[first][inverse])
    return {int(key): {k: v[i] for k, v in batch.items()} for key, i in zip(keys, first, strict=True)}


# ----------------------------------------------------------------------------------------------- n-step
def test_three_step_returns_terminal_and_truncation_by_hand() -> None:
    buf = ReplayBuffer(100, 1, (1,), np.int32, 1, (), np.int64, gamma=0.5, n_step=3, seed=0)
    # episode A (terminated at obs 12), B (truncated after obs 22, final obs 23), C (open)
    steps = [
        (10, 1.0, 11, False, False),
        (11, 2.0, 12, False, False),
        (12, 4.0, 13, True, False),  # next obs 13 is terminal: never bootstrapped, zeroed in samples
        (20, 8.0, 21, False, False),
        (21, 16.0, 22, False, False),
        (22, 32.0, 23, False, True),  # truncated: 23 is stored and bootstrapped from
        (30, 64.0, 31, False, False),
        (31, 128.0, 32, False, False),
        (32, 256.0, 33, False, False),
        (33, 512.0, 34, False, False),
        (34, 1024.0, 35, False, False),
    ]
    for t, (o, r, nxt, term, trunc) in enumerate(steps):
        add1(buf, [o], t, r, [nxt], term, trunc)
    assert len(buf) == len(steps) + 1  # plus the final-observation slot of the truncation
    got = sample_by_obs(buf)
    # obs 32, 33, 34 are among the newest 3 slots (their 3-step window is not complete yet)
    assert sorted(got) == [10, 11, 12, 20, 21, 22, 30, 31]
    expected = {  # obs: (return, discount, next_obs, action)
        10: (1 + 0.5 * 2 + 0.25 * 4, 0.0, 0, 0),  # terminal within 3 steps -> discount 0, next zeros
        11: (2 + 0.5 * 4, 0.0, 0, 1),  # terminal in the middle: 8 of the next episode not included
        12: (4.0, 0.0, 0, 2),
        20: (8 + 0.5 * 16 + 0.25 * 32, 0.125, 23, 3),  # truncation: bootstrap from the final obs 23
        21: (16 + 0.5 * 32, 0.25, 23, 4),
        22: (32.0, 0.5, 23, 5),
        30: (64 + 0.5 * 128 + 0.25 * 256, 0.125, 33, 6),
        31: (128 + 0.5 * 256 + 0.25 * 512, 0.125, 34, 7),
    }
    for o, (ret, disc, nxt, action) in expected.items():
        row = got[o]
        assert row["returns"] == pytest.approx(ret)
        assert row["discounts"] == pytest.approx(disc)
        assert row["next_obs"].tolist() == [nxt]
        assert row["actions"] == action
    batch = buf.sample(5)
    assert batch["returns"].dtype == np.float32 and batch["discounts"].dtype == np.float32


def test_terminated_and_truncated_at_once_is_terminal() -> None:
    buf = ReplayBuffer(50, 1, (1,), np.int32, 1, (), np.int64, gamma=0.9, n_step=2, seed=0)
    add1(buf, [1], 0, 1.0, [2])
    add1(buf, [2], 0, 1.0, [3], term=True, trunc=True)
    assert len(buf) == 2  # no final-observation slot: nothing is bootstrapped from it
    for o in range(10, 13):
        add1(buf, [o], 0, 0.0, [o + 1])
    got = sample_by_obs(buf)
    assert sorted(got) == [1, 2, 10]
    assert got[1]["returns"] == pytest.approx(1.9) and got[1]["discounts"] == 0.0
    assert got[2]["returns"] == pytest.approx(1.0) and got[2]["discounts"] == 0.0
    assert got[1]["next_obs"].tolist() == [0] and got[2]["next_obs"].tolist() == [0]
    assert got[10]["discounts"] == pytest.approx(0.81) and got[10]["next_obs"].tolist() == [12]


def test_one_step_truncation_bootstraps_from_final_obs() -> None:
    buf = ReplayBuffer(50, 1, (1,), np.int32, 1, (), np.int64, gamma=0.9, n_step=1, seed=0)
    add1(buf, [1], 0, 2.0, [2])
    add1(buf, [2], 0, 3.0, [99], trunc=True)  # final obs 99 exists only in next_obs
    add1(buf, [5], 0, 4.0, [6])  # next episode (same-step autoreset)
    add1(buf, [6], 0, 5.0, [7])
    got = sample_by_obs(buf)
    assert sorted(got) == [1, 2, 5]  # 99 is not a transition; 6 is the newest
    assert got[2]["next_obs"].tolist() == [99]
    assert got[2]["discounts"] == pytest.approx(0.9) and got[2]["returns"] == pytest.approx(3.0)
    assert got[1]["next_obs"].tolist() == [2]


def test_window_stops_at_truncation_before_a_later_termination() -> None:
    buf = ReplayBuffer(50, 1, (1,), np.int32, 1, (), np.int64, gamma=0.5, n_step=3, seed=0)
    add1(buf, [1], 0, 2.0, [2], trunc=True)  # slots: 1, final 2
    add1(buf, [5], 0, 4.0, [6], term=True)  # a one-step episode inside transition 1's 3-slot window
    for o in range(10, 14):
        add1(buf, [o], 0, 1.0, [o + 1])
    got = sample_by_obs(buf)
    assert sorted(got) == [1, 5, 10]  # 11, 12, 13 are the newest 3 slots
    assert got[1]["returns"] == pytest.approx(2.0)
    assert got[1]["discounts"] == pytest.approx(0.5)  # bootstrapped: the termination is another episode
    assert got[1]["next_obs"].tolist() == [2]
    assert got[5]["returns"] == pytest.approx(4.0) and got[5]["discounts"] == 0.0
    assert got[5]["next_obs"].tolist() == [0]


# ------------------------------------------------------------------------------------- frame stacking
def frames_of(stack: np.ndarray) -> list[int]:
    return [int(f) for f in stack[:, 0, 0]]


def test_zero_padding_at_episode_start_k4() -> None:
    k = 4
    buf = ReplayBuffer(200, 1, (k, 1, 1), np.uint8, k, (), np.uint8, gamma=0.9, n_step=1, seed=0)
    stack = np.zeros((k, 1, 1), np.uint8)

    def push(stack: np.ndarray, f: int) -> np.ndarray:
        return np.concatenate([stack[1:], np.full((1, 1, 1), f, np.uint8)])

    def reset(f: int) -> np.ndarray:
        return push(np.zeros((k, 1, 1), np.uint8), f)

    stack = reset(1)
    for f in range(2, 8):  # episode 1: frames 1..7, terminated on the step to frame 7
        nxt = push(stack, f)
        add1(buf, stack, f, 0.0, nxt, term=f == 7)
        stack = nxt
    stack = reset(11)
    for f in range(12, 16):  # episode 2: frames 11..15, truncated with final frame 15
        nxt = push(stack, f)
        add1(buf, stack, f, 0.0, nxt, trunc=f == 15)
        stack = nxt
    stack = reset(21)
    for f in range(22, 25):  # episode 3, open
        nxt = push(stack, f)
        add1(buf, stack, f, 0.0, nxt)
        stack = nxt

    batch = buf.sample(3000)
    seen = {}
    for b in range(len(batch["obs"])):
        seen[frames_of(batch["obs"][b])[-1]] = (frames_of(batch["obs"][b]), frames_of(batch["next_obs"][b]))
    assert seen == {
        1: ([0, 0, 0, 1], [0, 0, 1, 2]),
        2: ([0, 0, 1, 2], [0, 1, 2, 3]),
        3: ([0, 1, 2, 3], [1, 2, 3, 4]),
        4: ([1, 2, 3, 4], [2, 3, 4, 5]),
        5: ([2, 3, 4, 5], [3, 4, 5, 6]),
        6: ([3, 4, 5, 6], [0, 0, 0, 0]),  # terminated: next obs zeroed
        11: ([0, 0, 0, 11], [0, 0, 11, 12]),  # no frames of episode 1 leak into episode 2
        12: ([0, 0, 11, 12], [0, 11, 12, 13]),
        13: ([0, 11, 12, 13], [11, 12, 13, 14]),
        14: ([11, 12, 13, 14], [12, 13, 14, 15]),  # truncated: the stored final stack
        21: ([0, 0, 0, 21], [0, 0, 21, 22]),  # the final frame 15 does not leak either
        22: ([0, 0, 21, 22], [0, 21, 22, 23]),
        # 23 is the newest transition: not sampleable with n_step=1
    }


def test_short_episodes_shorter_than_the_stack() -> None:
    k = 4
    buf = ReplayBuffer(200, 1, (k, 1, 1), np.uint8, k, (), np.uint8, gamma=0.9, n_step=1, seed=0)
    z = np.zeros((k, 1, 1), np.uint8)
    for f in (1, 3, 5, 7):  # one-step episodes: obs [0,0,0,f] -> terminated
        obs = z.copy()
        obs[-1] = f
        nxt = z.copy()
        nxt[-2:, 0, 0] = [f, f + 1]
        add1(buf, obs, 0, 1.0, nxt, term=True)
    batch = buf.sample(500)
    assert {tuple(frames_of(o)) for o in batch["obs"]} == {(0, 0, 0, 1), (0, 0, 0, 3), (0, 0, 0, 5)}
    assert not batch["next_obs"].any()
    assert (batch["discounts"] == 0).all()


# ------------------------------------------------------------------------------ next-step autoreset
def test_invalid_rows_are_not_stored() -> None:
    k = 4
    buf = ReplayBuffer(200, 2, (k, 1, 1), np.uint8, k, (), np.uint8, gamma=0.9, n_step=1, seed=0)

    def stack(*frames: int) -> np.ndarray:
        return np.array(frames, np.uint8).reshape(k, 1, 1)

    def add(obs: np.ndarray, nxt: np.ndarray, reward: float, terminated: tuple[bool, bool] = (False, False)) -> None:
        """A step of both envs with action 0, reward ``reward`` and no truncation."""
        buf.add(obs, np.array([0, 0]), np.full(2, reward), np.array(terminated), np.array([False, False]), nxt)

    obs = np.stack([stack(0, 0, 0, 1), stack(0, 0, 0, 101)])
    nxt = np.stack([stack(0, 0, 1, 2), stack(0, 0, 101, 102)])
    add(obs, nxt, 0.0)
    obs = nxt
    nxt = np.stack([stack(0, 1, 2, 3), stack(0, 101, 102, 103)])
    add(obs, nxt, 1.0, (True, False))
    assert len(buf) == 4
    # next-step autoreset: env 0's row is the pseudo transition final obs (..3) -> reset obs (0,0,0,50);
    # its flags and reward are garbage on purpose
    obs = nxt
    nxt = np.stack([stack(0, 0, 0, 50), stack(101, 102, 103, 104)])
    buf.add(
        obs,
        np.array([9, 0]),
        np.array([77.0, 0.0]),
        np.array([True, False]),
        np.array([True, False]),
        nxt,
        valid=np.array([False, True]),
    )
    assert len(buf) == 5
    obs = nxt
    nxt = np.stack([stack(0, 0, 50, 51), stack(102, 103, 104, 105)])
    add(obs, nxt, 1.0)
    obs = nxt
    nxt = np.stack([stack(0, 50, 51, 52), stack(103, 104, 105, 106)])
    add(obs, nxt, 1.0)
    assert len(buf) == 9
    # nothing masked out at all: no-op
    buf.add(obs, np.array([0, 0]), np.ones(2), np.ones(2, bool), np.ones(2, bool), nxt, valid=np.zeros(2, bool))
    assert len(buf) == 9

    batch = buf.sample(3000)
    obs_seen = {tuple(frames_of(o)) for o in batch["obs"]}
    assert obs_seen == {
        (0, 0, 0, 1),
        (0, 0, 1, 2),
        (0, 0, 0, 50),  # env 0: the pseudo transition (0,1,2,3) is absent
        (0, 0, 0, 101),
        (0, 0, 101, 102),
        (0, 101, 102, 103),
        (101, 102, 103, 104),
    }
    assert 77.0 not in batch["returns"] and 9 not in batch["actions"]
    for o, n, d in zip(batch["obs"], batch["next_obs"], batch["discounts"], strict=True):
        if frames_of(o) == [0, 0, 1, 2]:
            assert not n.any() and d == 0.0  # terminated before the pseudo step
        if frames_of(o) == [0, 0, 0, 50]:
            assert frames_of(n) == [0, 0, 50, 51]  # fresh episode: padded, nothing of the final obs


# -------------------------------------------------------------------------------------------- sampling
def test_sampling_is_uniform_over_transitions_of_all_streams() -> None:
    buf = ReplayBuffer(100, 2, (1,), np.int32, 1, (), np.int64, gamma=0.9, n_step=1, seed=3)
    for t in range(21):
        # env 1 only takes part in every 4th step: its stream holds far fewer transitions
        valid = np.array([True, t % 4 == 0])
        buf.add(
            np.array([[t], [1000 + t]]),
            np.zeros(2, np.int64),
            np.zeros(2),
            np.zeros(2, bool),
            np.zeros(2, bool),
            np.array([[t + 1], [1001 + t]]),
            valid=valid,
        )
    assert buf.num_sampleable() == 20 + 5
    batch = buf.sample(50_000)
    ids, counts = np.unique(batch["obs"][:, 0], return_counts=True)
    assert set(ids.tolist()) == set(range(20)) | {1000, 1004, 1008, 1012, 1016}
    expected = 50_000 / 25
    assert np.all(np.abs(counts - expected) < 0.1 * expected), counts


def test_sample_from_empty_buffer_raises() -> None:
    buf = ReplayBuffer(100, 2, (1,), np.int32, 1, (), np.int64, gamma=0.9, n_step=3, seed=0)
    with pytest.raises(RlmError):
        buf.sample(4)
    assert buf.num_sampleable() == 0 and len(buf) == 0
    for t in range(3):  # 3 steps: no transition has a complete 3-step window yet
        add1(buf, [t], 0, 0.0, [t + 1])
        with pytest.raises(RlmError):
            buf.sample(4)
    add1(buf, [3], 0, 0.0, [4])
    assert buf.num_sampleable() == 2
    assert buf.sample(4)["obs"].shape == (4, 1)


def test_wraparound_keeps_only_the_newest_slots() -> None:
    k, n = 4, 2
    c = n + k + 1  # the smallest allowed stream
    buf = ReplayBuffer(c, 1, (k, 1), np.int32, k, (), np.int64, gamma=1.0, n_step=n, seed=0)
    stack = np.zeros((k, 1), np.int32)
    for f in range(1, 31):
        nxt = np.concatenate([stack[1:], [[f + 1]]]).astype(np.int32)
        add1(buf, stack, f, float(f), nxt)
        stack = nxt
    assert len(buf) == c
    # slots hold frames 24..30; frame 30, 29 are the newest n; 24..26 are lookback only -> only 27, 28
    assert buf.num_sampleable() == c - k + 1 - n
    batch = buf.sample(500)
    assert set(batch["obs"][:, -1, 0].tolist()) == {27, 28}
    for o, nx, r in zip(batch["obs"], batch["next_obs"], batch["returns"], strict=True):
        f = int(o[-1, 0])
        assert o[:, 0].tolist() == [f - 3, f - 2, f - 1, f]
        assert nx[:, 0].tolist() == [f - 1, f, f + 1, f + 2]
        assert r == pytest.approx(2 * f + 1)


# ----------------------------------------------------------------------------------------------- memory
def test_smallest_int_dtype() -> None:
    assert smallest_int_dtype(18) == np.uint8
    assert smallest_int_dtype(256) == np.uint8
    assert smallest_int_dtype(257) == np.uint16
    assert smallest_int_dtype(65536) == np.uint16
    assert smallest_int_dtype(65537) == np.uint32


@pytest.mark.parametrize("num_envs", [1, 8])
def test_bytes_per_transition_for_atari_frames(num_envs: int) -> None:
    capacity = 10_000
    buf = ReplayBuffer(capacity, num_envs, (4, 84, 84), np.uint8, 4, (), smallest_int_dtype(18), gamma=0.99, n_step=3)
    assert buf.nbytes / capacity <= 7100
    assert buf.nbytes == (capacity // num_envs) * num_envs * (84 * 84 + 1 + 4 + 1)


def test_buffer_larger_than_ram_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "available_memory_bytes", lambda: 2 * 2**30)
    with pytest.raises(RlmError, match="GiB"):
        ReplayBuffer(1_000_000, 8, (4, 84, 84), np.uint8, 4, (), np.uint8)
    ReplayBuffer(10_000, 8, (4, 84, 84), np.uint8, 4, (), np.uint8)  # 70 MB fits
    monkeypatch.setattr(replay, "available_memory_bytes", lambda: None)  # unknown RAM: no check
    ReplayBuffer(10_000, 8, (4, 84, 84), np.uint8, 4, (), np.uint8)


def test_available_memory_bytes_is_positive_or_none() -> None:
    avail = replay.available_memory_bytes()
    assert avail is None or avail > 0


def test_invalid_arguments_raise() -> None:
    with pytest.raises(RlmError):
        ReplayBuffer(6, 1, (4, 2, 2), np.uint8, 4, n_step=2)  # needs n + K + 1 = 7 slots per stream
    ReplayBuffer(7, 1, (4, 2, 2), np.uint8, 4, n_step=2)
    with pytest.raises(RlmError):
        ReplayBuffer(13, 2, (4, 2, 2), np.uint8, 4, n_step=2)  # 6 slots per stream
    with pytest.raises(RlmError):
        ReplayBuffer(100, 1, (3, 2, 2), np.uint8, 4)  # first axis is not the stack
    with pytest.raises(RlmError):
        ReplayBuffer(100, 1, (4,), np.uint8, 4)  # no frame axes
    with pytest.raises(RlmError):
        ReplayBuffer(100, 1, (4,), np.uint8, 1, n_step=0)
    with pytest.raises(RlmError):
        ReplayBuffer(100, 0, (4,), np.uint8, 1)


# ------------------------------------------------------------------------------------------ checkpoints
def filled_buffer(seed: int = 0) -> ReplayBuffer:
    rng = np.random.default_rng(0)
    buf = ReplayBuffer(40, 2, (4, 3, 3), np.uint8, 4, (), np.uint8, gamma=0.97, n_step=3, seed=seed)
    for _ in range(50):  # wraps around the 20-slot streams
        buf.add(
            rng.integers(0, 255, (2, 4, 3, 3), dtype=np.uint8),
            rng.integers(0, 18, 2).astype(np.uint8),
            rng.normal(size=2).astype(np.float32),
            rng.random(2) < 0.1,
            rng.random(2) < 0.1,
            rng.integers(0, 255, (2, 4, 3, 3), dtype=np.uint8),
        )
    return buf


def test_state_dict_round_trip() -> None:
    buf = filled_buffer()
    buf.sample(7)  # advance the RNG: its state must travel with the checkpoint
    f = io.BytesIO()
    torch.save(buf.state_dict(), f)
    f.seek(0)
    state = torch.load(f, weights_only=True)
    fresh = ReplayBuffer(40, 2, (4, 3, 3), np.uint8, 4, (), np.uint8, gamma=0.97, n_step=3, seed=123)
    fresh.load_state_dict(state)
    assert len(fresh) == len(buf) and fresh.num_sampleable() == buf.num_sampleable()
    for _ in range(3):
        a, b = buf.sample(32), fresh.sample(32)
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    # the loaded buffer keeps working: adding to it does not touch the original
    before = buf.frames.copy()
    fresh.add(
        np.full((2, 4, 3, 3), 7, np.uint8),
        np.zeros(2, np.uint8),
        np.zeros(2),
        np.zeros(2, bool),
        np.zeros(2, bool),
        np.full((2, 4, 3, 3), 8, np.uint8),
    )
    np.testing.assert_array_equal(buf.frames, before)


def test_load_state_dict_with_other_shapes_raises() -> None:
    state = filled_buffer().state_dict()
    other = ReplayBuffer(60, 2, (4, 3, 3), np.uint8, 4, (), np.uint8, gamma=0.97, n_step=3)
    with pytest.raises(RlmError, match="buffer_size"):
        other.load_state_dict(state)
    other = ReplayBuffer(40, 2, (4, 3, 3), np.uint8, 4, (), np.int64, gamma=0.97, n_step=3)
    with pytest.raises(RlmError):
        other.load_state_dict(state)
