"""Unsupervised skill discovery with InfoGAN's mutual-information objective (DIAYN-style, on a DQN core).

Each episode gets a code ``z`` drawn from the prior p(z) when its first action is chosen (one code per
env of a vector env, from the agent's seeded RNG). A Q-network ``Q(s, z, a)`` acts epsilon-greedily; a
discriminator ``q(z|s)`` learns to tell from visited states which code was active, and the Q-network learns
from the intrinsic reward ``log q(z|s') - log p(z)`` (Gregor et al. 2016; Eysenbach et al. 2018; Chen et al.
2016 for the variational bound). The replay stores ``z`` beside each transition and the reward is computed
at update time from the current discriminator, so old transitions are relabelled as it improves. The env's
(extrinsic) reward is stored and logged, never learned from while discovering skills.

The active codes are the agent's recurrent state (``float32 [B, w]``, NaN until drawn), so the trainer's
``reset_state`` at episode ends is what starts a new skill, and a checkpoint keeps the episodes' codes.
Greedy acting without a fixed skill uses skill ``i % K`` for row ``i`` (evaluation episode ``i``) and draws
nothing from the training RNG. ``set_skill(k)`` fixes one skill (``record --skill``, ``plot-skills``).

``init_from: RUN`` fine-tunes instead: the networks of a skills run are loaded, each skill is evaluated
greedily on the env's reward, the best one is fixed and its Q-network is trained on the env's reward
(``agents/skills_init.py``). See docs/skills.md.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.base import AgentSetting, FeedForwardAgent, linear_schedule, load_module_state
from rlmorning.agents.dqn import td_target
from rlmorning.agents.dqn_parts import ReplayRatioMixin, epsilon_greedy, mean_metrics, require_discrete_box
from rlmorning.agents.skills_nets import (
    CODES,
    Discriminator,
    SkillQNetwork,
    Trunk,
    code_input,
    intrinsic_reward,
    log_prior,
    probe_codes,
)
from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer


@dataclass
class SkillsConfig:
    """Skill discovery hyperparameters; step counts are environment steps (summed over parallel envs)."""

    num_skills: int = 8
    """categorical: the number of skills K (uniform prior). gaussian: the number of fixed probe codes that
    evaluation, plot-skills, record --skill and init_from number 0..K-1."""
    code: str = "categorical"
    """categorical (DIAYN) | gaussian (InfoGAN-style continuous code, z ~ N(0, I), Gaussian q)"""
    code_dim: int = 2
    """gaussian: dimension d of the code."""
    encoder: str = "auto"
    """trunk of the Q-network and of the discriminator (each has its own): mlp | minatar | ... | auto"""
    encoder_kwargs: dict = field(default_factory=dict)
    head_hidden: int = 256
    """Units of the Q head's hidden layer after [features, code] (0: one linear layer)."""
    normalize_obs: bool = True
    """Map vector observations with finite Box bounds to [-1, 1] per entry (MountainCar's velocity is ~0.07)."""
    disc_lr: float = 1e-3
    buffer_size: int = 100_000
    batch_size: int = 64
    lr: float = 1e-3
    gamma: float = 0.99
    target_update_period: int = 500
    tau: float = 1.0
    """1.0 copies the online net every period; < 1 is a Polyak average every period."""
    train_freq: int = 4
    """Env steps per update round (one round = gradient_steps Q steps, each with one discriminator step)."""
    gradient_steps: int = 1
    learning_starts: int = 1_000
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_fraction: float = 0.2
    eps_decay_steps: int = 0
    """If > 0, decay over this many steps instead of eps_fraction of the run."""
    double: bool = False
    loss: str = "huber"
    """huber | mse"""
    max_grad_norm: float = 10.0
    """0 disables gradient-norm clipping."""
    init_from: str = ""
    """A skills run directory: fine-tune its best skill (by greedy extrinsic return) on the env's reward."""
    init_episodes: int = 3
    """init_from: greedy episodes per skill when choosing the best one."""

    def __post_init__(self) -> None:
        validate(self)

    def check_new_run(self) -> None:
        """Before a new run's folder is made: ``init_from`` names a skills run whose networks this config builds
        (checked again, with the spaces, when the networks load at the first step)."""
        if self.init_from:
            from rlmorning.agents.skills_init import check_init_run

            check_init_run(self, self.init_from)


