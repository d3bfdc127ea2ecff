"""DQN (Mnih et al. 2013/2015) with the usual switches: Double (van Hasselt et al. 2016), Dueling
(Wang et al. 2016), n-step returns, Huber loss, Adam or RMSProp, hard or Polyak target updates.

The whole algorithm is in :meth:`DQNAgent._gradient_step` (a batch, the loss's gradients, the optimizer step)
and :meth:`DQNAgent._td_loss` (the TD target and the loss).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.augment import augment_batch_with_offsets, check_augment
from rlmorning.agents.base import AgentSetting, FeedForwardAgent, linear_schedule
from rlmorning.agents.dormant import feature_layer, recycle_dormant_units
from rlmorning.agents.dqn_parts import ReplayRatioMixin, epsilon_greedy, input_scale, mean_metrics, require_discrete_box
from rlmorning.agents.nets.encoders import make_encoder
from rlmorning.agents.nets.side_information import RAM_BYTES, encode_with_map
from rlmorning.agents.optim import FlooredRMSprop, flushing_subnormals
from rlmorning.agents.side_info_heads import SideInformationHeads, check_aux
from rlmorning.checkpointed import Checkpointed
from rlmorning.compiled import CompiledOrEager
from rlmorning.config import check_probability
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer, smallest_int_dtype

_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.Dropout)
"""Layers that act differently in train and eval mode."""


@dataclass
class DQNConfig:
    """DQN hyperparameters; every step count is in environment steps (summed over parallel envs)."""

    encoder: str = "auto"
    """nature | minatar | mlp | ... | auto (by observation shape)"""
    encoder_kwargs: dict = field(default_factory=dict)
    buffer_size: int = 100_000
    batch_size: int = 32
    lr: float = 1e-4
    optimizer: str = "adam"
    """adam | rmsprop"""
    optimizer_eps: float = 1e-8
    gamma: float = 0.99
    n_step: int = 1
    target_update_period: int = 1_000
    tau: float = 1.0
    """1.0 copies the online net every period (hard update); < 1 is a Polyak average every period."""
    train_freq: int = 4
    """Env steps per update round (the replay ratio is batch_size * gradient_steps / train_freq)."""
    gradient_steps: int = 1
    learning_starts: int = 1_000
    eps_start: float = 1.0
    eps_end: float = 0.01
    eps_fraction: float = 0.1
    """Fraction of the run's steps over which epsilon decays linearly."""
    eps_decay_steps: int = 0
    """If > 0, decay over this many steps instead of eps_fraction of the run."""
    eps_decay_start: int = 0
    """Env steps at eps_start before the decay begins (Dopamine waits min_replay_history steps)."""
    double: bool = False
    dueling: bool = False
    loss: str = "huber"
    """huber | mse"""
    max_grad_norm: float = 10.0
    """0 disables gradient-norm clipping."""
    precision: str = "fp32"
    """fp32 | bf16 (bf16 autocast for forward passes; weights and optimizer stay fp32)"""
    augment: str = "none"
    """none | shift | intensity | shift+intensity: DrQ augmentation of each sampled batch's obs and next_obs
    (independently; never when acting): random shift by up to ``augment_pad`` pixels (replicate padding)
    and intensity noise ``1 + augment_intensity * clip(N(0, 1), -2, 2)`` per sample. Image observations only."""
    augment_pad: int = 4
    augment_intensity: float = 0.05
    aux: str = "none"
    """none | hallucination | objects: a training-time head that learns from the Atari console RAM (Atari
    only; the pixel network acts alone). hallucination: a RAM teacher Q-network + a branch of the pixel convs
    regressing its features (Hoffman et al. 2016); objects: a YOLOv2 head predicting the game's objects,
    labelled from RAM (Redmon & Farhadi 2017). Replay then stores each frame's 128 RAM bytes."""
    aux_weight: float = 1.0
    """Weight of the hallucination loss (the teacher's own TD loss has weight 1) or of the YOLO loss. The
    logged ``aux_grad_ratio`` shows how hard the weighted loss pulls on the shared convs beside the TD loss."""
    aux_warmup: int = 0
    """Gradient steps over which the auxiliary loss's weight ramps linearly from 0 to ``aux_weight`` (0: full
    weight from the first update). The heads' early losses dwarf DrQ's small TD loss (``aux_grad_ratio`` ~60 on
    the object head's first updates); a ramp lets the TD signal shape the convs first (measured on Breakout: it
    did not rescue the object head, BENCHMARKS.md). The RAM teacher's own TD loss is not ramped (it does not
    reach the pixel convs)."""
    aux_objectness_prior: float = 0.0
    """``aux: objects``: the object head's initial objectness probability, set through its bias (the
    prior-probability initialisation of Lin et al. 2017). At 0 (the conv's default bias: a first guess of 0.5
    on every cell and anchor) the "no object" loss of the ~all-empty grid dominates the first updates and
    pushes the shared convs toward one output for every state; 0.01 starts the head near the truth instead."""
    aux_input_norm: bool = False
    """``aux: objects``: the object head reads the conv map through a per-sample normalisation (GroupNorm, one
    group, no affine), so scaling the shared features up cannot lower its loss. Without it the head's loss
    inflates the conv features' common, state-independent part (BENCHMARKS.md)."""
    aux_game: str = "auto"
    """The Atari game whose RAM object table labels ``aux: objects``; auto = the run's env."""
    aux_ram_input: str = "bits"
    """bits | bytes: how the RAM teacher reads the 128 bytes (bits: 1,024 binary inputs)."""
    aux_teacher_hidden: list = field(default_factory=lambda: [512, 512])
    """Hidden layer sizes of the RAM teacher's MLP (its last size = the hallucinated feature size)."""
    init: str = "default"
    """default | xavier: the Q-network's initial weights. default = PyTorch's layer defaults; xavier = Glorot
    uniform weights and zero biases in every conv and linear layer (Flax's xavier_uniform, as Dopamine's
    Rainbow/DrQ network)."""
    compile: bool = False
    """Run the TD loss (its forward passes and backward) and the optimizer step through ``torch.compile``
    (Inductor; needs a C++ compiler). Same maths, other float rounding; the first update compiles (seconds,
    logged as ``compile_s``). Where compiling fails it warns once and trains eagerly. Measured on 2 CPU
    cores: ~5% faster updates on MinAtar, none on CartPole, slower on Atari-sized convs (BENCHMARKS.md).
    Not with ``aux``."""
    redo_every: int = 0
    """Gradient steps between two ReDo recyclings (Sokar et al. 2023) of the dormant units of the encoder's
    feature layer (the Linear + ReLU the Q head reads): fresh incoming weights, zero outgoing weights, cleared
    optimizer state; 0 = off. Logged as ``recycled_units`` (the fraction recycled)."""
    redo_threshold: float = 0.0
    """A unit is dormant when its mean |activation| over ``redo_batch`` replay states is at most this fraction of
    the layer's mean (0: zero on every state, a dead ReLU; Dopamine's default)."""
    redo_batch: int = 256
    """Replay states (not augmented) on which the units are scored (Dopamine's statistics batch)."""
    flush_subnormals: bool = True
    """Run the optimizer step with subnormal floats (below ~1.2e-38) flushed to zero, on one thread. The
    running averages of weights that stop getting gradients (dead units) decay into that range, where this CPU
    computes each operation ~50-100x slower: on CartPole's MLP, 45% of one layer's Adam first moments after 6k
    steps; in an atari100k Pong run, 74% of the FC layer's (update 89.5 -> 57.6 ms on one thread). The change
    to the weights is negligible (agents/optim.py); false keeps the CPU's exact subnormal arithmetic (runs
    whose config.yaml predates this key resume with false, as they trained)."""
    memory_format: str = "auto"
    """auto | channels_last | contiguous: layout of conv weights and image inputs (same maths, other
    kernels); auto = channels_last for Atari-sized frames (>= 36 px; the Nature CNN's update is faster so at
    1 and 2 threads: bench/update.py), contiguous for small grids such as MinAtar's 10x10."""


