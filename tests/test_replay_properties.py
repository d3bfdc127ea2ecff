"""Property tests of :class:`rlmorning.replay.ReplayBuffer` against a naive reference.

Hypothesis generates trajectories of ``N`` parallel envs (random rewards, actions and terminated/truncated
flags, both at once included) with a naive, zero-padded frame stacker, in the same-step or the
next-step autoreset mode (the latter passes the pseudo transition after an episode's end with
``valid=False``, as the trainer does). Every frame is unique (a global counter encoded in 4 pixels of
uint16/int32), so each sampled ``obs`` names exactly one ``(env, t)`` transition of the reference, which
keeps per env the plain list of transitions and computes n-step returns, discounts and next
observations the obvious way.

Which transitions may be sampled is checked in the buffer's documented slot model: per env stream a ring
of ``capacity // num_envs`` slots; every transition takes one slot and a truncated (not terminated)
episode's final observation takes one more. A transition in slot ``s`` of a stream that has written
``count`` slots is "fully in the buffer" iff its ``K - 1`` lookback slots and its ``n`` lookahead slots
are all still in the ring (``count - capacity <= s - K + 1`` and ``s + n <= count - 1``); exactly those
transitions must be sampled (coverage), and no other (lookback overwritten, or among the newest ``n``
slots of its stream).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer

FRAME_SHAPE = (2, 2)
ACTION_SPECS = [((), np.int64), ((), np.uint8), ((2,), np.float32)]
END_KINDS = {"term": (True, False), "trunc": (False, True), "both": (True, True)}


@dataclass
class Scenario:
    num_envs: int
    frame_stack: int
    n_step: int
    gamma: float
    capacity: int
    obs_dtype: type
    action_shape: tuple[int, ...]
    action_dtype: type
    next_step_autoreset: bool
    seed: int
    # steps[t][e] = (episode ends, end kind, reward, action)
    steps: list[list[tuple[bool, str, float, int]]]

    @property
    def stream_capacity(self) -> int:
        return self.capacity // self.num_envs

    @property
    def obs_shape(self) -> tuple[int, ...]:
        return (self.frame_stack, *FRAME_SHAPE) if self.frame_stack > 1 else FRAME_SHAPE


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    num_envs = draw(st.integers(1, 3))
    frame_stack = draw(st.sampled_from([1, 4]))
    n_step = draw(st.integers(1, 4))
    gamma = draw(st.floats(0.0, 1.0))
    # small rings (the minimum allowed is n + K + 1 slots per stream) so that wraparound is the norm
    stream_capacity = draw(st.integers(n_step + frame_stack + 1, n_step + frame_stack + 8))
    capacity = stream_capacity * num_envs + draw(st.integers(0, num_envs - 1))
    action_shape, action_dtype = draw(st.sampled_from(ACTION_SPECS))
    end_chance = draw(st.sampled_from([1, 4, 10]))  # out of 20: long, medium and very short episodes
    event = st.tuples(
        st.integers(0, 19).map(lambda x: x < end_chance),
        st.sampled_from(sorted(END_KINDS)),
        st.floats(-10.0, 10.0, width=32),
        st.integers(0, 17),
    )
    steps = draw(st.lists(st.lists(event, min_size=num_envs, max_size=num_envs), max_size=45))
    return Scenario(
        num_envs=num_envs,
        frame_stack=frame_stack,
        n_step=n_step,
        gamma=gamma,
        capacity=capacity,
        obs_dtype=draw(st.sampled_from([np.uint16, np.int32])),
        action_shape=action_shape,
        action_dtype=action_dtype,
        next_step_autoreset=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
        steps=steps,
    )


@dataclass
class Transition:
    obs: np.ndarray
    action: np.ndarray
    reward: float
    terminated: bool
    truncated: bool
    next_obs: np.ndarray  # the true next observation (the final one at an episode's end)


@dataclass
class Stream:
    """Naive reference of one env: its transitions, and the slots they take in the buffer's model."""

    transitions: list[Transition] = field(default_factory=list)
    global_ids: list[int] = field(default_factory=list)  # index of each transition in Reference tables
    slots: list[int | None] = field(default_factory=list)  # transition index per slot, None = final obs
    num_complete: int = 0  # transitions [0, num_complete) have a complete n-step window