def validate(c: SkillsConfig) -> None:
    """One-line RlmError for the first bad value."""
    choices = {"code": CODES, "loss": ("huber", "mse")}
    for key, valid in choices.items():
        if getattr(c, key) not in valid:
            raise RlmError(f"config key '{key}' must be one of {', '.join(valid)}, got '{getattr(c, key)}'")
    at_least = {"num_skills": 2 if c.code == "categorical" else 1, "code_dim": 1, "buffer_size": 1,
                "batch_size": 1, "train_freq": 1, "gradient_steps": 1, "target_update_period": 1,
                "init_episodes": 1, "head_hidden": 0, "learning_starts": 0, "eps_decay_steps": 0}
    for key, low in at_least.items():
        if getattr(c, key) < low:
            raise RlmError(f"config key '{key}' must be >= {low}, got {getattr(c, key)}")
    for key in ("lr", "disc_lr"):
        if getattr(c, key) <= 0:
            raise RlmError(f"config key '{key}' must be > 0, got {getattr(c, key)}")
    if not 0 < c.tau <= 1:
        raise RlmError(f"config key 'tau' must be in (0, 1], got {c.tau}")
    if not 0 < c.gamma <= 1:
        raise RlmError(f"config key 'gamma' must be in (0, 1], got {c.gamma}")
    for key in ("eps_start", "eps_end", "eps_fraction"):
        if not 0 <= getattr(c, key) <= 1:
            raise RlmError(f"config key '{key}' must be in [0, 1], got {getattr(c, key)}")
    if c.max_grad_norm < 0:
        raise RlmError(f"config key 'max_grad_norm' must be >= 0, got {c.max_grad_norm}")


