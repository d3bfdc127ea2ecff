"""The one training loop that drives every agent (see ``agents/base.py`` for the protocol).

Per vector step: ``act`` -> ``env.step`` -> ``observe`` -> ``update``. Every ``eval_every`` steps a
greedy evaluation on separate envs and the held-out mean max-Q; every ``checkpoint_every`` steps an
atomic checkpoint. Nothing Atari- or DQN-specific lives here.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rlmorning import envs as envs_mod
from rlmorning.agents import AGENTS, AgentSetting
from rlmorning.agents.side_info_heads import with_env_game
from rlmorning.config import RunConfig
from rlmorning.envs import EnvInfo, real_next_obs
from rlmorning.envs.state import capture_env_state, pack_tree, restore_env_state, unpack_tree
from rlmorning.errors import RlmError, TrainingTerminated
from rlmorning.evaluation import evaluate, gather_heldout_states, heldout_mean_max_q, load_states, save_states
from rlmorning.logger import Logger
from rlmorning.run import (
    CHECKPOINT_FORMAT,
    CHECKPOINTS,
    MetricsCSV,
    check_format,
    load_checkpoint,
    make_writable_dir,
    save_checkpoint,
    write_versions,
    write_yaml,
)
from rlmorning.threads import available_cores, default_torch_threads


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; an unavailable cuda is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RlmError("--device cuda was asked for but no CUDA GPU is available (use --device cpu)")
    if name != "cpu" and not name.startswith("cuda"):
        raise RlmError(f"unknown device '{name}'. Valid: auto, cpu, cuda, cuda:N")
    return torch.device(name)


@dataclass
class TrainState:
    """Counters of the loop that a checkpoint must carry."""

    step: int = 0
    episodes: int = 0
    evals: int = 0
    best_eval: float = -math.inf
    wall_time: float = 0.0
    recent_returns: list[float] = field(default_factory=list)
    recent_lengths: list[int] = field(default_factory=list)
    metric_sums: dict[str, float] = field(default_factory=dict)
    """sums and counts of the agent's metrics since the last log row (the row in progress)"""
    metric_counts: dict[str, int] = field(default_factory=dict)
    last_log_step: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain Python values (a checkpoint's ``train`` entry)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """The inverse of :meth:`to_dict`; fields missing from an older checkpoint keep their defaults
        (``last_log_step`` defaults to the checkpoint's step)."""
        values = dict(values)
        values.setdefault("last_log_step", values.get("step", 0))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Trainer:
    """Train ``config.agent`` on ``config.env``, writing into ``run_dir``."""

    def __init__(
        self,
        config: RunConfig,
        run_dir: Path,
        resume: bool = False,
        on_metrics: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        """``on_metrics(step, row)`` is called after every metrics row (log and eval rows), e.g. to
        report to Ray Tune; ``row`` holds the same values as that row of metrics.csv."""
        self.config = config
        self.on_metrics = on_metrics
        self.run_dir = Path(run_dir)
        make_writable_dir(self.run_dir)
        t = config.trainer
        self.device = resolve_device(t.device)
        self.env_info: EnvInfo = envs_mod.resolve(config.env)
        torch.manual_seed(t.seed)
        # the agent learns from the console RAM (DQN's ``aux``): the training env gives it
        side_info = getattr(config.agent_config, "aux", "none") != "none"
        self.env = envs_mod.make_vector(self.env_info, t.num_envs, t.seed, ram=side_info, **dict(t.env_kwargs))
        if t.torch_threads <= 0:  # resolved once, written to config.yaml: a resume uses the same count
            t.torch_threads = default_torch_threads(tuple(self.env.single_observation_space.shape or ()))
        torch.set_num_threads(t.torch_threads)
        self.same_step = self.env.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
        spec = AGENTS.get(config.agent)
        self.agent = spec.factory(
            with_env_game(config.agent_config, self.env_info.id),
            AgentSetting(
                self.env.single_observation_space,
                self.env.single_action_space,
                num_envs=t.num_envs,
                frame_stack=self.env_info.frame_stack,
                total_steps=t.steps,
                device=self.device,
                seed=t.seed,
            ),
        )
        self.state = TrainState()
        self._last_eval_step = -1
        self._dead_features_warned = False
        self._saved_step: int | None = None
        """step of checkpoints/latest.pt as written or loaded by this trainer"""
        self.protocol = envs_mod.eval_protocol(
            self.env_info, sticky_actions=t.eval_sticky_actions, epsilon=t.eval_epsilon,
            max_frames=t.eval_max_frames,
        )
        self.obs, _ = self.env.reset(seed=t.seed)
        self.agent_state = self.agent.initial_state(t.num_envs)
        self.prev_done = np.zeros(t.num_envs, dtype=bool)
        self.ep_return = np.zeros(t.num_envs)
        self.ep_length = np.zeros(t.num_envs, dtype=np.int64)
        self.heldout = self._heldout_states()
        self.logger = Logger(self.run_dir, resume_step=None)
        if t.torch_threads > available_cores():
            self.logger.warn(
                f"torch_threads={t.torch_threads} but this process may use {available_cores()} core(s): the threads "
                "will wait on each other" + ("; kept from the run's config.yaml, so the result stays the same"
                                             if resume else "; torch_threads=0 picks a count that fits"))
        if resume:
            self._load(self.run_dir / CHECKPOINTS / "latest.pt")
        else:
            write_yaml(self.run_dir / "config.yaml", config.to_flat())
            write_versions(self.run_dir, {"eval_protocol": self.protocol, "device": str(self.device)})

    # ------------------------------------------------------------------------------------------ setup
    def _heldout_states(self) -> np.ndarray | None:
        n = self.config.trainer.heldout_states
        if n <= 0:
            return None
        path = self.run_dir / "heldout_states.npz"
        if path.is_file():
            return load_states(path)
        t = self.config.trainer
        env = envs_mod.make_vector(self.env_info, 1, t.seed + 54_321, **dict(t.env_kwargs))
        try:
            states = gather_heldout_states(env, n, t.seed + 54_321)
        finally:
            env.close()
        save_states(path, states)
        return states

    def _make_eval_env(self, index: int) -> Any:
        t = self.config.trainer
        kwargs = dict(t.env_kwargs)
        return envs_mod.make_eval(
            self.env_info, t.seed + 100_000 + 1_000 * self.state.evals + index,
            sticky_actions=t.eval_sticky_actions, max_frames=t.eval_max_frames, **kwargs,
        )

    # ------------------------------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        """Run until ``steps``; Ctrl-C saves ``latest.pt`` and re-raises KeyboardInterrupt."""
        t = self.config.trainer
        if self.state.step >= t.steps:
            if t.eval_every > 0 and not self._evaluated_at(self.state.step):  # Ctrl-C during the final evaluation
                self._evaluate(final=True)
                self.save("latest")
            else:  # shown even with progress off: the command did nothing, and says why
                print(f"note: nothing to train: the run is complete ({self.state.step} of {t.steps} steps); "
                      f"resume with --steps N > {t.steps} to train it further", file=sys.stderr)
            return self.summary()
        self._warn_if_nothing_learns()
        if t.progress and t.eval_every > 0 and self._long_final_evaluation():
            print(f"note: the run ends with {t.final_eval_episodes} evaluation episodes (final_eval_episodes; "
                  "--set final_eval_episodes=0 plays eval_episodes instead)", file=sys.stderr)
        next_log = _next_multiple(self.state.step, t.log_every)
        next_eval = _next_multiple(self.state.step, t.eval_every)
        next_ckpt = _next_multiple(self.state.step, t.checkpoint_every)
        st = self.state
        metric_sums: dict[str, float] = collections.defaultdict(float, st.metric_sums)
        metric_counts: dict[str, int] = collections.defaultdict(int, st.metric_counts)
        st.metric_sums, st.metric_counts = metric_sums, metric_counts
        last_log_time, log_time_step = time.perf_counter(), st.step
        start_wall = time.perf_counter() - st.wall_time
        self.logger.start_progress(t.steps, st.step, enabled=t.progress)
        try:
            with _InterruptGuard() as guard:
                while st.step < t.steps:
                    with guard.holding():  # Ctrl-C during the step is raised at the end of this iteration
                        new_steps, metrics = self._vector_step()
                        st.step += new_steps
                        for k, v in metrics.items():
                            metric_sums[k] += v
                            metric_counts[k] += 1
                        st.wall_time = time.perf_counter() - start_wall
                    if st.step >= next_log or (st.step >= t.steps and st.step != st.last_log_step):
                        now = time.perf_counter()
                        sps = (st.step - log_time_step) / max(now - last_log_time, 1e-9)
                        row = {k: metric_sums[k] / metric_counts[k] for k in metric_sums}
                        row.update(self._episode_stats(), sps=sps)
                        self._log(row)
                        self._warn_if_features_dead(row)
                        metric_sums.clear()
                        metric_counts.clear()
                        last_log_time, log_time_step, st.last_log_step = now, st.step, st.step
                        next_log = _next_multiple(st.step, t.log_every)
                    final_eval = st.step >= t.steps and t.eval_every > 0 and self._last_eval_step != st.step
                    if st.step >= next_eval or final_eval:
                        self._evaluate(final=st.step >= t.steps)
                        next_eval = _next_multiple(st.step, t.eval_every)
                    if st.step >= next_ckpt or st.step >= t.steps:
                        self.save("latest")
                        next_ckpt = _next_multiple(st.step, t.checkpoint_every)
                    self.logger.advance(st.step)
                    guard.raise_pending()
        except KeyboardInterrupt as exc:
            self.save("latest")
            how = "terminated (SIGTERM)" if isinstance(exc, TrainingTerminated) else "interrupted"
            self.logger.warn(f"{how} at step {self.state.step}: saved {self.run_dir}/checkpoints/latest.pt")
            raise
        finally:
            self.logger.stop_progress()
        return self.summary()

    def _long_final_evaluation(self) -> bool:
        """Whether the final evaluation plays many more episodes than the periodic ones (announced on stderr)."""
        t = self.config.trainer
        return t.final_eval_episodes > max(t.eval_episodes, 10)

    def _warn_if_nothing_learns(self) -> None:
        """Say so when the run ends before its first gradient step (learning_starts, then train_freq steps)."""
        c, steps = getattr(self.agent, "config", None), self.config.trainer.steps
        starts, freq = getattr(c, "learning_starts", 0), getattr(c, "train_freq", 1)
        if starts >= steps:
            self.logger.warn(f"learning_starts ({starts}) >= steps ({steps}): no gradient step will be taken; "
                             "lower it with --set learning_starts=N")
        elif isinstance(freq, int) and freq > 1 and starts + freq - 1 > steps:  # a round's credit: freq new steps
            self.logger.warn(f"with learning_starts {starts} and train_freq {freq} the first gradient steps come at "
                             f"step {starts + freq - 1}, after the run's {steps}; lower them with --set "
                             "learning_starts=N --set train_freq=N")

    def _vector_step(self) -> tuple[int, dict[str, float]]:
        obs = self.obs
        actions, self.agent_state = self.agent.act(obs, self.agent_state, explore=True)
        next_obs, rewards, terminated, truncated, info = self.env.step(actions)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        done = terminated | truncated
        if self.same_step:
            valid = None
            target_obs = real_next_obs(next_obs, info, done)
        else:  # next-step autoreset: the step after an episode's end is a reset, not a transition
            valid = ~self.prev_done
            target_obs = next_obs
        self.agent.observe(obs, actions, rewards, terminated, truncated, target_obs, valid, info)
        self.agent_state = self.agent.reset_state(self.agent_state, done)
        real = np.ones_like(done) if valid is None else valid
        self.ep_return[real] += np.asarray(rewards, dtype=np.float64)[real]
        self.ep_length[real] += 1
        episode_end = np.asarray(info.get("episode_end", done), dtype=bool) & real
        for i in np.flatnonzero(episode_end):
            self.state.episodes += 1
            self.state.recent_returns = (self.state.recent_returns + [float(self.ep_return[i])])[-100:]
            self.state.recent_lengths = (self.state.recent_lengths + [int(self.ep_length[i])])[-100:]
            self.ep_return[i] = 0.0
            self.ep_length[i] = 0
        self.prev_done = done
        self.obs = next_obs
        new_steps = int(real.sum())
        return new_steps, self.agent.update(self.state.step + new_steps)

    def _episode_stats(self) -> dict[str, float]:
        if not self.state.recent_returns:
            return {"episodes": self.state.episodes}
        return {
            "episodes": self.state.episodes,
            "train_return": float(np.mean(self.state.recent_returns[-20:])),
            "train_length": float(np.mean(self.state.recent_lengths[-20:])),
        }

    def _evaluate(self, final: bool = False) -> None:
        t = self.config.trainer
        self._last_eval_step = self.state.step
        episodes = t.final_eval_episodes if final and t.final_eval_episodes > 0 else t.eval_episodes
        if final and t.progress and self._long_final_evaluation():
            print(f"final evaluation: {episodes} episodes at epsilon {t.eval_epsilon} ...", file=sys.stderr, flush=True)
        returns = evaluate(self.agent, self._make_eval_env, episodes, t.eval_epsilon,
                           seed=t.seed + 100_000 + 1_000 * self.state.evals)
        self.state.evals += 1
        row: dict[str, float] = {
            "eval_return_mean": float(returns.mean()),
            "eval_return_std": float(returns.std()),
            "eval_episodes": float(len(returns)),
        }
        if self.heldout is not None:
            q = heldout_mean_max_q(self.agent, self.heldout)
            if q is not None:
                row["heldout_q"] = q
        self._log(row, eval_protocol=self.protocol)
        if returns.mean() > self.state.best_eval:
            self.state.best_eval = float(returns.mean())
            self.save("best")

    def _evaluated_at(self, step: int) -> bool:
        """Whether metrics.csv holds an evaluation row of ``step``."""
        path = self.logger.csv.path
        return path.is_file() and any(r.get("eval_return_mean") and float(r.get("step") or -1) == step
                                      for r in MetricsCSV.read(path))

    def _warn_if_features_dead(self, row: dict[str, Any]) -> None:
        """Once per process: say so when every feature unit of the Q-network was dead in a whole log window."""
        if self._dead_features_warned or row.get("dead_units", 0.0) < 1.0:
            return
        self._dead_features_warned = True
        self.logger.warn(f"step {self.state.step}: every feature unit of the Q-network was zero on every training "
                         "batch measured since the last log row (dead_units 1.0): its Q-values no longer depend on "
                         "the state and the TD loss no longer reaches the encoder; learning stalls until units revive")

    def _log(self, row: dict[str, Any], eval_protocol: str | None = None) -> None:
        self.logger.log(self.state.step, self.state.wall_time, row, eval_protocol=eval_protocol)
        if self.on_metrics is not None:
            self.on_metrics(self.state.step, dict(row))

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "steps": self.state.step,
            "episodes": self.state.episodes,
            "best_eval": self.state.best_eval,
            "eval_protocol": self.protocol,
        }

    # ------------------------------------------------------------------------------------ checkpoints
    def save(self, which: str) -> Path:
        """Write ``checkpoints/<which>.pt`` atomically: agent, loop counters, RNG and, where the env's state can
        be saved (``latest`` only), the env, the loop's per-env episode state and the agent's recurrent state."""
        t = self.config.trainer
        state = {
            "format": CHECKPOINT_FORMAT,
            "agent": self.agent.state_dict(include_buffers=t.save_replay and which == "latest"),
            "train": self.state.to_dict(),
            "torch_rng": torch.get_rng_state(),
            "config": self.config.to_flat(),
        }
        env_state = capture_env_state(self.env) if which == "latest" and self._buffers_kept() else None
        if env_state is not None:  # episodes in flight continue on resume: save where they are
            state["env"] = env_state
            state["loop"] = {
                "obs": torch.from_numpy(np.ascontiguousarray(self.obs)),
                "prev_done": torch.from_numpy(self.prev_done.copy()),
                "ep_return": torch.from_numpy(self.ep_return.copy()),
                "ep_length": torch.from_numpy(self.ep_length.copy()),
            }
            try:
                state["agent_state"] = pack_tree(self.agent_state)
            except TypeError as exc:
                raise RlmError(f"{self.config.agent}'s recurrent state cannot be checkpointed: {exc}") from None
        path = self.run_dir / CHECKPOINTS / f"{which}.pt"
        try:
            save_checkpoint(path, state)
        except RlmError as exc:  # disk full, folder made read-only: stop; the previous checkpoint is intact
            kept = (f"checkpoints/latest.pt of step {self._saved_step} is kept; once it can be written, continue "
                    f"with `rlmorning train {self.config.agent} --resume {self.run_dir}`"
                    if self._saved_step is not None else "no checkpoint was written yet")
            raise RlmError(f"{exc}; training stopped at step {self.state.step}, {kept}") from None
        if which == "latest":
            self._saved_step = self.state.step
        return path

    def _load(self, path: Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        check_format(ckpt, path)
        self.agent.load_state_dict(ckpt["agent"])
        self.state = TrainState.from_dict(ckpt["train"])
        self._saved_step = self.state.step
        torch.set_rng_state(ckpt["torch_rng"])
        buffers_kept = self._buffers_kept()
        resumed_envs = buffers_kept and "env" in ckpt and restore_env_state(self.env, ckpt["env"])
        if resumed_envs:
            loop = ckpt["loop"]
            self.obs = loop["obs"].cpu().numpy().copy()
            self.prev_done = loop["prev_done"].cpu().numpy().copy()
            self.ep_return = loop["ep_return"].cpu().numpy().copy()
            self.ep_length = loop["ep_length"].cpu().numpy().copy()
            if "agent_state" in ckpt:  # the recurrent state of the episodes that continue
                self.agent_state = unpack_tree(ckpt["agent_state"], self.device)
        else:  # fresh episodes: self.agent_state stays the agent's initial_state
            self.agent.interrupt_episodes()
            if buffers_kept:
                self.logger.warn(self._fresh_episodes_reason(saved="env" in ckpt))
        if not buffers_kept:
            self.logger.warn("checkpoint holds no replay (save_replay: false): it refills first, from fresh episodes")
        self.logger.truncate_after(self.state.step)

    def _buffers_kept(self) -> bool:
        """Whether checkpoints hold the agent's buffers. Without them (``save_replay: false``) the episodes in flight
        cannot go on after a resume: the replay would lack their beginnings (frame stacks, n-step windows), a
        recurrent agent the sequences in progress; so the env state is then neither saved nor restored."""
        return self.config.trainer.save_replay or not getattr(self.agent, "saved_buffers", ())

    def _fresh_episodes_reason(self, saved: bool) -> str:
        if not saved and capture_env_state(self.env) is not None:
            return ("the checkpoint holds no env state (written by an earlier version or another env backend): "
                    "resumed training starts fresh episodes")
        hint = "; Atari envs with env_kwargs backend python are saved" if self.env_info.family == "atari" else ""
        return f"this env's state cannot be saved: resumed training starts fresh episodes{hint}"


class _InterruptGuard:
    """Holds Ctrl-C (SIGINT) and SIGTERM back while a vector step is half done (env stepped, agent not yet
    updated), to raise them once the loop iteration is complete (logged, checkpointed), so the checkpoint
    written on interrupt resumes exactly. A signal outside a step (evaluation, ...) or a second one interrupts
    at once. Only in the main thread, and only for signals with their default handler (SIGINT: Python's
    KeyboardInterrupt; SIGTERM: the OS default), raised as KeyboardInterrupt / :class:`TrainingTerminated`."""

    def __init__(self) -> None:
        self.busy = False
        self.pending: type[KeyboardInterrupt] | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _InterruptGuard:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, self._handle)
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        self.previous = {}

    def _handle(self, signum: int, frame: Any) -> None:
        exc = TrainingTerminated if signum == signal.SIGTERM else KeyboardInterrupt
        if self.busy and self.pending is None:
            self.pending = exc
            return
        raise exc

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Hold a first Ctrl-C back while the block runs."""
        self.busy = True
        try:
            yield
        finally:
            self.busy = False

    def raise_pending(self) -> None:
        """Raise the interrupt held back, if any."""
        if self.pending is not None:
            exc, self.pending = self.pending, None
            raise exc


def _next_multiple(step: int, every: int) -> int:
    if every <= 0:
        return 2**62
    return (step // every + 1) * every
