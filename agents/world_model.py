"""Generative world models: a frame codec plus latent dynamics, trained on real transitions.

* :class:`WorldModel` is the one interface: ``update(batch) -> metrics``, ``imagine(start_obs, actions or
  policy, horizon)`` and ``as_env(start_obs)`` (a Gymnasium vector env in which an agent can act).
  Its parts are chosen by name: ``codec`` (``ae`` | ``vae``) and ``dynamics`` (``gru``), see
  :mod:`rlmorning.agents.nets.world_model_nets`.
* :class:`WorldModelAgent` (``rlmorning train worldmodel``) acts with a uniformly random policy, stores
  the real transitions in a :class:`SequenceBuffer` and trains the model in ``update``. Every
  ``kstep_every`` model updates its metrics also hold the open-loop k-step per-cell accuracy next to
  the copy-last-frame baseline (``kstep_acc_K``, ``copy_acc_K``) and the reward-sign accuracy.

Training (one ``update``): a batch of windows of ``seq_len`` consecutive real steps (never crossing an
episode's end; steps after it are masked). All frames are encoded and reconstructed (``recon_loss``, plus
``beta * kl`` for the VAE). From the first frame's latent the dynamics roll out *open loop* with the real
actions, feeding their own predicted latents back in; each predicted latent is decoded and scored against
the real next frame (``pred_loss``, Bernoulli), pulled towards the encoder's mean of that frame
(``latent_loss``), and the heads predict the reward (``reward_loss``, MSE) and the termination
(``term_loss``, BCE). Training open loop is what makes multi-step predictions hold up.

Why a sequence buffer and not :class:`rlmorning.replay.ReplayBuffer`: ``ReplayBuffer.sample`` returns
single transitions at random positions, and the dynamics need windows of consecutive steps of one
episode. :class:`SequenceBuffer` is a small per-env ring of transitions with episode ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import nn

from rlmorning.agents.base import FeedForwardAgent, load_module_state
from rlmorning.agents.nets.world_model_nets import make_codec, make_dynamics
from rlmorning.errors import RlmError

Policy = Callable[[np.ndarray], np.ndarray]
"""``policy(frames uint8 [B, C, H, W]) -> actions [B]`` for :meth:`WorldModel.imagine`."""


# ------------------------------------------------------------------------------------------------ buffer
class SequenceBuffer:
    """Per-env rings of real transitions that can return windows of consecutive steps of one episode.

    Each slot holds ``obs``, ``action``, ``reward``, ``terminated`` and ``next_obs`` (the true next
    observation, also at episode ends) with the slot's episode id and step index within the episode.
    """

    def __init__(self, capacity: int, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: Any,
                 seed: int = 0) -> None:
        self.num_envs = num_envs
        self.stream_capacity = max(2, capacity // num_envs)
        shape = (num_envs, self.stream_capacity)
        self.obs = np.zeros(shape + tuple(obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros_like(self.obs)
        self.actions = np.zeros(shape, np.int64)
        self.rewards = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, bool)
        self.episode = np.full(shape, -1, np.int64)
        self.index = np.zeros(shape, np.int64)
        self.count = np.zeros(num_envs, np.int64)  # transitions written per stream
        self.cur_episode = np.arange(num_envs, dtype=np.int64)
        self.cur_index = np.zeros(num_envs, np.int64)
        self.next_episode = np.array(num_envs, np.int64)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return int(np.minimum(self.count, self.stream_capacity).sum())

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
            truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None) -> None:
        for e in range(self.num_envs):
            if valid is not None and not valid[e]:
                continue
            s = self.count[e] % self.stream_capacity
            self.obs[e, s] = obs[e]
            self.next_obs[e, s] = next_obs[e]
            self.actions[e, s] = int(np.asarray(actions[e]))
            self.rewards[e, s] = float(rewards[e])
            self.terminated[e, s] = bool(terminated[e])
            self.episode[e, s] = self.cur_episode[e]
            self.index[e, s] = self.cur_index[e]
            self.count[e] += 1
            self.cur_index[e] += 1
            if terminated[e] or truncated[e]:
                self._new_episode(e)

    def _new_episode(self, e: int) -> None:
        self.cur_episode[e] = int(self.next_episode)
        self.next_episode += 1
        self.cur_index[e] = 0

    def interrupt_episodes(self) -> None:
        """The episodes in progress were lost: the next steps start new episodes."""
        for e in range(self.num_envs):
            self._new_episode(e)

    def sample(self, batch_size: int, length: int) -> dict[str, np.ndarray]:
        """Windows of ``length`` steps: ``frames [L+1, B, *obs]`` (``frames[k+1]`` follows ``actions[k]``),
        ``actions``, ``rewards``, ``terminated`` and ``mask [L, B]`` (False after the episode's end or
        where the window runs past the stored data)."""
        filled = np.minimum(self.count, self.stream_capacity)
        if filled.sum() == 0:
            raise RlmError("the world model's sequence buffer is empty")
        env = self.rng.choice(self.num_envs, size=batch_size, p=filled / filled.sum())
        # slot offset from the oldest stored slot of the stream
        oldest = np.where(self.count > self.stream_capacity, self.count % self.stream_capacity, 0)
        start = (oldest[env] + (self.rng.random(batch_size) * filled[env]).astype(np.int64)) % self.stream_capacity
        idx = (start[:, None] + np.arange(length)) % self.stream_capacity  # [B, L]
        ep = self.episode[env[:, None], idx]
        ind = self.index[env[:, None], idx]
        same = (ep == ep[:, :1]) & (ind == ind[:, :1] + np.arange(length)) & (ep >= 0)
        ended = np.zeros_like(same)
        ended[:, 1:] = np.cumsum(self.terminated[env[:, None], idx][:, :-1], axis=1) > 0
        mask = np.cumprod(same & ~ended, axis=1).astype(bool)
        frames = np.concatenate([self.obs[env, start][None], np.moveaxis(self.next_obs[env[:, None], idx], 1, 0)])
        return {
            "frames": frames,
            "actions": self.actions[env[:, None], idx].T.copy(),
            "rewards": self.rewards[env[:, None], idx].T.copy(),
            "terminated": (self.terminated[env[:, None], idx] & mask).T.copy(),
            "mask": mask.T.copy(),
        }

    def state_dict(self) -> dict[str, Any]:
        names = ("obs", "next_obs", "actions", "rewards", "terminated", "episode", "index", "count",
                 "cur_episode", "cur_index", "next_episode")
        out: dict[str, Any] = {n: torch.from_numpy(np.asarray(getattr(self, n))) for n in names}
        out["rng"] = self.rng.bit_generator.state
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            if name == "rng":
                self.rng.bit_generator.state = value
                continue
            src = value.numpy()
            dst = np.asarray(getattr(self, name))
            if src.shape != dst.shape:
                raise RlmError(f"world-model buffer in checkpoint has {name} {src.shape}, this run expects "
                               f"{dst.shape} (different buffer_size, num_envs or env?)")
            setattr(self, name, src.copy())


# ------------------------------------------------------------------------------------------------- model
class WorldModel(nn.Module):
    """Codec + latent dynamics with its own optimizer. Frames are ``[..., C, H, W]`` (uint8 or float)."""

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, *, codec: str = "vae", dynamics: str = "gru",
                 latent_dim: int = 32, codec_channels: int = 16, hidden: int = 256, beta: float = 0.1,
                 lr: float = 1e-3, input_scale: float = 1.0, latent_weight: float = 1.0,
                 reward_weight: float = 1.0, term_weight: float = 1.0, max_grad_norm: float = 100.0,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if len(obs_shape) != 3:
            raise RlmError(f"world models need image observations [C, H, W], got shape {tuple(obs_shape)}")
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.num_actions = int(num_actions)
        self.input_scale = float(input_scale)
        self.codec_name, self.dynamics_name = codec, dynamics
        self.codec = make_codec(codec, obs_shape, latent_dim=latent_dim, channels=codec_channels,
                                input_scale=input_scale)
        self.dyn = make_dynamics(dynamics, latent_dim, num_actions, hidden=hidden)
        self.beta = beta
        self.weights = {"latent": latent_weight, "reward": reward_weight, "term": term_weight}
        self.max_grad_norm = max_grad_norm
        self.device = torch.device(device)
        self.to(self.device)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=lr)
        self.updates = 0

    def _t(self, x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, device=self.device)
        return t if dtype is None else t.to(dtype)

    def _target(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float() * self.input_scale

    # -------------------------------------------------------------------------------------- training
    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of a :meth:`SequenceBuffer.sample` batch and its parts (see the module docstring)."""
        frames = self._t(batch["frames"])
        actions = self._t(batch["actions"], torch.long)
        rewards = self._t(batch["rewards"], torch.float32)
        terminated = self._t(batch["terminated"], torch.float32)
        mask = self._t(batch["mask"], torch.float32)
        length, b = actions.shape
        flat = frames.reshape(-1, *self.obs_shape)
        target = self._target(flat)
        z, mu, kl = self.codec.encode(flat)
        frame_mask = torch.cat([torch.ones(1, b, device=self.device), mask]).reshape(-1)
        n_frames = frame_mask.sum().clamp(min=1)
        recon = F.binary_cross_entropy_with_logits(self.codec.decode(z), target, reduction="none")
        recon_loss = (recon.flatten(1).sum(1) * frame_mask).sum() / n_frames
        kl_loss = (kl * frame_mask).sum() / n_frames
        z = z.view(length + 1, b, -1)
        mu = mu.view(length + 1, b, -1)
        target = target.view(length + 1, b, *self.obs_shape)
        h = self.dyn.initial(z[0])
        zin = z[0]
        pred, lat, rew, term = [], [], [], []
        for k in range(length):
            h, zhat, r, tl = self.dyn(zin, actions[k], h)
            logits = self.codec.decode(zhat)
            pred.append(F.binary_cross_entropy_with_logits(logits, target[k + 1], reduction="none").flatten(1).sum(1))
            lat.append((zhat - mu[k + 1].detach()).pow(2).sum(1))
            rew.append((r - rewards[k]).pow(2))
            term.append(F.binary_cross_entropy_with_logits(tl, terminated[k], reduction="none"))
            zin = zhat
        n_steps = mask.sum().clamp(min=1)
        parts = {name: (torch.stack(v) * mask).sum() / n_steps
                 for name, v in (("pred_loss", pred), ("latent_loss", lat), ("reward_loss", rew), ("term_loss", term))}
        loss = (recon_loss + self.beta * kl_loss + parts["pred_loss"] + self.weights["latent"] * parts["latent_loss"]
                + self.weights["reward"] * parts["reward_loss"] + self.weights["term"] * parts["term_loss"])
        metrics = {"recon_loss": float(recon_loss.detach()), "kl": float(kl_loss.detach()),
                   **{k: float(v.detach()) for k, v in parts.items()}, "model_loss": float(loss.detach())}
        return loss, metrics

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimizer step on a sequence batch; returns the loss parts."""
        self.train()
        loss, metrics = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        return metrics

    # ------------------------------------------------------------------------------------- imagining
    def _to_frames(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities -> observations in the env's dtype (0/1 planes; 0..255 for grey frames)."""
        if self.input_scale == 1.0:
            return (probs > 0.5).to(torch.uint8)
        return (probs / self.input_scale).round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def start(self, start_obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latent, recurrent state)`` of start frames ``[B, C, H, W]`` (the posterior mean)."""
        self.eval()
        _, mu, _ = self.codec.encode(self._t(start_obs), sample=False)
        return mu, self.dyn.initial(mu)

    @torch.no_grad()
    def step_latent(self, z: torch.Tensor, h: torch.Tensor, actions: Any
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step: ``(next latent, state, frame probabilities, reward, termination probability)``."""
        h, zhat, r, tl = self.dyn(z, self._t(actions, torch.long), h)
        return zhat, h, torch.sigmoid(self.codec.decode(zhat)), r, torch.sigmoid(tl)

    @torch.no_grad()
    def imagine(self, start_obs: Any, actions: Any | Policy, horizon: int | None = None,
                binary: bool = False) -> dict[str, torch.Tensor]:
        """Open-loop rollout from real frames ``start_obs [B, C, H, W]``.

        ``actions`` is ``[H, B]`` (e.g. the real actions) or a policy ``policy(frames uint8 [B, C, H, W])
        -> actions [B]`` that sees the imagined (binarised) frames. Returns tensors on the model's device:
        ``frames [H, B, C, H, W]`` (the frames *after* each action: probabilities, or observations in the
        env's dtype when ``binary``), ``rewards [H, B]``, ``terminals [H, B]`` (termination probabilities,
        or bool when ``binary``) and the ``actions [H, B]`` taken. The rollout does not stop at a
        predicted termination: callers mask with ``terminals``.
        """
        policy = actions if callable(actions) else None
        if policy is None:
            acts = self._t(actions, torch.long)
            horizon = acts.shape[0] if horizon is None else horizon
            if acts.shape[0] < horizon:
                raise RlmError(f"imagine: {acts.shape[0]} actions given for horizon {horizon}")
        elif horizon is None:
            raise RlmError("imagine: a policy needs a horizon")
        z, h = self.start(start_obs)
        cur = self._t(start_obs)
        frames, rewards, terms, taken = [], [], [], []
        for t in range(horizon):
            if policy is not None:
                a = self._t(np.asarray(policy(cur.cpu().numpy())), torch.long)
            else:
                a = acts[t]
            z, h, probs, r, pt = self.step_latent(z, h, a)
            cur = self._to_frames(probs)
            frames.append(cur if binary else probs)
            rewards.append(r)
            terms.append(pt > 0.5 if binary else pt)
            taken.append(a)
        return {"frames": torch.stack(frames), "rewards": torch.stack(rewards), "terminals": torch.stack(terms),
                "actions": torch.stack(taken)}

    def as_env(self, start_obs: Any, num_envs: int | None = None, horizon: int = 50,
               seed: int | None = None) -> ImaginedVectorEnv:
        """A Gymnasium vector env that steps this model; each reset draws start frames from ``start_obs``."""
        return ImaginedVectorEnv(self, start_obs, num_envs=num_envs, horizon=horizon, seed=seed)

    # ------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def kstep_metrics(self, batch: dict[str, Any], ks: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Open-loop k-step quality on real windows (``SequenceBuffer.sample``) with the real actions.

        Per-cell accuracy of the binarised prediction of frame ``k`` vs the real one (``acc[k-1]``), the
        copy-last-frame baseline (frame 0 as the guess for frame ``k``), and the reward-sign accuracy over
        all valid steps (sign of the rounded predicted reward vs the real one; ``reward_nonzero_acc``
        counts only steps with a real non-zero reward, nan when there are none).
        """
        frames = self._t(batch["frames"])
        mask = self._t(batch["mask"], torch.bool)
        out = self.imagine(frames[0], batch["actions"], binary=True)
        pred = out["frames"]
        real = frames[1:].to(pred.dtype)
        m = mask.float()
        denom = m.sum(1).clamp(min=1)
        acc = ((pred == real).float().flatten(2).mean(2) * m).sum(1) / denom
        copy = ((frames[0].to(pred.dtype)[None] == real).float().flatten(2).mean(2) * m).sum(1) / denom
        r_real = torch.sign(self._t(batch["rewards"], torch.float32))
        r_pred = torch.sign(torch.round(out["rewards"]))
        hit = (r_pred == r_real).float()
        nonzero = (r_real != 0) & mask
        return {
            "acc": acc.cpu().numpy(), "copy_acc": copy.cpu().numpy(), "valid": m.sum(1).cpu().numpy(),
            "reward_sign_acc": float((hit * m).sum() / m.sum().clamp(min=1)),
            "reward_nonzero_acc": float(hit[nonzero].mean()) if nonzero.any() else float("nan"),
        }


# ----------------------------------------------------------------------------------- imagined vector env
class ImaginedVectorEnv(VectorEnv):
    """The world model as a Gymnasium vector env (next-step autoreset, like Gymnasium's default).

    ``reset`` draws ``num_envs`` start frames from the pool ``start_obs`` (row ``i`` when the pool has
    exactly ``num_envs`` rows, else uniformly at random) and returns them as they are (real frames).
    ``step`` advances the latent dynamics: observations are the binarised decoded frames, rewards the
    reward head, ``terminated`` is the termination head's probability > 0.5 and ``truncated`` is set after
    ``horizon`` imagined steps. Autoreset is *next-step*: the step after an episode's end returns a fresh
    start frame with reward 0 and both flags False (the trainer treats that step as no transition);
    ``metadata['autoreset_mode']`` says so. No same-step ``final_obs`` is provided.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, model: WorldModel, start_obs: Any, num_envs: int | None = None, horizon: int = 50,
                 seed: int | None = None) -> None:
        pool = np.asarray(start_obs.cpu() if isinstance(start_obs, torch.Tensor) else start_obs)
        if pool.ndim != 4 or tuple(pool.shape[1:]) != model.obs_shape:
            raise RlmError(f"as_env: start frames must be [N, {', '.join(map(str, model.obs_shape))}], "
                           f"got {pool.shape}")
        if horizon < 1:
            raise RlmError(f"as_env: horizon must be >= 1, got {horizon}")
        self.model = model
        self.pool = pool
        self.num_envs = int(num_envs or len(pool))
        self.horizon = horizon
        high = 1 if model.input_scale == 1.0 else 255
        self.single_observation_space = gym.spaces.Box(0, high, model.obs_shape, dtype=np.uint8)
        self.single_action_space = gym.spaces.Discrete(model.num_actions)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.rng = np.random.default_rng(seed)
        self._z: torch.Tensor | None = None
        self._h: torch.Tensor | None = None
        self._t = np.zeros(self.num_envs, np.int64)
        self._needs_reset = np.zeros(self.num_envs, bool)

    def _draw(self, n: int) -> np.ndarray:
        if len(self.pool) == self.num_envs and n == self.num_envs:
            return self.pool.astype(np.uint8)
        return self.pool[self.rng.integers(0, len(self.pool), n)].astype(np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self.rng = np.random.default_rng(seed)
        obs = self._draw(self.num_envs)
        self._z, self._h = self.model.start(obs)
        self._t[:] = 0
        self._needs_reset[:] = False
        return obs, {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._z is None or self._h is None:
            raise RlmError("ImaginedVectorEnv: call reset() before step()")
        actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)
        z, h, probs, r, pt = self.model.step_latent(self._z, self._h, actions)
        obs = self.model._to_frames(probs).cpu().numpy()
        rewards = r.float().cpu().numpy().astype(np.float64)
        terminated = pt.cpu().numpy() > 0.5
        self._t += 1
        truncated = (self._t >= self.horizon) & ~terminated
        restart = self._needs_reset.copy()
        if restart.any():
            idx = np.flatnonzero(restart)
            fresh = self._draw(len(idx))
            z0, h0 = self.model.start(fresh)
            z[idx], h[idx] = z0, h0
            obs[idx] = fresh
            rewards[idx] = 0.0
            terminated[idx] = truncated[idx] = False
            self._t[idx] = 0
        self._z, self._h = z, h
        self._needs_reset = terminated | truncated
        return obs, rewards, terminated, truncated, {}


# ------------------------------------------------------------------------------------------------- agent
@dataclass
class WorldModelConfig:
    """World-model training on real experience gathered by a uniformly random policy."""

    codec: str = "vae"
    """ae | vae"""
    dynamics: str = "gru"
    """gru"""
    latent_dim: int = 32
    codec_channels: int = 16
    hidden: int = 256
    """GRU state size."""
    beta: float = 0.1
    """KL weight of the VAE (0 turns it into a noisy autoencoder)."""
    latent_weight: float = 1.0
    reward_weight: float = 1.0
    term_weight: float = 1.0
    lr: float = 1e-3
    max_grad_norm: float = 100.0
    batch_size: int = 32
    """Windows per update."""
    seq_len: int = 8
    """Steps per window (open-loop training horizon)."""
    buffer_size: int = 100_000
    learning_starts: int = 1_000
    train_freq: int = 4
    """Env steps per model update."""
    kstep_every: int = 250
    """Model updates between k-step evaluations (0 disables them)."""
    kstep_horizon: int = 10
    kstep_batch: int = 256


class WorldModelAgent(FeedForwardAgent):
    """Collects real experience with a uniformly random policy and trains a :class:`WorldModel`.

    ``act`` is uniformly random whether exploring or not (so the trainer's evaluation measures a random
    policy's return); ``q_values`` is None.
    """

    def __init__(self, config: WorldModelConfig, observation_space: gym.Space, action_space: gym.Space, *,
                 num_envs: int, frame_stack: int, total_steps: int, device: torch.device, seed: int) -> None:
        if not isinstance(action_space, gym.spaces.Discrete):
            raise RlmError(f"worldmodel needs a discrete action space, this env has {action_space}")
        if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 3:
            raise RlmError(f"worldmodel needs image observations [C, H, W], this env has {observation_space}")
        for key in ("batch_size", "seq_len", "buffer_size", "train_freq", "kstep_horizon", "kstep_batch"):
            if getattr(config, key) < 1:
                raise RlmError(f"config key '{key}' must be >= 1, got {getattr(config, key)}")
        self.config = config
        self.device = device
        self.num_actions = int(action_space.n)
        obs_shape = tuple(observation_space.shape)
        grey = observation_space.dtype == np.uint8 and float(np.max(observation_space.high)) > 1
        scale = 1.0 / 255.0 if grey else 1.0
        c = config
        self.model = WorldModel(
            obs_shape, self.num_actions, codec=c.codec, dynamics=c.dynamics, latent_dim=c.latent_dim,
            codec_channels=c.codec_channels, hidden=c.hidden, beta=c.beta, lr=c.lr, input_scale=scale,
            latent_weight=c.latent_weight, reward_weight=c.reward_weight, term_weight=c.term_weight,
            max_grad_norm=c.max_grad_norm, device=device,
        )
        self.buffer = SequenceBuffer(c.buffer_size, num_envs, obs_shape, observation_space.dtype, seed=seed)
        self.rng = np.random.default_rng(seed + 1)
        self.env_steps = 0
        self._update_credit = 0.0

    @property
    def updates(self) -> int:
        return self.model.updates

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        return self.rng.integers(0, self.num_actions, obs.shape[0]), state

    def q_values(self, obs: np.ndarray) -> None:
        return None

    def interrupt_episodes(self) -> None:
        self.buffer.interrupt_episodes()

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        self.buffer.add(obs, actions, rewards, terminated, truncated, next_obs, valid)
        new = int(obs.shape[0] if valid is None else np.count_nonzero(valid))
        self.env_steps += new
        if len(self.buffer) >= min(self.config.learning_starts, self.config.buffer_size):
            self._update_credit += new / self.config.train_freq

    def train_step(self) -> dict[str, float]:
        """One model update on a fresh batch of windows."""
        return self.model.update(self.buffer.sample(self.config.batch_size, self.config.seq_len))

    def evaluate_model(self, batch: int | None = None, horizon: int | None = None) -> dict[str, float]:
        """k-step metrics on windows from the buffer: ``kstep_acc_K`` / ``copy_acc_K`` for K in 1, 5 and
        the horizon, and the reward-sign accuracies (seen data, not held out)."""
        c = self.config
        horizon = horizon or c.kstep_horizon
        res = self.model.kstep_metrics(self.buffer.sample(batch or c.kstep_batch, horizon))
        out: dict[str, float] = {}
        for k in sorted({1, min(5, horizon), horizon}):
            if res["valid"][k - 1] > 0:
                out[f"kstep_acc_{k}"] = float(res["acc"][k - 1])
                out[f"copy_acc_{k}"] = float(res["copy_acc"][k - 1])
        out["reward_sign_acc"] = res["reward_sign_acc"]
        if not np.isnan(res["reward_nonzero_acc"]):
            out["reward_nonzero_acc"] = res["reward_nonzero_acc"]
        return out

    def update(self, step: int) -> dict[str, float]:
        c = self.config
        metrics: list[dict[str, float]] = []
        if len(self.buffer) > 0:
            while self._update_credit >= 1.0:
                self._update_credit -= 1.0
                metrics.append(self.train_step())
        if not metrics:
            return {}
        out = {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}
        if c.kstep_every > 0 and any((self.updates - i) % c.kstep_every == 0 for i in range(len(metrics))):
            out.update(self.evaluate_model())
        return out

    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.model.optimizer.state_dict(),
            "updates": self.model.updates,
            "env_steps": self.env_steps,
            "update_credit": self._update_credit,
            "rng": self.rng.bit_generator.state,
        }
        if include_buffers:
            state["buffer"] = self.buffer.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_module_state(self.model, state["model"], "codec/env")
        self.model.optimizer.load_state_dict(state["optimizer"])
        self.model.updates = int(state["updates"])
        self.env_steps = int(state["env_steps"])
        self._update_credit = float(state["update_credit"])
        self.rng.bit_generator.state = state["rng"]
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])
