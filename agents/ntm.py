"""Supervised sequence learner with a Neural Turing Machine (or LSTM) core: the NTM paper's setting.

The agent plays the NTM tasks (``rlmorning/NTMCopy-v0`` ...) through the shared trainer: ``act`` runs
the core one step and outputs the thresholded predicted bits, the memory flowing through ``state``.
``observe`` collects every episode's inputs and the targets the env reports in ``info``; ``update``
trains on completed sequences, ``batch_size`` at a time, by backpropagation through time from a fresh
state (binary cross-entropy on the scored steps), and logs ``bits_error_per_seq`` (wrong bits per
training sequence, measured on the batch before its gradient step) and ``sequences`` seen.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.base import AgentSetting, linear_schedule
from rlmorning.agents.nets.ntm import NTM, Core, CoreConfig, State, make_core, reset_rows
from rlmorning.agents.optim import FlooredRMSprop
from rlmorning.checkpointed import Checkpointed, Form
from rlmorning.errors import RlmError


@dataclass
class NTMConfig(CoreConfig):
    """NTM/LSTM sequence learner; the core keys are those of :class:`CoreConfig`."""

    batch_size: int = 16
    """completed sequences per gradient step"""
    lr: float = 1e-3
    lr_end: float = 0.0
    """> 0: anneal the learning rate linearly from lr to lr_end over the run's env steps (0: constant)"""
    optimizer: str = "adam"
    """adam | rmsprop (Graves et al.: RMSProp, lr 1e-4, momentum 0.9)"""
    momentum: float = 0.9
    """RMSProp momentum"""
    rmsprop_alpha: float = 0.95
    max_grad_norm: float = 10.0
    """clip the global gradient norm (0 disables)"""
    grad_clip: float = 0.0
    """clip every gradient component to +-this (Graves et al.: 10; 0 disables)"""
    max_pending: int = 4096
    """completed sequences waiting for a gradient step; the oldest are dropped beyond this"""


# ------------------------------------------------------------------------------------------ helpers
def step_info(info: dict | None, key: str, done: np.ndarray) -> np.ndarray | None:
    """The per-env values of ``info[key]`` for the step just taken, or None when absent.

    With same-step autoreset, the rows of finished episodes hold the *reset* info; their step's info
    is in ``info["final_info"]``, which this reads for those rows.
    """
    if not info or key not in info:
        return None
    values = np.array(info[key], copy=True)
    final = info.get("final_info")
    if isinstance(final, dict) and key in final and done.any():
        has = np.asarray(final.get(f"_{key}", done), dtype=bool) & done
        values[has] = np.asarray(final[key])[has]
    return values


