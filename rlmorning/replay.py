"""Replay buffer that stores every frame once and rebuilds frame stacks by index.

Layout: one ring of ``capacity // num_envs`` *slots* per parallel env (a stream). A slot holds the newest
frame of an observation (``obs[-1]`` when ``frame_stack > 1``, else the whole observation), the action
taken from it, its reward and a flag byte. Stacks are rebuilt at sample time from the previous
``frame_stack - 1`` slots of the same stream.

Conventions (tested against a naive reference in ``tests/test_replay_properties.py``):

* **Episode starts are zero-padded.** Frames of a stack that lie before the episode's first frame are
  zeros, exactly like the observations of :class:`rlmorning.envs.stack.FrameStack` (and ALE's own
  reset stacks), so a sampled stack equals the observation the agent acted on.
* ``terminated`` stops bootstrapping (discount 0); ``truncated`` does not: the final observation of a
  truncated episode is stored in one extra slot (not sampleable) so its value can be bootstrapped.
* n-step: the return sums up to ``n`` rewards and stops at the episode's end;
  ``discount = gamma**m`` for the ``m`` rewards summed, or 0 if the episode terminated within them.
* A pseudo-transition of a next-step-autoreset vector env must not be added: pass ``valid=False``
  for that env (the trainer does this).

Memory: ``frame bytes + action bytes + 4 (reward) + 1 (flags)`` per transition, e.g. 7,062 bytes for
84x84 Atari frames, allocated up front after checking that the RAM is there.
"""

from __future__ import annotations

import numpy as np

from rlmorning.checkpointed import Checkpointed
from rlmorning.errors import RlmError

TRANSITION = np.uint8(1)  # slot starts a transition (obs, action, reward); 0 for a final-observation slot
START = np.uint8(2)  # first slot of an episode
TERMINATED = np.uint8(4)
TRUNCATED = np.uint8(8)