class Reference:
    """Naive per-env lists of transitions plus tables of the expected sample of every transition."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.streams = [Stream() for _ in range(sc.num_envs)]
        max_trans = len(sc.steps) * sc.num_envs
        self.obs = np.zeros((max_trans, *sc.obs_shape), dtype=sc.obs_dtype)
        self.actions = np.zeros((max_trans, *sc.action_shape), dtype=sc.action_dtype)
        self.returns = np.full(max_trans, np.nan)
        self.discounts = np.full(max_trans, np.nan)
        self.next_obs = np.zeros((max_trans, *sc.obs_shape), dtype=sc.obs_dtype)
        self.complete = np.zeros(max_trans, dtype=bool)
        self.env_of = np.zeros(max_trans, dtype=np.int64)
        self.by_frame_id: dict[int, int] = {}  # newest frame id of a transition's obs -> global index
        self.size = 0

    def add(self, env: int, tr: Transition, frame_id: int) -> None:
        stream = self.streams[env]
        g = self.size
        self.size += 1
        self.obs[g] = tr.obs
        self.actions[g] = tr.action
        self.env_of[g] = env
        assert frame_id not in self.by_frame_id
        self.by_frame_id[frame_id] = g
        stream.transitions.append(tr)
        stream.global_ids.append(g)
        stream.slots.append(len(stream.transitions) - 1)
        if tr.truncated and not tr.terminated:
            stream.slots.append(None)
        self._complete(stream)

    def _complete(self, stream: Stream) -> None:
        """Fill the expected return/discount/next_obs of transitions whose n-step window is now known."""
        sc, trs = self.sc, stream.transitions
        while stream.num_complete < len(trs):
            i = stream.num_complete
            m = None
            for j in range(sc.n_step):
                if i + j >= len(trs):
                    break
                if trs[i + j].terminated or trs[i + j].truncated:
                    m = j + 1
                    break
            else:
                m = sc.n_step
            if m is None:
                return  # the window reaches past the newest transition: not complete yet
            window = trs[i : i + m]
            g = stream.global_ids[i]
            self.returns[g] = sum(sc.gamma**k * np.float32(t.reward) for k, t in enumerate(window))
            last = window[-1]
            self.discounts[g] = 0.0 if last.terminated else sc.gamma**m
            self.next_obs[g] = 0 if last.terminated else last.next_obs
            self.complete[g] = True
            stream.num_complete += 1

    def fully_in_buffer(self) -> set[int]:
        """Global ids of the transitions whose lookback and n-step lookahead slots are all in the ring."""
        sc = self.sc
        c, k, n = sc.stream_capacity, sc.frame_stack, sc.n_step
        out = set()
        for stream in self.streams:
            count = len(stream.slots)
            for s, i in enumerate(stream.slots):
                if i is not None and s - (k - 1) >= count - c and s + n <= count - 1:
                    out.add(stream.global_ids[i])
        return out

    def slots_held(self) -> int:
        return sum(min(len(s.slots), self.sc.stream_capacity) for s in self.streams)


class Simulator:
    """N envs with unique frames and a naive zero-padded frame stacker, driving buffer and reference."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.next_frame_id = 1
        self.stacks = [self._reset() for _ in range(sc.num_envs)]
        self.pending_reset = [False] * sc.num_envs  # next-step autoreset: the env ended on the last step

    def _frame(self) -> tuple[np.ndarray, int]:
        fid = self.next_frame_id
        self.next_frame_id += 1
        frame = (4 * fid + np.arange(4)).reshape(FRAME_SHAPE).astype(self.sc.obs_dtype)
        return frame, fid

    def _reset(self) -> np.ndarray:
        frame, _ = self._frame()
        if self.sc.frame_stack == 1:
            return frame
        stack = np.zeros(self.sc.obs_shape, dtype=self.sc.obs_dtype)
        stack[-1] = frame
        return stack

    def _shift(self, stack: np.ndarray, frame: np.ndarray) -> np.ndarray:
        if self.sc.frame_stack == 1:
            return frame
        return np.concatenate([stack[1:], frame[None]])

    def _action(self, a: int) -> np.ndarray:
        if self.sc.action_shape:
            return np.array([a, -a / 2], dtype=self.sc.action_dtype)
        return np.array(a, dtype=self.sc.action_dtype)

    def step(self, events: list[tuple[bool, str, float, int]], buf: ReplayBuffer, ref: Reference) -> None:
        sc = self.sc
        n = sc.num_envs
        obs = np.zeros((n, *sc.obs_shape), dtype=sc.obs_dtype)
        next_obs = np.zeros_like(obs)
        actions = np.zeros((n, *sc.action_shape), dtype=sc.action_dtype)
        rewards = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        valid = np.ones(n, dtype=bool)
        for e, (ends, kind, reward, a) in enumerate(events):
            term, trunc = END_KINDS[kind] if ends else (False, False)
            obs[e] = self.stacks[e]
            actions[e] = self._action(a)
            rewards[e] = reward
            if self.pending_reset[e]:
                # next-step autoreset: a pseudo transition from the final obs to the reset obs, with
                # arbitrary flags; the trainer masks it out and the buffer must not store it
                self.pending_reset[e] = False
                self.stacks[e] = self._reset()
                next_obs[e] = self.stacks[e]
                terminated[e], truncated[e] = term, trunc
                valid[e] = False
                continue
            frame, fid = self._frame()
            nxt = self._shift(self.stacks[e], frame)
            next_obs[e] = nxt  # the true final observation at an episode's end
            terminated[e], truncated[e] = term, trunc
            obs_fid = self._newest_id(obs[e])
            ref.add(e, Transition(obs[e].copy(), actions[e].copy(), float(reward), term, trunc, nxt), obs_fid)
            if term or trunc:
                if sc.next_step_autoreset:
                    self.stacks[e] = nxt
                    self.pending_reset[e] = True
                else:
                    self.stacks[e] = self._reset()
            else:
                self.stacks[e] = nxt
        buf.add(obs, actions, rewards, terminated, truncated, next_obs, valid=None if valid.all() else valid)

    def _newest_id(self, obs: np.ndarray) -> int:
        newest = obs[-1] if self.sc.frame_stack > 1 else obs
        return int(newest.flat[0]) // 4