def map_leaves(x: Any, leaf: type, fn: Callable[[Any], Any]) -> Any:
    """``x`` with ``fn`` applied to every ``leaf`` instance, also inside dicts, lists and tuples (tuples come back
    as lists); anything else is kept as it is."""
    if isinstance(x, leaf):
        return fn(x)
    if isinstance(x, dict):
        return {k: map_leaves(v, leaf, fn) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [map_leaves(v, leaf, fn) for v in x]
    return x


def to_tensor_tree(x: Any) -> Any:
    """Numpy arrays (also inside lists/dicts) as tensors, so ``torch.load(weights_only=True)`` reads them."""
    return map_leaves(x, np.ndarray, lambda a: torch.from_numpy(np.ascontiguousarray(a)))


def to_numpy_tree(x: Any) -> Any:
    """Inverse of :func:`to_tensor_tree`."""
    return map_leaves(x, torch.Tensor, lambda t: t.cpu().numpy().copy())


def cpu_copy(state: State) -> State:
    """Detached CPU copies of a recurrent state's tensors (for a checkpoint)."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}


class RecurrentStateMixin(Checkpointed):
    """An agent with a memory core (``core``: NTM or LSTM) and its recurrent state, kept across a checkpoint so
    that ``--resume`` continues episodes exactly.

    ``reset_state`` (called only by the trainer) remembers the state it returns; ``state_dict`` saves it
    (``live_state``, with the buffers) beside the declared state; after ``load_state_dict`` the next ``act``
    continues from it, unless ``initial_state`` (evaluation, plots) or ``interrupt_episodes`` (the envs could
    not be restored) comes first.

    Redundant since the trainer checkpoints ``agent_state`` itself (restored exactly when the envs are):
    both copies hold the same tensors, so a resume gives the same result with or without this one.
    """

    core: Core
    device: torch.device
    _live_state: State | None = None
    _resume_state: State | None = None

    @property
    def has_memory(self) -> bool:
        """True when the core is an NTM, whose state holds memory and read/write weightings
        (:class:`~rlmorning.agents.capabilities.HasMemory`)."""
        return isinstance(self.core, NTM)

    @property
    def core_name(self) -> str:
        """The memory core's kind: ntm or lstm (:class:`~rlmorning.agents.capabilities.HasMemory`)."""
        return "ntm" if isinstance(self.core, NTM) else "lstm"

    def fresh_state(self, batch_size: int) -> State:
        """The core's initial state for ``batch_size`` episodes."""
        return self.core.initial_state(batch_size, self.device)

    def initial_state(self, batch_size: int) -> State:
        """Fresh recurrent state for ``batch_size`` episodes (a dict of ``[B, ...]`` tensors)."""
        self._resume_state = None
        return self.fresh_state(batch_size)

    def reset_state(self, state: State, mask: np.ndarray) -> State:
        """Fresh rows where ``mask`` is True (new tensors: callers may keep the old state)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            fresh = self.fresh_state(len(mask))
            state = reset_rows(state, fresh, torch.as_tensor(mask, device=self.device))
        self._live_state = state
        return state

    def _take_resumed(self, state: State, batch: int) -> State:
        resumed, self._resume_state = self._resume_state, None
        if resumed is not None and all(v.shape[0] == batch for v in resumed.values()):
            return {k: v.to(self.device) for k, v in resumed.items()}
        return state

    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        """The declared state; with buffers also the trainer's recurrent state (``live_state``)."""
        out = super().state_dict(include_buffers)
        if include_buffers and self._live_state is not None:
            out["live_state"] = cpu_copy(self._live_state)
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the declared state; the next ``act`` continues from the saved recurrent state, if any."""
        super().load_state_dict(state)
        live = state.get("live_state")
        self._resume_state = dict(live) if live is not None else None
        self._live_state = None


def make_optimizer(params: Any, name: str, lr: float, momentum: float = 0.9,
                   alpha: float = 0.95) -> torch.optim.Optimizer:
    """Adam, or RMSProp with momentum (Graves et al. 2014)."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return FlooredRMSprop(params, lr=lr, momentum=momentum, alpha=alpha)  # torch's, without roots of zero
    raise RlmError(f"config key 'optimizer' must be one of adam, rmsprop, got '{name}'")


def clip_gradients(params: list[nn.Parameter], max_norm: float, value: float) -> float:
    """Componentwise clipping (``value`` > 0), then norm clipping (``max_norm`` > 0); returns the norm."""
    if value > 0:
        nn.utils.clip_grad_value_(params, value)
    if max_norm > 0:
        return float(nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.sqrt(sum((p.grad.detach() ** 2).sum() for p in params if p.grad is not None)))


def _save_partial(partial: list[dict[str, list[np.ndarray]]]) -> list[dict[str, torch.Tensor]]:
    """Each env's unfinished sequence with its steps stacked (``[0]`` float32 when it has none yet)."""
    return to_tensor_tree([{k: (np.stack(v) if v else np.zeros((0,), np.float32)) for k, v in seq.items()}
                           for seq in partial])


def _load_partial(saved: list[dict[str, torch.Tensor]], agent: Any) -> list[dict[str, list[np.ndarray]]]:
    """Inverse of :func:`_save_partial`: each stacked sequence as a list of steps again."""
    return [{k: list(v) for k, v in seq.items()} for seq in to_numpy_tree(saved)]


# --------------------------------------------------------------------------------------------- agent
class NTMAgent(RecurrentStateMixin, Checkpointed):
    """BPTT on the env's targets; ``core=ntm`` (default) or ``core=lstm`` (the paper's baseline).

    A checkpoint holds the networks, optimizer and counters; with buffers also the sequences pending and in
    progress, the rows being skipped and the trainer's recurrent state."""

    saved = ("net", "optimizer", "env_steps", "updates", "sequences", "dropped", "skipped")
    saved_buffers = ("pending", "partial", "skip")
    saved_optional = ("dropped", "skipped")
    saved_forms = {
        "pending": Form(save=lambda pending: to_tensor_tree(list(pending)),
                        load=lambda saved, agent: collections.deque(to_numpy_tree(saved)), empty=collections.deque),
        "partial": Form(save=_save_partial, load=_load_partial, empty=list),
        # absent from checkpoints older than it: no row is skipped (it grows with False rows in observe)
        "skip": Form(save=lambda skip: torch.from_numpy(skip.copy()),
                     load=lambda saved, agent: saved.cpu().numpy().copy(), empty=lambda: np.zeros(0, bool)),
    }
    load_hint = "core/sizes/env"

    def __init__(self, config: NTMConfig, setting: AgentSetting) -> None:
        """``setting.inference`` changes nothing here (this agent holds no replay buffer)."""
        observation_space, action_space = setting.observation_space, setting.action_space
        if not isinstance(action_space, gym.spaces.MultiBinary) or len(action_space.shape) != 1:
            raise RlmError(f"ntm needs a MultiBinary(bits) action space (rlmorning/NTM*-v0), this env has "
                           f"{action_space}")
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
            raise RlmError(f"ntm needs a 1-d Box observation space, this env has {observation_space}")
        _validate(config)
        self.config = config
        device = self.device = setting.device
        self.in_dim = int(observation_space.shape[0])
        self.out_dim = int(action_space.shape[0])
        self.core = make_core(self.in_dim, config).to(device)
        self.head = nn.Linear(self.core.out_dim, self.out_dim).to(device)
        self.net = nn.ModuleDict({"core": self.core, "head": self.head})
        self.optimizer = make_optimizer(self.net.parameters(), config.optimizer, config.lr, config.momentum,
                                        config.rmsprop_alpha)
        self.total_steps = max(1, int(setting.total_steps))
        self.env_steps = 0
        self.updates = 0
        self.sequences = 0  # sequences used in gradient steps
        self.dropped = 0  # sequences dropped because max_pending was exceeded
        self.skipped = 0  # gradient steps skipped because the gradient was not finite
        self.pending: collections.deque[dict[str, np.ndarray]] = collections.deque()
        self.partial: list[dict[str, list[np.ndarray]]] = []
        # rows whose episode began before a checkpoint that did not save it: dropped until they end
        self.skip: np.ndarray = np.zeros(0, bool)
        self._episodes_unknown = False

    # ------------------------------------------------------------------------------------------ acting
    def act(self, obs: np.ndarray, state: State, explore: bool) -> tuple[np.ndarray, State]:
        """One core step; actions are the predicted bits ``int8 [B, bits]`` (logit > 0)."""
        state = self._take_resumed(state, obs.shape[0])
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
            feats, state = self.core(x, state)
            bits = (self.head(feats) > 0).to(torch.int8).cpu().numpy()
        return bits, state

    def q_values(self, obs: np.ndarray) -> None:
        """No Q-values: a supervised learner."""
        return None

    def policy_outputs(self, obs: np.ndarray, state: State) -> dict[str, Any]:
        """The predicted probability of each output bit being 1 in ``state`` for ``obs`` (``bit_probs``,
        ``float32 [B, bits]``; ``rlmorning record`` logs it)."""
        with torch.no_grad():
            feats, _ = self.core(torch.as_tensor(obs, dtype=torch.float32, device=self.device), state)
            return {"bit_probs": torch.sigmoid(self.head(feats)).float().cpu().numpy()}

    def predict(self, inputs: np.ndarray, record: bool = False) -> tuple[np.ndarray, list[State]]:
        """Predicted bits ``int8 [T, B, bits]`` for whole input sequences ``[T, B, in]`` from a fresh state;
        with ``record`` also the state after every step (memory, read/write weightings)."""
        with torch.no_grad():
            xs = torch.as_tensor(inputs, dtype=torch.float32, device=self.device)
            feats, _, states = self.core.forward_sequence(xs, self.fresh_state(xs.shape[1]), record=record)
            bits = (self.head(feats) > 0).to(torch.int8).cpu().numpy()
        return bits, states

    # ----------------------------------------------------------------------------------------- observe
    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        """Append this step's input, target and mask to each env's sequence; finished ones become pending."""
        done = np.asarray(terminated, bool) | np.asarray(truncated, bool)
        targets = step_info(info, "target", done)
        masks = step_info(info, "output_mask", done)
        if targets is None or masks is None:
            raise RlmError("ntm learns from the targets in the env's info ('target', 'output_mask'): use one of "
                           "rlmorning/NTMCopy-v0, NTMRepeatCopy-v0, NTMAssociativeRecall-v0, NTMPrioritySort-v0")
        n = obs.shape[0]
        while len(self.partial) < n:
            self.partial.append({"inputs": [], "targets": [], "mask": []})
        if len(self.skip) < n:
            self.skip = np.concatenate([self.skip, np.full(n - len(self.skip), self._episodes_unknown)])
        self._episodes_unknown = False
        rows = range(n) if valid is None else np.flatnonzero(valid)
        for i in rows:
            if self.skip[i]:  # the start of this episode was not saved: not a whole sequence
                self.skip[i] = not done[i]
                self.env_steps += 1
                continue
            seq = self.partial[i]
            seq["inputs"].append(np.asarray(obs[i], np.float32))
            seq["targets"].append(np.asarray(targets[i], np.int8))
            seq["mask"].append(np.float32(masks[i]))
            self.env_steps += 1
            if done[i]:
                self.pending.append({k: np.stack(v) for k, v in seq.items()})
                self.partial[i] = {"inputs": [], "targets": [], "mask": []}
        while len(self.pending) > self.config.max_pending:
            self.pending.popleft()
            self.dropped += 1

    def interrupt_episodes(self) -> None:
        """Episodes in flight were lost: drop their partial sequences."""
        self.partial = []
        self.skip = np.zeros(0, bool)
        self._episodes_unknown = False
        self._resume_state = None

    # ---------------------------------------------------------------------------------------- learning
    def update(self, step: int) -> dict[str, float]:
        """One gradient step per ``batch_size`` completed sequences waiting."""
        metrics = []
        while len(self.pending) >= self.config.batch_size:
            batch = [self.pending.popleft() for _ in range(self.config.batch_size)]
            metrics.append(self.train_batch(batch))
        if not metrics:
            return {}
        out = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        out["sequences"] = float(self.sequences)
        return out

    def train_batch(self, batch: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """BPTT over a padded batch of sequences from a fresh state; returns loss and error metrics."""
        xs, ys, mask = pad_batch(batch, self.device)
        b = xs.shape[1]
        feats, _, _ = self.core.forward_sequence(xs, self.fresh_state(b))
        logits = self.head(feats)
        bce = F.binary_cross_entropy_with_logits(logits, ys, reduction="none").sum(-1) * mask  # [T, B]
        loss = bce.sum() / (mask.sum() * self.out_dim).clamp_min(1.0)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c = self.config
        grad_norm = clip_gradients(list(self.net.parameters()), c.max_grad_norm, c.grad_clip)
        if c.lr_end > 0:
            lr = linear_schedule(c.lr, c.lr_end, self.total_steps, self.env_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        if math.isfinite(grad_norm):
            self.optimizer.step()
        else:  # a non-finite loss or gradient never reaches the weights
            self.skipped += 1
        self.updates += 1
        self.sequences += b
        with torch.no_grad():
            wrong = (((logits > 0).float() != ys).float().sum(-1) * mask).sum()
        return {
            "loss": float(loss.detach()),
            "cost_per_seq": float(bce.detach().sum()) / b / math.log(2.0),  # the paper's bits per sequence
            "bits_error_per_seq": float(wrong) / b,
            "grad_norm": grad_norm,
        }

    # ------------------------------------------------------------------------------------- checkpoints
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`; saved without sequences, the episodes still running (if the envs are
        restored) lack their start and are dropped until they end."""
        super().load_state_dict(state)
        self._episodes_unknown = "pending" not in state


def pad_batch(batch: list[dict[str, np.ndarray]], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Sequences -> time-major ``inputs [T, B, in]``, ``targets [T, B, out]`` and ``mask [T, B]`` (zero-padded)."""
    t_max = max(len(s["mask"]) for s in batch)
    b = len(batch)
    xs = np.zeros((t_max, b, batch[0]["inputs"].shape[1]), np.float32)
    ys = np.zeros((t_max, b, batch[0]["targets"].shape[1]), np.float32)
    mask = np.zeros((t_max, b), np.float32)
    for j, s in enumerate(batch):
        n = len(s["mask"])
        xs[:n, j], ys[:n, j], mask[:n, j] = s["inputs"], s["targets"], s["mask"]
    return (torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device), torch.from_numpy(mask).to(device))


def _validate(c: NTMConfig) -> None:
    for key in ("batch_size", "max_pending"):
        if getattr(c, key) < 1:
            raise RlmError(f"config key '{key}' must be >= 1, got {getattr(c, key)}")
    if c.lr <= 0:
        raise RlmError(f"config key 'lr' must be > 0, got {c.lr}")
    if c.lr_end < 0:
        raise RlmError(f"config key 'lr_end' must be >= 0 (0: constant lr), got {c.lr_end}")
    if c.max_pending < c.batch_size:
        raise RlmError(f"max_pending ({c.max_pending}) must be >= batch_size ({c.batch_size})")