def available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where that is not readable."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def smallest_int_dtype(n: int) -> np.dtype:
    """The smallest unsigned dtype that holds 0..n-1."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.int64)


class ReplayBuffer(Checkpointed):
    """Frame-deduplicated replay for N parallel env streams with n-step returns.

    A checkpoint holds its arrays (as zero-copy tensors) and RNG (:class:`~rlmorning.checkpointed.Checkpointed`);
    loading checks their shapes and dtypes against this buffer's.

    Args:
        capacity: total slots over all streams (each stream gets ``capacity // num_envs``).
        num_envs: parallel envs feeding the buffer; each has its own stream.
        obs_shape: shape of one env's observation, e.g. ``(4, 84, 84)``; with ``frame_stack = K > 1``
            its first axis must be K and only ``obs[-1]`` is stored.
        obs_dtype: dtype of observations (uint8 for frames).
        frame_stack: K, the number of frames per observation stack (1 = store whole observations).
        action_shape, action_dtype: one env's action (scalar int for discrete actions).
        gamma, n_step: discount and horizon of the n-step return.
        seed: seed of the sampling RNG.
        side_shape, side_dtype: per-frame side information stored beside each frame (e.g. ``(128,)`` uint8:
            the Atari console RAM of that frame); None stores none. :meth:`sample` then also returns
            ``side`` (of ``obs``'s newest frame) and ``next_side`` (of ``next_obs``'s).
    """

    saved = ("frames", "actions", "rewards", "flags", "count", "open", "rng", "side")
    saved_optional = ("side",)
    checkpoint_name = "replay"
    load_hint = "buffer_size, num_envs or env"

    def __init__(
        self,
        capacity: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.uint8,
        frame_stack: int = 1,
        action_shape: tuple[int, ...] = (),
        action_dtype: np.dtype | type = np.int64,
        gamma: float = 0.99,
        n_step: int = 1,
        seed: int = 0,
        side_shape: tuple[int, ...] | None = None,
        side_dtype: np.dtype | type = np.uint8,
    ) -> None:
        if frame_stack < 1 or n_step < 1 or num_envs < 1:
            raise RlmError("replay: frame_stack, n_step and num_envs must be >= 1")
        if frame_stack > 1 and (len(obs_shape) < 2 or obs_shape[0] != frame_stack):
            raise RlmError(f"replay: obs_shape {obs_shape} does not start with frame_stack={frame_stack}")
        self.num_envs = num_envs
        self.stream_capacity = capacity // num_envs
        if self.stream_capacity < n_step + frame_stack + 1:
            raise RlmError(
                f"replay: buffer_size={capacity} is too small for {num_envs} envs "
                f"(needs at least {(n_step + frame_stack + 1) * num_envs})"
            )
        self.obs_shape = tuple(obs_shape)
        self.frame_stack = frame_stack
        self.frame_shape = self.obs_shape[1:] if frame_stack > 1 else self.obs_shape
        self.gamma = float(gamma)
        self.n_step = int(n_step)
        n, c = num_envs, self.stream_capacity
        obs_dtype = np.dtype(obs_dtype)
        action_dtype = np.dtype(action_dtype)
        per_slot = (
            int(np.prod(self.frame_shape)) * obs_dtype.itemsize
            + int(np.prod(action_shape, dtype=np.int64)) * action_dtype.itemsize
            + 4
            + 1
            + (int(np.prod(side_shape, dtype=np.int64)) * np.dtype(side_dtype).itemsize if side_shape else 0)
        )
        needed = per_slot * n * c
        avail = available_memory_bytes()
        if avail is not None and needed > 0.9 * avail:
            raise RlmError(
                f"replay buffer needs {needed / 2**30:.2f} GiB but only {avail / 2**30:.2f} GiB of RAM is "
                f"available; lower buffer_size (now {capacity})"
            )
        self.frames = np.zeros((n, c, *self.frame_shape), dtype=obs_dtype)
        self.actions = np.zeros((n, c, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros((n, c), dtype=np.float32)
        self.flags = np.zeros((n, c), dtype=np.uint8)
        self.count = np.zeros(n, dtype=np.int64)  # slots ever written per stream
        self.open = np.zeros(n, dtype=bool)  # an episode is in progress in the stream
        self.side = None if side_shape is None else np.zeros((n, c, *side_shape), dtype=side_dtype)
        self.rng = np.random.default_rng(seed)
        self._discounts = self.gamma ** np.arange(self.n_step, dtype=np.float64)

    # ----------------------------------------------------------------------------------------- writing
    @property
    def nbytes(self) -> int:
        """Bytes held by the storage arrays."""
        side = 0 if self.side is None else self.side.nbytes
        return self.frames.nbytes + self.actions.nbytes + self.rewards.nbytes + self.flags.nbytes + side

    def __len__(self) -> int:
        """Number of slots currently held (transitions plus the rare final-observation slots)."""
        return int(np.minimum(self.count, self.stream_capacity).sum())

    def _newest(self, obs: np.ndarray) -> np.ndarray:
        return obs[:, -1] if self.frame_stack > 1 else obs

    def add(
        self,
        obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        next_obs: np.ndarray,
        valid: np.ndarray | None = None,
        side: np.ndarray | None = None,
        final_side: np.ndarray | None = None,
    ) -> None:
        """Add one vector step: arrays with a leading axis of ``num_envs``; ``valid`` masks envs out.

        With side storage, ``side`` is the side information of ``obs`` (required) and ``final_side`` that of
        ``next_obs`` (used for truncated episodes' final observations; defaults to zeros)."""
        envs = np.arange(self.num_envs) if valid is None else np.flatnonzero(valid)
        if envs.size == 0:
            return
        if self.side is not None and side is None:
            raise RlmError("replay: this buffer stores side information; add() needs side=")
        terminated = np.asarray(terminated, dtype=bool)[envs]
        truncated = np.asarray(truncated, dtype=bool)[envs]
        pos = self.count[envs] % self.stream_capacity
        self.frames[envs, pos] = self._newest(np.asarray(obs))[envs]
        self.actions[envs, pos] = np.asarray(actions)[envs]
        self.rewards[envs, pos] = np.asarray(rewards, dtype=np.float32)[envs]
        flags = np.full(envs.size, TRANSITION, dtype=np.uint8)
        flags[~self.open[envs]] |= START
        flags[terminated] |= TERMINATED
        flags[truncated] |= TRUNCATED
        self.flags[envs, pos] = flags
        if self.side is not None:
            self.side[envs, pos] = np.asarray(side)[envs]
        self.count[envs] += 1
        # A truncated episode's final observation gets a slot of its own, so it can be bootstrapped.
        final = truncated & ~terminated
        if final.any():
            fenvs = envs[final]
            fpos = self.count[fenvs] % self.stream_capacity
            self.frames[fenvs, fpos] = self._newest(np.asarray(next_obs))[fenvs]
            self.flags[fenvs, fpos] = 0
            if self.side is not None:
                self.side[fenvs, fpos] = 0 if final_side is None else np.asarray(final_side)[fenvs]
            self.count[fenvs] += 1
        self.open[envs] = ~(terminated | truncated)

    def interrupt_episodes(self) -> None:
        """Close the episodes in progress when their env is lost (e.g. resume with fresh episodes).

        The last stored transition of each open episode has no successor observation, so it becomes a
        non-sampleable final-observation slot and the transition before it is marked truncated
        (it bootstraps from that observation, which is exact).
        """
        c = self.stream_capacity
        for i in np.flatnonzero(self.open & (self.count > 0)):
            last = (self.count[i] - 1) % c
            if not self.flags[i, last] & START:
                self.flags[i, (self.count[i] - 2) % c] |= TRUNCATED
            self.flags[i, last] = 0
        self.open[:] = False

    # ---------------------------------------------------------------------------------------- sampling
    def _valid_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Per stream, the inclusive range of absolute slot indices that may be sampled."""
        lo = np.maximum(self.count - self.stream_capacity + self.frame_stack - 1, 0)
        hi = self.count - 1 - self.n_step
        return lo, hi

    def num_sampleable(self) -> int:
        """Upper bound on the number of distinct transitions :meth:`sample` can return now."""
        lo, hi = self._valid_ranges()
        return int(np.maximum(hi - lo + 1, 0).sum())

    def _draw(self, batch_size: int, lookahead: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Uniform ``(stream, absolute slot)`` pairs of transitions whose ``lookahead`` following slots
        (default ``n_step``) and frame-stack lookback are stored."""
        lo, hi = self._valid_ranges()
        if lookahead is not None:
            hi = self.count - 1 - lookahead
        sizes = np.maximum(hi - lo + 1, 0)
        total = int(sizes.sum())
        if total == 0:
            raise RlmError("replay: nothing to sample yet (add more transitions before sampling)")
        ends = np.cumsum(sizes)
        env = np.empty(batch_size, dtype=np.int64)
        slot = np.empty(batch_size, dtype=np.int64)
        todo = np.arange(batch_size)
        for _ in range(1000):
            u = self.rng.integers(0, total, size=todo.size)
            e = np.searchsorted(ends, u, side="right")
            a = lo[e] + (u - (ends[e] - sizes[e]))
            ok = (self.flags[e, a % self.stream_capacity] & TRANSITION) != 0
            env[todo[ok]], slot[todo[ok]] = e[ok], a[ok]
            todo = todo[~ok]
            if todo.size == 0:
                return env, slot
        raise RlmError("replay: could not find sampleable transitions")

    def _stack(self, env: np.ndarray, slot: np.ndarray) -> np.ndarray:
        """Observations ending at absolute ``slot`` of stream ``env``: [B, *obs_shape]."""
        k = self.frame_stack
        if k == 1:
            return self.frames[env, slot % self.stream_capacity]
        idx = (slot[:, None] + np.arange(-k + 1, 1)) % self.stream_capacity  # [B, K]
        stack = self.frames[env[:, None], idx]  # [B, K, *frame]
        starts = (self.flags[env[:, None], idx] & START) != 0
        # frame j is from the same episode iff no episode start lies in positions j+1..K-1
        before_start = np.zeros_like(starts)
        for j in range(k - 2, -1, -1):
            before_start[:, j] = before_start[:, j + 1] | starts[:, j + 1]
        stack[before_start] = 0
        return stack

    def sample(self, batch_size: int) -> dict[str, np.ndarray]:
        """Sample uniformly over stored transitions.

        Returns numpy arrays: ``obs [B, *obs_shape]``, ``actions [B, *action_shape]``,
        ``returns [B]`` (n-step discounted reward sum, float32), ``discounts [B]`` (gamma^m, or 0 when
        the episode terminated within the m steps; float32), ``next_obs [B, *obs_shape]``.
        """
        env, slot = self._draw(batch_size)
        c = self.stream_capacity
        win = (slot[:, None] + np.arange(self.n_step)) % c  # [B, n]
        rewards = self.rewards[env[:, None], win]
        flags = self.flags[env[:, None], win]
        ended = (flags & (TERMINATED | TRUNCATED)) != 0
        included = np.ones_like(ended)
        included[:, 1:] = np.cumsum(ended[:, :-1], axis=1) == 0
        m = included.sum(axis=1)
        returns = (rewards * included * self._discounts).sum(axis=1).astype(np.float32)
        last_flags = flags[np.arange(batch_size), m - 1]
        terminal = (last_flags & TERMINATED) != 0
        discounts = np.where(terminal, 0.0, self.gamma**m).astype(np.float32)
        next_obs = self._stack(env, slot + m)
        next_obs[terminal] = 0
        out = {
            "obs": self._stack(env, slot),
            "actions": self.actions[env, slot % c],
            "returns": returns,
            "discounts": discounts,
            "next_obs": next_obs,
        }
        if self.side is not None:
            out["side"] = self.side[env, slot % c]
            out["next_side"] = self.side[env, (slot + m) % c]
            out["next_side"][terminal] = 0
        return out

    def sample_sequences(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        """Windows of ``length`` consecutive steps of one episode each, for sequence models (world models).

        Start slots are uniform over stored transitions. Returns ``frames [L+1, B, *obs_shape]``
        (``frames[k+1]`` is the observation after ``actions[k]``), ``actions [L, B, ...]``, ``rewards [L, B]``,
        ``terminated [L, B]``, ``mask [L, B]`` (step ``k`` is a real transition of the window's episode whose
        outcome is stored) and ``frame_mask [L, B]`` (``frames[k+1]`` is a real observation: False after the
        episode's end and for the frame after a termination, which is not stored). Masked entries are zeros.
        """
        if length < 1:
            raise RlmError(f"replay: sequence length must be >= 1, got {length}")
        env, start = self._draw(batch_size, lookahead=1)  # the newest slot's successor is not stored yet
        c = self.stream_capacity
        slots = start[:, None] + np.arange(length)  # [B, L] absolute slots of the steps
        flags = self.flags[env[:, None], slots % c]
        newest = self.count[env][:, None] - 1
        stored = slots + 1 <= newest
        is_step = ((flags & TRANSITION) != 0) & (slots <= newest)
        new_episode = np.zeros_like(is_step)
        new_episode[:, 1:] = (flags[:, 1:] & START) != 0
        ended = (flags & (TERMINATED | TRUNCATED)) != 0
        ended_before = np.zeros_like(ended)
        ended_before[:, 1:] = np.cumsum(ended[:, :-1], axis=1) > 0
        terminated = (flags & TERMINATED) != 0
        mask = np.cumprod(is_step & ~new_episode & ~ended_before & (stored | terminated), axis=1).astype(bool)
        frame_mask = mask & ~terminated & stored
        frames = np.zeros((length + 1, batch_size, *self.obs_shape), dtype=self.frames.dtype)
        frames[0] = self._stack(env, start)
        for k in range(length):
            rows = np.flatnonzero(frame_mask[:, k])
            if rows.size:
                frames[k + 1, rows] = self._stack(env[rows], slots[rows, k] + 1)
        actions = np.where(mask.reshape(mask.shape + (1,) * (self.actions.ndim - 2)),
                           self.actions[env[:, None], slots % c], 0)
        return {
            "frames": frames,
            "actions": np.moveaxis(actions, 1, 0).copy(),
            "rewards": np.where(mask, self.rewards[env[:, None], slots % c], 0.0).T.astype(np.float32),
            "terminated": (terminated & mask).T.copy(),
            "mask": mask.T.copy(),
            "frame_mask": frame_mask.T.copy(),
        }