class SkillsAgent(ReplayRatioMixin, FeedForwardAgent):
    """Skill-conditioned DQN with a discriminator reward; the acting state holds each episode's code."""

    def __init__(self, config: SkillsConfig, setting: AgentSetting) -> None:
        """``setting.inference=True``: networks only (no replay, no optimizers, no init_from)."""
        observation_space, action_space = setting.observation_space, setting.action_space
        inference, num_envs, seed = setting.inference, setting.num_envs, setting.seed
        require_discrete_box("skills", observation_space, action_space)
        validate(config)
        c = self.config = config
        device = self.device = setting.device
        self.observation_space = observation_space
        self.num_actions = int(action_space.n)
        self.num_skills = c.num_skills
        self.code_width = 1 if c.code == "categorical" else c.code_dim
        self.codes = probe_codes(c.code, c.num_skills, c.code_dim)
        in_width = c.num_skills if c.code == "categorical" else c.code_dim

        def trunk() -> Trunk:
            return Trunk(observation_space, c.encoder, c.encoder_kwargs, c.normalize_obs)

        self.online = SkillQNetwork(trunk(), in_width, self.num_actions, c.head_hidden).to(device)
        self.target = copy.deepcopy(self.online).requires_grad_(False).eval()
        self.discriminator = Discriminator(trunk(), c.code, c.num_skills, c.code_dim).to(device)
        self.inference = inference
        self.replay: ReplayBuffer | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.disc_optimizer: torch.optim.Optimizer | None = None
        if not inference:
            # the replay's action column holds (action, code...) as float32: z is stored with each transition
            self.replay = ReplayBuffer(c.buffer_size, num_envs, tuple(observation_space.shape),
                                       observation_space.dtype, setting.frame_stack,
                                       action_shape=(1 + self.code_width,), action_dtype=np.float32, gamma=c.gamma,
                                       n_step=1, seed=seed)
            self.optimizer = torch.optim.Adam(self.online.parameters(), lr=c.lr)
            self.disc_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=c.disc_lr)
        self.rng = np.random.default_rng(seed + 1)  # epsilon-greedy
        self.skill_rng = np.random.default_rng(seed + 3)  # one code per episode
        self._eps_decay = float(c.eps_decay_steps or c.eps_fraction * setting.total_steps)
        self.env_steps = 0
        self.updates = 0
        self._update_credit = 0.0
        self._last_target_sync = 0
        self._acting_codes = np.full((num_envs, self.code_width), np.nan, np.float32)
        self.fixed_skill: int | None = None
        """When set, every episode (training and greedy) uses this skill; fine-tuning sets it."""
        self.finetune = bool(c.init_from)
        """Learn from the env's reward with one fixed skill (init_from) instead of discovering skills."""
        self.init_returns: list[float] = []
        """init_from: each skill's mean greedy return when the best one was chosen."""
        self._pending_init = self.finetune and not inference
        self._pending_metrics: dict[str, float] = {}
        self._seed = seed

    # ------------------------------------------------------------------------------------ capabilities
    @property
    def encoder(self) -> nn.Module:
        """The Q-network's trunk (:class:`~rlmorning.agents.capabilities.HasEncoder`)."""
        return self.online.encoder

    def set_skill(self, skill: int | None) -> None:
        """Act with skill ``skill`` in every episode from now on (None: draw per episode again)."""
        if skill is not None and not 0 <= skill < self.num_skills:
            raise RlmError(f"skill {skill} is out of range: this run has skills 0..{self.num_skills - 1}")
        self.fixed_skill = skill

    def skill_code(self, skill: int) -> np.ndarray:
        """The code ``float32 [w]`` of numbered skill ``skill``."""
        return self.codes[skill]

    # ------------------------------------------------------------------------------------------ acting
    def initial_state(self, batch_size: int) -> np.ndarray:
        """Codes of ``batch_size`` fresh episodes: NaN rows, drawn when the episode's first action is chosen."""
        return np.full((batch_size, self.code_width), np.nan, np.float32)

    def reset_state(self, state: Any, mask: np.ndarray) -> Any:
        """The episodes where ``mask`` is True ended: their next action draws a new code."""
        state = np.array(state, dtype=np.float32, copy=True)
        state[np.asarray(mask, bool)] = np.nan
        return state

    def _fill(self, state: np.ndarray | None, n: int, explore: bool) -> np.ndarray:
        codes = self.initial_state(n) if state is None else np.array(state, dtype=np.float32, copy=True)
        rows = np.flatnonzero(np.isnan(codes).any(axis=1))
        if rows.size == 0:
            return codes
        if self.fixed_skill is not None:
            codes[rows] = self.codes[self.fixed_skill]
        elif explore:  # training: from the prior, with the agent's own RNG, in row order
            for i in rows:
                if self.config.code == "categorical":
                    codes[i] = self.skill_rng.integers(self.num_skills)
                else:
                    codes[i] = self.skill_rng.standard_normal(self.code_width)
        else:  # greedy episodes cover the skills in turn and touch no RNG
            codes[rows] = self.codes[rows % self.num_skills]
        return codes

    @property
    def epsilon(self) -> float:
        """Exploration rate at the current env step."""
        c = self.config
        return linear_schedule(c.eps_start, c.eps_end, self._eps_decay, self.env_steps)

    def _code_in(self, codes: np.ndarray | torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(codes, dtype=torch.float32, device=self.device)
        return code_input(z, self.config.code, self.num_skills)

    def q_values_for(self, obs: np.ndarray, codes: np.ndarray) -> torch.Tensor:
        """``float32 [B, A]`` Q-values of ``obs`` under the codes ``[B, w]``."""
        self.online.eval()
        with torch.inference_mode():
            return self.online(torch.as_tensor(obs, device=self.device), self._code_in(codes)).float()

    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        """Q-values under the fixed skill, else skill 0 (the skill of greedy row 0)."""
        code = self.codes[self.fixed_skill if self.fixed_skill is not None else 0]
        return self.q_values_for(obs, np.repeat(code[None], len(obs), axis=0))

    def act(self, obs: np.ndarray, state: Any, explore: bool) -> tuple[np.ndarray, np.ndarray]:
        """Epsilon-greedy (explore) or greedy actions under each row's code; draws the codes still missing."""
        if explore and self._pending_init:
            self._initialize_from_run()
        n = obs.shape[0]
        codes = self._fill(state, n, explore)
        if not explore:
            return self.q_values_for(obs, codes).argmax(dim=1).cpu().numpy(), codes
        self._acting_codes = codes.copy()
        actions = epsilon_greedy(self.rng, self.epsilon, self.num_actions, n,
                                 lambda: self.q_values_for(obs, codes).argmax(dim=1).cpu().numpy())
        return actions, codes

    def observe(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, terminated: np.ndarray,
                truncated: np.ndarray, next_obs: np.ndarray, valid: np.ndarray | None = None,
                info: dict | None = None) -> None:
        """Store the step with each env's code (the codes of the last exploring ``act``)."""
        replay = self._learner()[0]
        stored = np.concatenate([np.asarray(actions, np.float32).reshape(-1, 1), self._acting_codes], axis=1)
        replay.add(obs, stored, rewards, terminated, truncated, next_obs, valid)
        self._count_observed(len(replay), obs, valid)

    # ---------------------------------------------------------------------------------------- learning
    def _learner(self) -> tuple[ReplayBuffer, torch.optim.Optimizer, torch.optim.Optimizer]:
        if self.replay is None or self.optimizer is None or self.disc_optimizer is None:
            raise RlmError("this agent was loaded for inference (load_policy): it acts but cannot learn")
        return self.replay, self.optimizer, self.disc_optimizer

    def update(self, step: int) -> dict[str, float]:
        """The gradient steps owed by the replay ratio, then the target sync when due."""
        c = self.config
        replay = self._learner()[0]
        metrics = self._owed_gradient_steps(replay.num_sampleable() >= c.batch_size)
        if self._target_sync_due():
            self._sync_target()
        out = dict(self._pending_metrics)
        self._pending_metrics = {}
        if metrics:
            out.update(mean_metrics(metrics))
            out["epsilon"] = self.epsilon
        return out

    def _gradient_step(self) -> dict[str, float]:
        c = self.config
        replay, optimizer, disc_optimizer = self._learner()
        b = replay.sample(c.batch_size)
        obs = torch.as_tensor(b["obs"], device=self.device)
        next_obs = torch.as_tensor(b["next_obs"], device=self.device)
        stored = torch.as_tensor(b["actions"], device=self.device)
        actions, codes = stored[:, 0].long(), stored[:, 1:]
        extrinsic = torch.as_tensor(b["returns"], device=self.device)
        discounts = torch.as_tensor(b["discounts"], device=self.device)
        out: dict[str, float] = {"extrinsic_reward": float(extrinsic.mean())}
        disc_out = None
        if self.finetune:
            rewards = extrinsic
        else:
            # A transition is scored on s', or on s where the episode terminated: the replay keeps no
            # observation after a termination (next_obs is zeros there). The discriminator learns on the same
            # scored states, and the reward comes from it before this step's update.
            ended = (discounts == 0).view(-1, *([1] * (obs.dim() - 1)))
            scored = torch.where(ended, obs, next_obs)
            self.discriminator.train()
            disc_out = self.discriminator(scored)
            with torch.no_grad():
                log_q = self.discriminator.log_q_from_output(disc_out.detach(), codes)
                rewards = log_q - log_prior(codes, c.code, self.num_skills)
            out["intrinsic_reward"] = float(rewards.mean())
        code_in = self._code_in(codes)
        self.online.train()
        with torch.no_grad():
            next_q_target = self.target(next_obs, code_in).float()
            next_q_online = self.online(next_obs, code_in).float() if c.double else None
            y = td_target(rewards, discounts, next_q_target, next_q_online)
        q = self.online(obs, code_in).float().gather(1, actions.unsqueeze(1)).squeeze(1)
        loss = F.smooth_l1_loss(q, y) if c.loss == "huber" else F.mse_loss(q, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        out.update(loss=float(loss.detach()), q_mean=float(q.detach().mean()))
        if c.max_grad_norm > 0:
            out["grad_norm"] = float(nn.utils.clip_grad_norm_(self.online.parameters(), c.max_grad_norm))
        optimizer.step()
        if disc_out is not None:  # the discriminator learns on the visited states s with their codes
            disc_loss = -self.discriminator.log_q_from_output(disc_out, codes).mean()
            disc_optimizer.zero_grad(set_to_none=True)
            disc_loss.backward()
            disc_optimizer.step()
            out["disc_loss"] = float(disc_loss.detach())
            if c.code == "categorical":
                guess = self.discriminator.predict_from_output(disc_out.detach())
                out["disc_accuracy"] = float((guess[:, 0] == codes[:, 0]).float().mean())
        self.updates += 1
        return out

    def discriminate(self, obs: np.ndarray) -> np.ndarray:
        """The discriminator's most likely code ``float32 [B, w]`` for each observation."""
        self.discriminator.eval()
        with torch.inference_mode():
            out = self.discriminator(torch.as_tensor(obs, device=self.device))
            return self.discriminator.predict_from_output(out).float().cpu().numpy()

    def intrinsic_rewards(self, obs: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """``log q(z|s) - log p(z)`` ``float32 [B]`` from the current discriminator."""
        self.discriminator.eval()
        with torch.inference_mode():
            z = torch.as_tensor(codes, dtype=torch.float32, device=self.device)
            return intrinsic_reward(self.discriminator, torch.as_tensor(obs, device=self.device), z).cpu().numpy()

    # --------------------------------------------------------------------------------------- init_from
    def _initialize_from_run(self) -> None:
        """Load the init_from run's networks and fix its best skill (once, at the first exploring act)."""
        from rlmorning.agents.skills_init import choose_skill

        self._pending_init = False
        choice = choose_skill(self.config, self.config.init_from, self.observation_space, self.num_actions,
                              seed=self._seed + 200_000, device=self.device)
        load_module_state(self.online, choice.online, "encoder/env or skill settings")
        self.target.load_state_dict(self.online.state_dict())
        load_module_state(self.discriminator, choice.discriminator, "encoder/env or skill settings")
        self.init_returns = list(choice.returns)
        self.set_skill(choice.skill)
        self._pending_metrics = {"init_skill": float(choice.skill), "init_skill_return": choice.returns[choice.skill]}

    # ------------------------------------------------------------------------------------- checkpoints
    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        _, optimizer, disc_optimizer = self._learner()
        state = {
            "online": self.online.state_dict(),
            "target": self.target.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer": optimizer.state_dict(),
            "disc_optimizer": disc_optimizer.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "update_credit": self._update_credit,
            "last_target_sync": self._last_target_sync,
            "rng": self.rng.bit_generator.state,
            "skill_rng": self.skill_rng.bit_generator.state,
            "fixed_skill": -1 if self.fixed_skill is None else self.fixed_skill,
            "init_returns": list(self.init_returns),
            "pending_init": self._pending_init,
            "num_skills": self.num_skills,
        }
        if include_buffers and self.replay is not None:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["num_skills"]) != self.num_skills:
            raise RlmError(f"checkpoint has {state['num_skills']} skills, this config has {self.num_skills}")
        load_module_state(self.online, state["online"], "encoder/env or skill settings")
        load_module_state(self.target, state["target"], "encoder/env or skill settings")
        load_module_state(self.discriminator, state["discriminator"], "encoder/env or skill settings")
        if self.optimizer is not None and self.disc_optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.disc_optimizer.load_state_dict(state["disc_optimizer"])
        self.env_steps = int(state["env_steps"])
        self.updates = int(state["updates"])
        self._update_credit = float(state["update_credit"])
        self._last_target_sync = int(state["last_target_sync"])
        self.rng.bit_generator.state = state["rng"]
        self.skill_rng.bit_generator.state = state["skill_rng"]
        skill = int(state["fixed_skill"])
        self.fixed_skill = None if skill < 0 else skill
        self.init_returns = [float(r) for r in state["init_returns"]]
        self._pending_init = bool(state["pending_init"]) and not self.inference
        if "replay" in state and self.replay is not None:
            self.replay.load_state_dict(state["replay"])