def make_buffer(sc: Scenario, seed: int | None = None) -> ReplayBuffer:
    return ReplayBuffer(
        capacity=sc.capacity,
        num_envs=sc.num_envs,
        obs_shape=sc.obs_shape,
        obs_dtype=sc.obs_dtype,
        frame_stack=sc.frame_stack,
        action_shape=sc.action_shape,
        action_dtype=sc.action_dtype,
        gamma=sc.gamma,
        n_step=sc.n_step,
        seed=sc.seed if seed is None else seed,
    )


def sampled_ids(sc: Scenario, ref: Reference, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Global reference ids of the sampled transitions (asserting each obs is a reference transition)."""
    newest = batch["obs"][:, -1] if sc.frame_stack > 1 else batch["obs"]
    fids = newest.reshape(len(newest), -1)[:, 0].astype(np.int64) // 4
    ids = np.array([ref.by_frame_id.get(int(f), -1) for f in fids], dtype=np.int64)
    bad = fids[ids < 0]
    assert bad.size == 0, f"sampled obs with newest frames {bad} are not the obs of any stored transition"
    return ids


def check_batch(sc: Scenario, ref: Reference, batch: dict[str, np.ndarray], batch_size: int) -> np.ndarray:
    assert batch["obs"].shape == (batch_size, *sc.obs_shape)
    assert batch["obs"].dtype == np.dtype(sc.obs_dtype)
    assert batch["next_obs"].shape == (batch_size, *sc.obs_shape)
    assert batch["next_obs"].dtype == np.dtype(sc.obs_dtype)
    assert batch["actions"].shape == (batch_size, *sc.action_shape)
    assert batch["actions"].dtype == np.dtype(sc.action_dtype)
    assert batch["returns"].shape == (batch_size,) and batch["returns"].dtype == np.float32
    assert batch["discounts"].shape == (batch_size,) and batch["discounts"].dtype == np.float32
    ids = sampled_ids(sc, ref, batch)
    assert ref.complete[ids].all(), "sampled a transition whose n-step window is not complete yet"
    np.testing.assert_array_equal(batch["obs"], ref.obs[ids])
    np.testing.assert_array_equal(batch["actions"], ref.actions[ids])
    np.testing.assert_allclose(batch["returns"], ref.returns[ids], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(batch["discounts"], ref.discounts[ids], rtol=1e-6, atol=1e-7)
    # terminal rows must be zeros; truncated rows the stored final obs; others the obs m steps later
    np.testing.assert_array_equal(batch["next_obs"], ref.next_obs[ids])
    return ids


def check_sampleable(sc: Scenario, buf: ReplayBuffer, ref: Reference, coverage: bool) -> None:
    assert len(buf) == ref.slots_held()
    allowed = ref.fully_in_buffer()
    assert buf.num_sampleable() >= len(allowed)
    if not allowed:
        assert buf.num_sampleable() == 0
        with pytest.raises(RlmError):
            buf.sample(1)
        return
    batch_size = 40 * len(allowed) + 200 if coverage else 32
    ids = check_batch(sc, ref, buf.sample(batch_size), batch_size)
    got = set(ids.tolist())
    assert got <= allowed, f"sampled transitions not fully in the buffer: {sorted(got - allowed)}"
    if coverage:
        # P(one of <= 40 transitions is never drawn in 40 * 40 + 200 draws) < 40 * exp(-45)
        assert got == allowed, f"never sampled although fully in the buffer: {sorted(allowed - got)}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios())
def test_replay_matches_naive_reference(sc: Scenario) -> None:
    buf = make_buffer(sc)
    ref = Reference(sc)
    sim = Simulator(sc)
    for t, events in enumerate(sc.steps):
        sim.step(events, buf, ref)
        check_sampleable(sc, buf, ref, coverage=(t % 8 == 7))
    check_sampleable(sc, buf, ref, coverage=True)

    if buf.num_sampleable() == 0:
        return
    # checkpoint round trip: a fresh buffer loaded from the saved state samples the very same batches
    f = io.BytesIO()
    torch.save(buf.state_dict(), f)
    f.seek(0)
    fresh = make_buffer(sc, seed=sc.seed + 1)
    fresh.load_state_dict(torch.load(f, weights_only=True))
    assert len(fresh) == len(buf) and fresh.num_sampleable() == buf.num_sampleable()
    a, b = buf.sample(64), fresh.sample(64)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    check_batch(sc, ref, b, 64)


def check_sequences(sc: Scenario, buf: ReplayBuffer, ref: Reference, length: int) -> None:
    """Every window of :meth:`ReplayBuffer.sample_sequences` is the reference episode's steps, cut at its end."""
    batch = buf.sample_sequences(24, length)
    frames = batch["frames"]
    assert frames.shape == (length + 1, 24, *sc.obs_shape)
    assert batch["actions"].shape == (length, 24, *sc.action_shape)
    for key in ("rewards", "terminated", "mask", "frame_mask"):
        assert batch[key].shape == (length, 24), key
    firsts = {"obs": frames[0]}
    for j, g in enumerate(sampled_ids(sc, ref, firsts)):
        stream = ref.streams[ref.env_of[g]]
        i = stream.global_ids.index(int(g))
        slot = stream.slots.index(i)
        count = len(stream.slots)
        assert slot - (sc.frame_stack - 1) >= count - sc.stream_capacity and slot + 1 <= count - 1
        ended = False
        for k in range(length):
            valid = not ended and i + k < len(stream.transitions)
            if valid:
                tr = stream.transitions[i + k]
                s = stream.slots.index(i + k)
                valid = s + 1 <= count - 1 or (tr.terminated and s <= count - 1)
            assert batch["mask"][k, j] == valid, (k, j)
            if not valid:
                assert not batch["frame_mask"][k, j] and batch["rewards"][k, j] == 0
                ended = True
                continue
            np.testing.assert_array_equal(batch["actions"][k, j], tr.action)
            assert batch["rewards"][k, j] == np.float32(tr.reward)
            assert batch["terminated"][k, j] == tr.terminated
            assert batch["frame_mask"][k, j] == (not tr.terminated)
            expected = np.zeros_like(tr.next_obs) if tr.terminated else tr.next_obs
            np.testing.assert_array_equal(frames[k + 1, j], expected)
            ended = tr.terminated or tr.truncated


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sc=scenarios(), length=st.integers(1, 6))
def test_sequence_windows_match_naive_reference(sc: Scenario, length: int) -> None:
    buf = make_buffer(sc)
    ref = Reference(sc)
    sim = Simulator(sc)
    for events in sc.steps:
        sim.step(events, buf, ref)
        starts = any(
            s is not None and s - (sc.frame_stack - 1) >= len(st_.slots) - sc.stream_capacity
            and s + 1 <= len(st_.slots) - 1 for st_ in ref.streams for s, _ in enumerate(st_.slots)
            if st_.slots[s] is not None
        )
        if starts:
            check_sequences(sc, buf, ref, length)
        else:
            with pytest.raises(RlmError):
                buf.sample_sequences(4, length)
