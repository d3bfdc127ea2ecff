"""The generative world model: a frame codec plus latent dynamics, trained on real transitions.

:class:`WorldModel` is the one interface: ``update(batch) -> metrics``, ``imagine(start_obs, actions or
policy, horizon)`` and ``as_env(start_obs)`` (a Gymnasium vector env in which an agent can act,
:mod:`rlmorning.agents.imagined_env`). Its parts are chosen by name: ``codec`` (``ae`` | ``vae`` | ``vqvae`` |
``grid-ae``), ``dynamics`` (``gru`` | ``mdn-gru`` | ``conv-gru``, the last on a latent grid), an optional
``adversarial`` PatchGAN term and an optional ``prior`` (``pixelcnn`` over VQ codes); see
:mod:`rlmorning.agents.nets.world_model_nets`. Who trains it on which data is
:class:`rlmorning.agents.wm_trainer.WorldModelTrainer`'s job.

Training (one ``update``): a batch of windows of ``seq_len`` consecutive real steps
(:meth:`ReplayBuffer.sample_sequences`: never crossing an episode's end; steps after it are masked). All
frames are encoded and reconstructed (``recon_loss``, plus the codec's regulariser: ``beta * kl`` for the
VAE, the codebook + commitment loss for the VQ-VAE). From the first frame's latent the dynamics roll out
with the real actions: over the first ``context`` frames they read the encoder's latents of the real frames
(observed history, which lets the recurrent state infer what one frame cannot show, such as Freeway's car
timers), after that *open loop*, feeding their own predicted latents back in (snapped to the codebook for
the VQ-VAE); each predicted latent is decoded and scored against the real next frame (``pred_loss``,
Bernoulli), pulled towards the encoder's latent of that frame (``latent_loss``: squared error, or the
mixture NLL for ``mdn-gru``), and the heads predict the reward (``reward_loss``, MSE;
``reward_nonzero_weight`` scales it on steps with a real non-zero reward, for games whose rewards are
rare) and the termination (``term_loss``, BCE). Training open loop is what makes multi-step predictions hold up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.nets.adversarial import PatchDiscriminator, discriminator_loss, generator_loss
from rlmorning.agents.nets.pixelcnn import PixelCNNPrior
from rlmorning.agents.nets.world_model_nets import make_codec, make_dynamics
from rlmorning.errors import RlmError

if TYPE_CHECKING:
    from rlmorning.agents.imagined_env import ImaginedVectorEnv

PRIORS = ("none", "pixelcnn")
Policy = Callable[[np.ndarray], np.ndarray]
"""``policy(frames uint8 [B, C, H, W]) -> actions [B]`` for :meth:`WorldModel.imagine`."""

class WorldModel(nn.Module):
    """Codec + latent dynamics (+ optional GAN critic and PixelCNN prior) with its own optimizers.

    Frames are ``[..., C, H, W]`` (uint8 or float); with frame stacking the whole stack is one "frame".
    ``adversarial > 0`` adds a PatchGAN critic on decoded frames (its generator term weighted by
    ``adversarial``); ``prior="pixelcnn"`` (``vqvae`` codec only) fits a PixelCNN over the code grid of
    real frames, to sample start frames (:meth:`sample_frames`) and score frames (:meth:`frame_log_prob`).
    ``context``: observed frames at the start of each training window and of the k-step evaluation (the
    dynamics read their real latents before predicting open loop; 1 = predict from a single frame).
    """

    def __init__(self, obs_shape: tuple[int, ...], num_actions: int, *, codec: str = "vae", dynamics: str = "gru",
                 latent_dim: int = 32, codec_channels: int = 16, hidden: int = 256, beta: float = 0.1,
                 lr: float = 1e-3, input_scale: float = 1.0, latent_weight: float = 1.0,
                 reward_weight: float = 1.0, reward_nonzero_weight: float = 1.0, term_weight: float = 1.0,
                 max_grad_norm: float = 100.0, adversarial: float = 0.0, prior: str = "none",
                 codec_kwargs: dict | None = None, dynamics_kwargs: dict | None = None,
                 prior_kwargs: dict | None = None, frame_skip: bool = False, context: int = 1,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if isinstance(context, bool) or not isinstance(context, int) or context < 1:
            raise RlmError(f"config key 'context' must be an integer >= 1 (observed frames), got {context!r}")
        self.context = context
        if len(obs_shape) != 3:
            raise RlmError(f"world models need image observations [C, H, W], got shape {tuple(obs_shape)}")
        if prior not in PRIORS:
            raise RlmError(f"unknown world-model prior '{prior}'. Valid: {', '.join(PRIORS)}")
        if adversarial < 0:
            raise RlmError(f"config key 'adversarial' must be >= 0, got {adversarial}")
        if not reward_nonzero_weight > 0:
            raise RlmError(f"config key 'reward_nonzero_weight' must be > 0, got {reward_nonzero_weight}")
        self.reward_nonzero_weight = float(reward_nonzero_weight)
        self.obs_shape = tuple(int(s) for s in obs_shape)
        self.num_actions = int(num_actions)
        self.input_scale = float(input_scale)
        self.codec_name, self.dynamics_name, self.prior_name = codec, dynamics, prior
        self.codec = make_codec(codec, obs_shape, latent_dim=latent_dim, channels=codec_channels,
                                input_scale=input_scale, **(codec_kwargs or {}))
        latent_size = int(getattr(self.codec, "latent_size", latent_dim))
        self.dyn = make_dynamics(dynamics, latent_size, num_actions, codec=self.codec, hidden=hidden,
                                 **(dynamics_kwargs or {}))
        self.beta = beta
        self.reg_weight = beta if getattr(self.codec, "reg_uses_beta", True) else 1.0
        self.weights = {"latent": latent_weight, "reward": reward_weight, "term": term_weight}
        self.max_grad_norm = max_grad_norm
        self.adversarial = float(adversarial)
        # frame_skip: predicted logits += conv3x3(previous frame), so the dynamics learn changes on top of a copy
        self.frame_skip = (nn.Conv2d(self.obs_shape[0], self.obs_shape[0], 3, padding=1) if frame_skip else None)
        if self.frame_skip is not None:  # starts as the plain model; learns how much of the last frame to keep
            nn.init.zeros_(self.frame_skip.weight)
            nn.init.zeros_(self.frame_skip.bias)
        self.dyn_state_size = int(getattr(self.dyn, "hidden", hidden))
        self.critic = PatchDiscriminator(self.obs_shape[0]) if adversarial > 0 else None
        self.prior: PixelCNNPrior | None = None
        if prior == "pixelcnn":
            if not hasattr(self.codec, "codes"):
                raise RlmError(f"prior 'pixelcnn' models discrete codes: use codec 'vqvae', not '{codec}'")
            self.prior = PixelCNNPrior(self.codec.num_codes, tuple(self.codec.grid), **(prior_kwargs or {}))
        self.device = torch.device(device)
        self.to(self.device)
        model_params = [p for n, p in self.named_parameters() if not n.startswith("critic.")]
        self.optimizer = torch.optim.Adam(model_params, lr=lr)
        self.critic_optimizer = (torch.optim.Adam(self.critic.parameters(), lr=lr, betas=(0.5, 0.999))
                                 if self.critic is not None else None)
        self.updates = 0

    def _t(self, x: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, device=self.device)
        return t if dtype is None else t.to(dtype)

    def _target(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.float() * self.input_scale

    def _predict_logits(self, zhat: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        """Logits of a predicted frame: decoded latent, plus the skip from the previous frame when enabled."""
        logits = self.codec.decode(zhat)
        if self.frame_skip is not None and prev is not None:
            logits = logits + self.frame_skip(prev)
        return logits

    def _split(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The imagination state is the GRU state, with the previous frame (flattened) appended for frame_skip."""
        if self.frame_skip is None:
            return h, None
        n = self.dyn_state_size
        return h[:, :n], h[:, n:].reshape(h.shape[0], *self.obs_shape)

    def _join(self, h: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:
        if self.frame_skip is None or prev is None:
            return h
        return torch.cat([h, prev.flatten(1)], dim=1)

    def _snap(self, z: torch.Tensor) -> torch.Tensor:
        """Keep predicted latents on the codec's latent set (VQ codes), straight-through for gradients."""
        snap = getattr(self.codec, "snap", None)
        return z if snap is None else z + (snap(z) - z).detach()

    # -------------------------------------------------------------------------------------- training
    def losses(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of a :meth:`ReplayBuffer.sample_sequences` batch and its parts (see the module docstring)."""
        frames = self._t(batch["frames"])
        actions = self._t(batch["actions"], torch.long)
        rewards = self._t(batch["rewards"], torch.float32)
        terminated = self._t(batch["terminated"], torch.float32)
        reward_w = torch.where(rewards != 0, self.reward_nonzero_weight, 1.0)
        mask = self._t(batch["mask"], torch.float32)
        fmask = self._t(batch.get("frame_mask", batch["mask"]), torch.float32)
        length, b = actions.shape
        flat = frames.reshape(-1, *self.obs_shape)
        target = self._target(flat)
        z, mu, reg = self.codec.encode(flat)
        frame_mask = torch.cat([torch.ones(1, b, device=self.device), fmask]).reshape(-1)
        n_frames = frame_mask.sum().clamp(min=1)
        recon_logits = self.codec.decode(z)
        recon = F.binary_cross_entropy_with_logits(recon_logits, target, reduction="none")
        recon_loss = (recon.flatten(1).sum(1) * frame_mask).sum() / n_frames
        reg_loss = (reg * frame_mask).sum() / n_frames
        z = z.view(length + 1, b, -1)
        mu = mu.view(length + 1, b, -1)
        target = target.view(length + 1, b, *self.obs_shape)
        h = self.dyn.initial(z[0])
        zin = z[0]
        latent_nll = getattr(self.dyn, "latent_loss", None)
        prev = target[0]
        pred, lat, rew, term = [], [], [], []
        for k in range(length):
            h, zhat, r, tl = self.dyn(zin, actions[k], h)
            zhat = self._snap(zhat)
            logits = self._predict_logits(zhat, prev)
            pred.append(F.binary_cross_entropy_with_logits(logits, target[k + 1], reduction="none").flatten(1).sum(1))
            goal = mu[k + 1].detach()
            lat.append(latent_nll(h, goal) if latent_nll is not None else (zhat - goal).pow(2).sum(1))
            rew.append((r - rewards[k]).pow(2) * reward_w[k])
            term.append(F.binary_cross_entropy_with_logits(tl, terminated[k], reduction="none"))
            if k + 1 < self.context:  # frame k+1 is observed: the dynamics read its real latent
                zin, prev = z[k + 1], target[k + 1]
            else:
                zin, prev = zhat, torch.sigmoid(logits)
        n_steps = mask.sum().clamp(min=1)
        n_next = fmask.sum().clamp(min=1)
        parts = {name: (torch.stack(v) * m).sum() / n
                 for name, v, m, n in (("pred_loss", pred, fmask, n_next), ("latent_loss", lat, fmask, n_next),
                                       ("reward_loss", rew, mask, n_steps), ("term_loss", term, mask, n_steps))}
        loss = (recon_loss + self.reg_weight * reg_loss + parts["pred_loss"]
                + self.weights["latent"] * parts["latent_loss"]
                + self.weights["reward"] * parts["reward_loss"] + self.weights["term"] * parts["term_loss"])
        metrics = {"recon_loss": float(recon_loss.detach()), self._reg_name(): float(reg_loss.detach()),
                   **{k: float(v.detach()) for k, v in parts.items()}}
        if self.critic is not None:
            keep = frame_mask > 0
            fake = torch.sigmoid(recon_logits[keep])
            gen = generator_loss(self.critic, fake)
            loss = loss + self.adversarial * gen
            metrics["gan_g_loss"] = float(gen.detach())
            self._critic_batch = (target.reshape(-1, *self.obs_shape)[keep].detach(), fake.detach())
        if self.prior is not None:
            with torch.no_grad():
                codes = self.codec.codes(flat[frame_mask > 0])
            prior_loss = self.prior.loss(codes)
            loss = loss + prior_loss
            metrics["prior_nll"] = float(prior_loss.detach())
        metrics["model_loss"] = float(loss.detach())
        return loss, metrics

    def window(self, horizon: int) -> int:
        """Steps a window needs to score ``horizon`` open-loop predictions after the observed frames."""
        return horizon + self.context - 1

    def check_seq_len(self, seq_len: int, prefix: str = "") -> None:
        """Refuse training windows too short to hold the observed frames and one prediction (``prefix``: how
        the config names the keys, e.g. ``model.``)."""
        if self.context > seq_len:
            raise RlmError(f"config key '{prefix}context' ({self.context}) must be <= {prefix}seq_len ({seq_len}): "
                           "training windows must hold the observed frames and at least one prediction")

    def _reg_name(self) -> str:
        return {"vae": "kl", "vqvae": "vq_loss"}.get(self.codec_name, "reg_loss")

    def update(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimizer step on a sequence batch (and one critic step when adversarial); the loss parts."""
        self.train()
        loss, metrics = self.losses(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.max_grad_norm > 0:
            nn.utils.clip_grad_norm_(self.optimizer.param_groups[0]["params"], self.max_grad_norm)
        self.optimizer.step()
        if self.critic is not None and self.critic_optimizer is not None:
            real, fake = self._critic_batch
            d_loss = discriminator_loss(self.critic, real, fake)
            self.critic_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            self.critic_optimizer.step()
            metrics["gan_d_loss"] = float(d_loss.detach())
            del self._critic_batch
        self.updates += 1
        return metrics

    # ------------------------------------------------------------------------------------- the prior
    @torch.no_grad()
    def sample_frames(self, n: int, temperature: float = 1.0, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
        """``n`` plausible frames (env dtype) sampled from the PixelCNN prior and decoded."""
        if self.prior is None:
            raise RlmError("this world model has no prior: train it with prior=pixelcnn (codec vqvae)")
        self.eval()
        codes = self.prior.sample(n, temperature=temperature, generator=generator).to(self.device)
        return self._to_frames(torch.sigmoid(self.codec.decode_codes(codes)))

    @torch.no_grad()
    def frame_log_prob(self, frames: Any) -> torch.Tensor:
        """Log-probability (nats) of frames' code grids under the PixelCNN prior, ``[B]``."""
        if self.prior is None:
            raise RlmError("this world model has no prior: train it with prior=pixelcnn (codec vqvae)")
        self.eval()
        return self.prior.log_prob(self.codec.codes(self._t(frames)))

    # ------------------------------------------------------------------------------------- imagining
    def _to_frames(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities -> observations in the env's dtype (0/1 planes; 0..255 for grey frames)."""
        if self.input_scale == 1.0:
            return (probs > 0.5).to(torch.uint8)
        return (probs / self.input_scale).round().clamp(0, 255).to(torch.uint8)

    @torch.no_grad()
    def start(self, start_obs: Any, past_actions: Any | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(latent, recurrent state)`` after observing real frames (posterior means).

        ``start_obs`` is ``[B, C, H, W]`` (one frame) or an observed history ``[T, B, C, H, W]`` with the
        ``past_actions [T-1, B]`` taken between its frames: the dynamics read the frames' latents in turn
        (as over the ``context`` frames in training), and the state is the one after the last frame."""
        self.eval()
        frames = self._t(start_obs)
        if frames.dim() == len(self.obs_shape) + 1:
            frames = frames[None]
        if frames.dim() != len(self.obs_shape) + 2:
            raise RlmError(f"start frames must be [B, {', '.join(map(str, self.obs_shape))}] or [T, B, ...], got "
                           f"{tuple(frames.shape)}")
        steps = frames.shape[0] - 1
        acts = None
        if steps:
            if past_actions is None:
                raise RlmError(f"{steps + 1} observed frames need the {steps} actions taken between them "
                               "(past_actions)")
            acts = self._t(past_actions, torch.long)
            if tuple(acts.shape) != (steps, frames.shape[1]):
                raise RlmError(f"past_actions must be [{steps}, {frames.shape[1]}], got {tuple(acts.shape)}")
        _, mu, _ = self.codec.encode(frames.flatten(0, 1), sample=False)
        mu = mu.view(frames.shape[0], frames.shape[1], -1)
        h = self.dyn.initial(mu[0])
        for t in range(steps):
            h, _, _, _ = self.dyn(mu[t], acts[t], h)
        return mu[-1], self._join(h, self._target(frames[-1]))

    @torch.no_grad()
    def step_latent(self, z: torch.Tensor, h: torch.Tensor, actions: Any
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step: ``(next latent, state, frame probabilities, reward, termination probability)``."""
        h, prev = self._split(h)
        h, zhat, r, tl = self.dyn(z, self._t(actions, torch.long), h)
        zhat = self._snap(zhat)
        probs = torch.sigmoid(self._predict_logits(zhat, prev))
        return zhat, self._join(h, probs), probs, r, torch.sigmoid(tl)

    @torch.no_grad()
    def imagine(self, start_obs: Any, actions: Any | Policy, horizon: int | None = None,
                binary: bool = False, past_actions: Any | None = None) -> dict[str, torch.Tensor]:
        """Open-loop rollout from real frames ``start_obs [B, C, H, W]`` (or from the last frame of an observed
        history ``[T, B, C, H, W]`` with its ``past_actions [T-1, B]``, see :meth:`start`).

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
        z, h = self.start(start_obs, past_actions)
        cur = self._t(start_obs)
        cur = cur[-1] if cur.dim() == len(self.obs_shape) + 2 else cur
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

    def as_env(self, start_obs: Any | None, num_envs: int | None = None, horizon: int = 50,
               seed: int | None = None) -> ImaginedVectorEnv:
        """A Gymnasium vector env that steps this model; each reset draws start frames from ``start_obs``
        (or from the PixelCNN prior when ``start_obs`` is None)."""
        from rlmorning.agents.imagined_env import ImaginedVectorEnv  # noqa: PLC0415 (the env steps this model)

        return ImaginedVectorEnv(self, start_obs, num_envs=num_envs, horizon=horizon, seed=seed)

    # ------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def kstep_metrics(self, batch: dict[str, Any], ks: tuple[int, ...] | None = None) -> dict[str, Any]:
        """Open-loop k-step quality on real windows (``ReplayBuffer.sample_sequences``) with the real actions.

        The first ``context`` frames of each window are observed (:meth:`start`); from the last of them
        (frame ``c - 1``) the model predicts open loop. Per-cell accuracy of the binarised prediction of
        frame ``c - 1 + k`` vs the real one (``acc[k-1]``), the copy-last-frame baseline (the last observed
        frame as the guess), and the reward-sign accuracy over all valid predicted steps (sign of the
        rounded predicted reward vs the real one; ``reward_nonzero_acc`` counts only steps with a real
        non-zero reward, nan when there are none), and the mean predicted (unrounded) and real reward over
        those steps (``reward_pred_mean`` / ``reward_real_mean``: the reward head's calibration, which a
        Q-learning target from imagined steps depends on). Windows need at least ``context`` steps.
        """
        c = self.context
        frames = self._t(batch["frames"])
        actions = self._t(batch["actions"], torch.long)
        if actions.shape[0] < c:
            raise RlmError(f"k-step windows of {actions.shape[0]} steps are too short for context {c}")
        mask = self._t(batch["mask"], torch.bool)[c - 1:]
        fmask = self._t(batch.get("frame_mask", batch["mask"]), torch.bool)[c - 1:]
        out = self.imagine(frames[:c], actions[c - 1:], binary=True, past_actions=actions[:c - 1])
        pred = out["frames"]
        real = frames[c:].to(pred.dtype)
        m = fmask.float()
        denom = m.sum(1).clamp(min=1)
        acc = ((pred == real).float().flatten(2).mean(2) * m).sum(1) / denom
        copy = ((frames[c - 1].to(pred.dtype)[None] == real).float().flatten(2).mean(2) * m).sum(1) / denom
        rewards = self._t(batch["rewards"], torch.float32)[c - 1:]
        r_real = torch.sign(rewards)
        r_pred = torch.sign(torch.round(out["rewards"]))
        hit = (r_pred == r_real).float()
        nonzero = (r_real != 0) & mask
        ms = mask.float()
        n = ms.sum().clamp(min=1)
        return {
            "acc": acc.cpu().numpy(), "copy_acc": copy.cpu().numpy(), "valid": m.sum(1).cpu().numpy(),
            "reward_sign_acc": float((hit * ms).sum() / n),
            "reward_nonzero_acc": float(hit[nonzero].mean()) if nonzero.any() else float("nan"),
            "reward_pred_mean": float((out["rewards"].float() * ms).sum() / n),
            "reward_real_mean": float((rewards * ms).sum() / n),
        }