Batch = dict[str, np.ndarray]


class BatchSource(Protocol):
    """Where a DQN's batches come from when not from its replay alone (Dyna-DQN's imagined transitions)."""

    def ready(self, batch_size: int) -> bool:
        """Whether gradient steps may run now."""

    def batch(self, sample_real: Callable[[int], Batch], batch_size: int) -> Batch:
        """One batch in the layout of :meth:`ReplayBuffer.sample`; ``sample_real(n)`` draws real transitions."""


class QNetwork(nn.Module):
    """Encoder followed by a linear Q head, or dueling value/advantage heads."""

    def __init__(self, encoder: nn.Module, num_actions: int, dueling: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.dueling = dueling
        if dueling:
            self.value = nn.Linear(encoder.out_dim, 1)
            self.advantage = nn.Linear(encoder.out_dim, num_actions)
        else:
            self.head = nn.Linear(encoder.out_dim, num_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q_from_features(self.encoder(obs))

    def feature_readers(self) -> list[nn.Linear]:
        """The layers that read the encoder's features (the Q head, or the value and advantage heads)."""
        return [self.value, self.advantage] if self.dueling else [self.head]

    def q_from_features(self, z: torch.Tensor) -> torch.Tensor:
        """Q-values from the encoder's features ``z [B, out_dim]``."""
        if self.dueling:
            adv = self.advantage(z)
            return self.value(z) + adv - adv.mean(dim=1, keepdim=True)
        return self.head(z)


class DQNAgent(ReplayRatioMixin, Checkpointed, FeedForwardAgent):
    """Deep Q-Network agent with its own replay buffer.

    ``batch_source`` (None: replay only) supplies the batches of every gradient step when set."""

    saved = ("online", "target", "optimizer", "env_steps", "updates", "_update_credit", "_last_target_sync", "rng",
             "augment_rng=_aug_generator", "aux", "redo_rng=_redo_generator")
    saved_buffers = ("replay",)
    saved_optional = ("augment_rng", "aux", "redo_rng")
    load_hint = "encoder/env"
    world_model = None
    """None: no generative world model (:class:`~rlmorning.agents.capabilities.HasWorldModel`)."""

    def __init__(self, config: DQNConfig, setting: AgentSetting) -> None:
        """``setting.inference=True`` builds only what acting and inspection need (the networks): no replay
        buffer, no optimizer; such an agent acts and loads checkpoints but cannot learn."""
        observation_space, action_space = setting.observation_space, setting.action_space
        inference, num_envs, seed = setting.inference, setting.num_envs, setting.seed
        require_discrete_box("dqn", observation_space, action_space)
        _validate(config)
        self.config = config
        device = self.device = setting.device
        self.num_actions = int(action_space.n)
        obs_shape = tuple(observation_space.shape)
        encoder = make_encoder(config.encoder, obs_shape, input_scale(observation_space),
                               **config.encoder_kwargs)
        self.online = QNetwork(encoder, self.num_actions, config.dueling)
        if config.init == "xavier":
            xavier_init(self.online)
        self.online = self.online.to(device)
        atari_sized = len(obs_shape) == 3 and min(obs_shape[1:]) >= 36
        self._channels_last = config.memory_format == "channels_last" or (
            config.memory_format == "auto" and atari_sized)
        if self._channels_last:
            self.online = self.online.to(memory_format=torch.channels_last)
        self.target = copy.deepcopy(self.online).requires_grad_(False).eval()
        self.inference = inference
        self.aux: SideInformationHeads | None = None
        """Training-time side-information heads (``aux``); never built for inference, never used to act."""
        if config.aux != "none" and not inference:
            self.aux = SideInformationHeads(
                config.aux, self.online.encoder, obs_shape, self.num_actions, game=config.aux_game,
                weight=config.aux_weight, ram_input=config.aux_ram_input, teacher_hidden=config.aux_teacher_hidden,
                loss=config.loss, double=config.double, objectness_prior=config.aux_objectness_prior,
                input_norm=config.aux_input_norm).to(device)
        self.optimizer: torch.optim.Optimizer | None = None if inference else self._make_optimizer()
        self.replay: ReplayBuffer | None = None if inference else ReplayBuffer(
            config.buffer_size, num_envs, obs_shape, observation_space.dtype, setting.frame_stack,
            action_dtype=smallest_int_dtype(self.num_actions), gamma=config.gamma, n_step=config.n_step,
            seed=seed, side_shape=(RAM_BYTES,) if self.aux is not None else None,
        )
        self.rng = np.random.default_rng(seed + 1)
        decay = config.eps_decay_steps or config.eps_fraction * setting.total_steps
        self._eps_decay = float(decay)
        self.env_steps = 0  # transitions observed
        self.updates = 0  # gradient steps taken
        self._update_credit = 0.0  # update rounds owed (fractional with many envs)
        self._last_target_sync = 0
        self._autocast = config.precision == "bf16"
        self._aug_generator = torch.Generator(device=device)
        self._aug_generator.manual_seed(seed + 2)
        self._redo_generator = torch.Generator(device=device)
        self._redo_generator.manual_seed(seed + 3)
        self._redo_layer = feature_layer(self.online.encoder) if config.redo_every > 0 else None
        if config.augment != "none" and len(obs_shape) != 3:
            raise RlmError(f"config key 'augment' needs image observations [C, H, W], this env gives {obs_shape}")
        self.shared_target = target_is_online(config, num_envs, self.online)
        """Target net == online net at every gradient step (hard update before each step): Q(s') is computed
        once with the online net and the target copy is skipped. Same maths; set False to measure."""
        self.batch_source: BatchSource | None = None
        self._mode_free = not any(isinstance(m, _MODE_DEPENDENT) for m in self.online.modules())
        """No layer acts differently in train and eval mode: acting and learning skip the mode switches."""
        self._compiled_loss: CompiledOrEager | None = None
        """With ``compile``: the compiled TD loss (+ its backward), built at the first update."""
        self._compiled_step: CompiledOrEager | None = None
        """With ``compile``: the compiled optimizer step, built for the optimizer it steps."""
        self._compile_reported = False

    def _set_mode(self, training: bool) -> None:
        """Train mode for gradient steps, eval mode for acting (switched only where it changes anything)."""
        if not self._mode_free and self.online.training != training:
            self.online.train(training)

    def _precision(self) -> contextlib.AbstractContextManager:
        if self._autocast:
            return torch.autocast(self.device.type, torch.bfloat16)
        return contextlib.nullcontext()

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = list(self.online.parameters())
        if self.aux is not None:
            params += [p for p in self.aux.parameters() if p.requires_grad]
        self._trained_params = params
        """What the optimizer steps (the Q-network and any aux heads), listed once for gradient clipping."""
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.lr, eps=c.optimizer_eps, fused=self.device.type in ("cpu", "cuda"))
        # torch's multi-tensor RMSprop, bit-identical, without square roots of zero (slow on CPU: agents/optim.py)
        return FlooredRMSprop(params, lr=c.lr, eps=c.optimizer_eps, alpha=0.95, centered=True)

    def _learner(self) -> tuple[ReplayBuffer, torch.optim.Optimizer]:
        if self.replay is None or self.optimizer is None:
            raise RlmError("this agent was loaded for inference (load_policy): it acts but cannot learn")
        return self.replay, self.optimizer

    # ------------------------------------------------------------------------------------ capabilities
    @property
    def encoder(self) -> nn.Module:
        """The online network's observation encoder (:class:`~rlmorning.agents.capabilities.HasEncoder`)."""
        return self.online.encoder

    # ------------------------------------------------------------------------------------------ acting
    @property
    def epsilon(self) -> float:
        """Exploration rate at the current env step."""
        c = self.config
        return linear_schedule(c.eps_start, c.eps_end, self._eps_decay, self.env_steps - c.eps_decay_start)

    def _obs_tensor(self, obs: np.ndarray) -> torch.Tensor:
        return self._layout(torch.as_tensor(obs, device=self.device))

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self._channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _train_obs(self, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """A replay batch's observations for learning (augmented when ``augment`` is set) and their shift
        offsets ``[B, 2]`` (zeros without a shift)."""
        c = self.config
        x = torch.as_tensor(obs, device=self.device)
        x, shift = augment_batch_with_offsets(x, c.augment, c.augment_pad, c.augment_intensity, self._aug_generator)
        return self._layout(x), shift

    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        """Q-values ``float32 [B, A]`` of the online network for ``obs [B, *obs_shape]``."""
        self._set_mode(False)  # acting and evaluation never use batch statistics (BatchNorm) or dropout
        with torch.inference_mode(), self._precision():
            return self.online(self._obs_tensor(obs)).float()

    def features(self, obs: np.ndarray) -> torch.Tensor:
        """The encoder's output ``float32 [B, out_dim]`` (what the Q head reads) for ``obs [B, *obs_shape]``."""
        self._set_mode(False)
        with torch.inference_mode(), self._precision():
            return self.online.encoder(self._obs_tensor(obs)).float()

    def feature_inputs(self, obs: np.ndarray) -> torch.Tensor:
        """What the encoder's feature layer (:func:`~rlmorning.agents.dormant.feature_layer`) reads for ``obs``:
        ``float32 [B, fan_in]`` (the flattened conv features of a conv encoder)."""
        seen: list[torch.Tensor] = []
        hook = feature_layer(self.online.encoder).register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
        try:
            self.features(obs)
        finally:
            hook.remove()
        return seen[0].float()

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, Any]:
        """Epsilon-greedy actions when exploring, greedy otherwise."""
        if not explore:  # greedy acting never touches the exploration RNG (evaluation must not change training)
            return self.q_values(obs).argmax(dim=1).cpu().numpy(), state
        actions = epsilon_greedy(self.rng, self.epsilon, self.num_actions, obs.shape[0],
                                 lambda: self.q_values(obs).argmax(dim=1).cpu().numpy())
        return actions, state

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        """Store the vector step in replay (rows with ``valid`` False are skipped)."""
        replay, _ = self._learner()
        side = final_side = None
        if self.aux is not None:
            if info is None or "obs_ram" not in info:
                raise RlmError(f"aux: {self.config.aux} needs the console RAM from the training env (info['obs_ram'])")
            side, final_side = info["obs_ram"], info.get("final_ram")
        replay.add(obs, actions, rewards, terminated, truncated, next_obs, valid, side=side, final_side=final_side)
        self._count_observed(len(replay), obs, valid)

    # ---------------------------------------------------------------------------------------- learning
    def update(self, step: int) -> dict[str, float]:
        """Take the gradient steps owed by the replay ratio, then sync the target net when due."""
        c = self.config
        replay, _ = self._learner()
        ready = self.batch_source is None or self.batch_source.ready(c.batch_size)
        metrics = self._owed_gradient_steps(replay.num_sampleable() >= c.batch_size and ready)
        if self._target_sync_due() and not self.shared_target:
            self._sync_target()
        if not metrics:
            return {}
        out = mean_metrics(metrics)
        out["epsilon"] = self.epsilon
        return out

    def _batch(self) -> Batch:
        """A replay batch, or the batch source's batch when there is one."""
        replay, _ = self._learner()
        if self.batch_source is None:
            return replay.sample(self.config.batch_size)
        return self.batch_source.batch(replay.sample, self.config.batch_size)

    def _gradient_step(self) -> dict[str, float]:
        c = self.config
        _, optimizer = self._learner()
        b = self._batch()
        obs, shift = self._train_obs(b["obs"])
        next_obs, _ = self._train_obs(b["next_obs"])
        actions = torch.as_tensor(b["actions"].astype(np.int64), device=self.device)
        returns = torch.as_tensor(b["returns"], device=self.device)
        discounts = torch.as_tensor(b["discounts"], device=self.device)
        self._set_mode(True)
        optimizer.zero_grad(set_to_none=True)
        dead = self._dead_units(obs) if self.updates % DEAD_UNITS_EVERY == 0 else None
        if self.aux is None:
            loss, q = self._loss_and_grads(obs, next_obs, actions, returns, discounts)
            out = {"loss": float(loss.detach()), "q_mean": float(q.detach().mean())}
        else:
            out = self._aux_loss_and_grads(b, obs, next_obs, actions, returns, discounts, shift)
        if dead is not None:
            out["dead_units"] = dead
        if c.max_grad_norm > 0:  # without clipping the norm is not computed (not logged as 0)
            out["grad_norm"] = float(nn.utils.clip_grad_norm_(self._trained_params, c.max_grad_norm, foreach=True))
        self._optimizer_step(optimizer)
        self.updates += 1
        if c.redo_every > 0 and self.updates % c.redo_every == 0:
            out["recycled_units"] = self._recycle_dormant_units()
        if c.compile and not self._compile_reported:
            self._compile_reported = True
            seconds = [f.compile_seconds for f in self.compiled_parts if f.compile_seconds is not None]
            if seconds:
                out["compile_s"] = sum(seconds)
        return out

    def _recycle_dormant_units(self) -> float:
        """ReDo on the feature layer, scored on ``redo_batch`` replay states; returns the fraction recycled."""
        replay, optimizer = self._learner()
        assert self._redo_layer is not None
        states = self._obs_tensor(replay.sample(min(self.config.redo_batch, replay.num_sampleable()))["obs"])
        with torch.no_grad(), self._precision():
            features = self.online.encoder(states)
        count = recycle_dormant_units(self._redo_layer, self.online.feature_readers(), features,
                                      self.config.redo_threshold, optimizer, self._redo_generator, self.config.init)
        return count / self._redo_layer.out_features

    def _dead_units(self, obs: torch.Tensor) -> float:
        """:func:`dead_unit_fraction` of the Q-network's features on the batch's (augmented) states."""
        with torch.no_grad(), self._precision():
            return dead_unit_fraction(self.online.encoder(obs))

    def _td_loss(self, obs: torch.Tensor, next_obs: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor,
                 discounts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The TD loss of a batch and its ``Q(s, a) [B]``: the whole of DQN's maths (``compile`` compiles it)."""
        with self._precision():
            y = self._td_target(returns, discounts, next_obs)
            q = self.online(obs).float().gather(1, actions.unsqueeze(1)).squeeze(1)
        return self._loss_fn(q, y), q

    def _td_target(self, returns: torch.Tensor, discounts: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            if self.shared_target:  # Q_target == Q_online: one forward (Double DQN's argmax gives the max)
                return td_target(returns, discounts, self.online(next_obs).float())
            next_q_target = self.target(next_obs).float()
            next_q_online = self.online(next_obs).float() if self.config.double else None
            return td_target(returns, discounts, next_q_target, next_q_online)

    def _loss_fn(self, q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.smooth_l1_loss(q, y) if self.config.loss == "huber" else F.mse_loss(q, y)

    def _loss_and_grads(self, *batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``_td_loss`` and its backward; compiled (both graphs) with ``compile``."""
        if not self.config.compile:
            loss, q = self._td_loss(*batch)
            loss.backward()
            return loss, q
        if self._compiled_loss is None:
            self._compiled_loss = CompiledOrEager(self._td_loss, "the TD loss", after=lambda out: out[0].backward())
        return self._compiled_loss(*batch)

    def _optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        with flushing_subnormals(self.config.flush_subnormals):
            if not self.config.compile:
                optimizer.step()
                return
            if self._compiled_step is None or self._compiled_step.fn != optimizer.step:  # built for this optimizer
                self._compiled_step = CompiledOrEager(optimizer.step, "the optimizer step", fullgraph=False)
            self._compiled_step()

    @property
    def compiled_parts(self) -> list[CompiledOrEager]:
        """The parts of an update run through ``torch.compile`` so far (empty without ``compile``)."""
        return [f for f in (self._compiled_loss, self._compiled_step) if f is not None]

    def _aux_loss_and_grads(self, b: Batch, obs: torch.Tensor, next_obs: torch.Tensor, actions: torch.Tensor,
                            returns: torch.Tensor, discounts: torch.Tensor, shift: torch.Tensor) -> dict[str, float]:
        """TD loss + the side-information head's loss, one pass through the convs feeding both; backward."""
        assert self.aux is not None
        self.aux.weight = aux_weight_at(self.updates, self.config.aux_weight, self.config.aux_warmup)
        with self._precision():
            y = self._td_target(returns, discounts, next_obs)
            z, fmap = encode_with_map(self.online.encoder, obs)
            q = self.online.q_from_features(z).float().gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = self._loss_fn(q, y)
        out = {"loss": float(loss.detach()), "q_mean": float(q.detach().mean())}
        aux_loss, aux_metrics = self.aux.loss(fmap.float(), b, actions, returns, discounts, shift, self.shared_target)
        out.update(aux_metrics)
        if self.config.aux_warmup > 0:
            out["aux_weight"] = self.aux.weight
        if self.updates % AUX_GRAD_RATIO_EVERY == 0:
            out["aux_grad_ratio"] = aux_grad_ratio(loss, aux_loss, list(self.online.encoder.parameters()))
        (loss + aux_loss).backward()
        return out

    def _sync_target(self) -> None:
        super()._sync_target()
        if self.aux is not None:
            self.aux.sync_target(self.config.tau)

    # ------------------------------------------------------------------------------------- checkpoints
    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        """The declared state (``saved``); with a shared target the online net is saved as the target too."""
        if self.shared_target:  # the target copy was skipped while it equalled the online net
            self._sync_target()
        return super().state_dict(include_buffers)


AUX_GRAD_RATIO_EVERY = 250
"""Gradient steps between two ``aux_grad_ratio`` measurements (each costs two extra partial backward passes)."""


DEAD_UNITS_EVERY = 250
"""Gradient steps between two ``dead_units`` measurements (each costs one encoder forward without grad)."""


def dead_unit_fraction(features: torch.Tensor) -> float:
    """The fraction of feature units (columns of ``features [B, D]``, the encoder's output the Q head reads) that
    are zero, or below, on every state of the batch. Behind a ReLU such a unit gives the Q head nothing and
    passes no gradient back: at 1.0 the Q-values no longer depend on the state, and the TD loss no longer
    reaches the encoder (a "dormant" unit in Sokar et al. 2023's terms, with threshold 0)."""
    return float((features <= 0).all(dim=0).float().mean())


def aux_weight_at(updates: int, weight: float, warmup: int) -> float:
    """The auxiliary loss's weight at gradient step ``updates`` (0-based): ``weight`` ramped linearly over
    ``warmup`` steps, starting above 0 (step 0 of a 4-step ramp has weight/4)."""
    if warmup <= 0:
        return float(weight)
    return float(weight) * min(1.0, (updates + 1) / warmup)


def aux_grad_ratio(td_loss: torch.Tensor, aux_loss: torch.Tensor, shared: list[nn.Parameter]) -> float:
    """How hard the auxiliary loss pulls on the encoder beside the TD loss: the gradient norm of ``aux_loss``
    (already weighted) over that of ``td_loss``, on the encoder parameters the auxiliary loss reaches (the
    convs under the feature map). Leaves ``.grad`` untouched, so training is the same with or without it."""
    g_aux = torch.autograd.grad(aux_loss, shared, retain_graph=True, allow_unused=True)
    reached = [i for i, g in enumerate(g_aux) if g is not None]
    if not reached:
        return 0.0
    g_td = torch.autograd.grad(td_loss, [shared[i] for i in reached], retain_graph=True, allow_unused=True)
    aux_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g_aux[i]) for i in reached]))
    td_norm = torch.linalg.vector_norm(torch.stack(
        [torch.linalg.vector_norm(g) if g is not None else torch.zeros(()) for g in g_td]))
    return float(aux_norm / td_norm.clamp_min(1e-12))


def xavier_init(net: nn.Module) -> None:
    """Glorot-uniform weights and zero biases for every conv and linear layer of ``net`` (in place)."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def td_target(
    returns: torch.Tensor,
    discounts: torch.Tensor,
    next_q_target: torch.Tensor,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """The n-step TD target ``y = R + discount * V(s')`` for batches ``[B]`` and ``[B, A]`` Q-values.

    DQN: ``V(s') = max_a Q_target(s', a)``. Double DQN (``next_q_online`` given):
    ``V(s') = Q_target(s', argmax_a Q_online(s', a))``. ``discount`` is ``gamma**n``, 0 after termination.
    """
    if next_q_online is None:
        next_v = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_v = next_q_target.gather(1, best).squeeze(1)
    return returns + discounts * next_v


def target_is_online(c: DQNConfig, num_envs: int, online: nn.Module) -> bool:
    """True when the target net always equals the online net at a gradient step: a hard update
    (``tau`` 1) at the end of every ``update`` call (``target_update_period`` <= env steps per call), at
    most one gradient step per call, and no layer that acts differently in train and eval mode."""
    one_step_per_call = c.gradient_steps == 1 and num_envs <= c.train_freq
    mode_free = not any(isinstance(m, _MODE_DEPENDENT) for m in online.modules())
    return c.tau >= 1.0 and c.target_update_period <= num_envs and one_step_per_call and mode_free


def _validate(c: DQNConfig) -> None:
    check_augment(c.augment, c.augment_pad, c.augment_intensity)
    check_aux(c.aux, c.aux_weight, c.aux_ram_input, c.aux_game)
    if not 0.0 <= c.aux_objectness_prior < 1.0:
        raise RlmError(f"config key 'aux_objectness_prior' must be in [0, 1), got {c.aux_objectness_prior}")
    if c.aux_objectness_prior > 0 and c.aux != "objects":
        raise RlmError("config key 'aux_objectness_prior' initialises the object head: set aux=objects")
    if c.aux_input_norm and c.aux != "objects":
        raise RlmError("config key 'aux_input_norm' normalises the object head's input: set aux=objects")
    if c.redo_every < 0:
        raise RlmError(f"config key 'redo_every' must be >= 0 gradient steps (0: off), got {c.redo_every}")
    if c.redo_threshold < 0:
        raise RlmError(f"config key 'redo_threshold' must be >= 0, got {c.redo_threshold}")
    if c.redo_batch < 1:
        raise RlmError(f"config key 'redo_batch' must be >= 1, got {c.redo_batch}")
    if c.aux_warmup < 0:
        raise RlmError(f"config key 'aux_warmup' must be >= 0 gradient steps, got {c.aux_warmup}")
    if c.aux_warmup > 0 and c.aux == "none":
        raise RlmError("config key 'aux_warmup' ramps an auxiliary head's loss: set aux=hallucination or aux=objects")
    if c.compile and c.aux != "none":
        raise RlmError(f"config key 'compile' does not support aux: {c.aux} (set compile=false or aux=none)")
    choices = {"optimizer": ("adam", "rmsprop"), "loss": ("huber", "mse"), "precision": ("fp32", "bf16"),
               "memory_format": ("auto", "channels_last", "contiguous"), "init": ("default", "xavier")}
    for key, valid in choices.items():
        if getattr(c, key) not in valid:
            raise RlmError(f"config key '{key}' must be one of {', '.join(valid)}, got '{getattr(c, key)}'")
    for key in ("eps_start", "eps_end", "eps_fraction"):
        check_probability(f"config key '{key}'", getattr(c, key))
    for key in ("eps_decay_start", "eps_decay_steps"):
        if getattr(c, key) < 0:
            raise RlmError(f"config key '{key}' must be >= 0, got {getattr(c, key)}")
    positive = ("buffer_size", "batch_size", "n_step", "train_freq", "gradient_steps", "target_update_period")
    for key in positive:
        if getattr(c, key) < 1:
            raise RlmError(f"config key '{key}' must be >= 1, got {getattr(c, key)}")
    if not 0 < c.tau <= 1:
        raise RlmError(f"config key 'tau' must be in (0, 1], got {c.tau}")
    if not 0 <= c.gamma <= 1:
        raise RlmError(f"config key 'gamma' must be in [0, 1], got {c.gamma}")
    if c.lr <= 0:
        raise RlmError(f"config key 'lr' must be > 0, got {c.lr}")
