"""Python API behind the CLI: resolve a config, train, resume, evaluate a run."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rlmorning import envs as envs_mod
from rlmorning.agents import AGENTS, AgentSetting
from rlmorning.agents.side_info_heads import with_env_game
from rlmorning.config import RunConfig, apply_overrides, check_probability, check_seed, load_preset, split_config
from rlmorning.errors import RlmError
from rlmorning.evaluation import evaluate
from rlmorning.run import (
    CHECKPOINTS,
    check_format,
    check_overwritable,
    checkpoint_step,
    clear_run_dir,
    earlier_run_files,
    find_checkpoint,
    load_checkpoint,
    make_writable_dir,
    new_run_dir,
    read_config,
    run_lock,
)


def resolve_run_config(
    agent: str,
    env: str,
    config: str | None = None,
    overrides: list[str] | None = None,
    **flags: Any,
) -> RunConfig:
    """Defaults -> preset (``config`` or the agent's preset for the env family) -> ``overrides`` -> ``flags``.

    ``flags`` are explicit CLI values (steps, seed, num_envs, device); None values are ignored.
    """
    spec = AGENTS.get(agent)
    info = envs_mod.resolve(env)
    envs_mod.check_installed(info)
    preset_name = config or spec.presets.get(info.family)
    flat: dict[str, Any] = load_preset(preset_name) if preset_name else {}
    if "agent" in flat and flat["agent"] != agent:
        raise RlmError(f"config '{preset_name}' is for agent '{flat['agent']}', not '{agent}'")
    flat = apply_overrides(flat, overrides or [])
    flat.update({k: v for k, v in flags.items() if v is not None})
    trainer_cfg, agent_cfg = split_config(flat, spec.config_cls)
    if trainer_cfg.steps < 1:
        raise RlmError(f"steps must be >= 1, got {trainer_cfg.steps}")
    check_seed("seed", trainer_cfg.seed)
    if trainer_cfg.num_envs < 1:
        raise RlmError(f"num_envs must be >= 1, got {trainer_cfg.num_envs}")
    for key in ("eval_episodes", "final_eval_episodes", "torch_threads"):
        if getattr(trainer_cfg, key) < 0:
            raise RlmError(f"config key '{key}' must be >= 0, got {getattr(trainer_cfg, key)}")
    if trainer_cfg.eval_every > 0 and trainer_cfg.eval_episodes < 1:
        raise RlmError(f"config key 'eval_episodes' must be >= 1 while eval_every > 0, got "
                       f"{trainer_cfg.eval_episodes} (set eval_every=0 to train without periodic evaluation)")
    for key in ("eval_epsilon", "eval_sticky_actions"):
        check_probability(f"config key '{key}'", getattr(trainer_cfg, key))
    return RunConfig(agent=agent, env=env, trainer=trainer_cfg, agent_config=agent_cfg)


def train(
    agent: str,
    env: str,
    *,
    config: str | None = None,
    overrides: list[str] | None = None,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    on_metrics: Callable[[int, dict[str, Any]], None] | None = None,
    overwrite: bool = False,
    **flags: Any,
) -> dict[str, Any]:
    """Train a new run; returns the trainer's summary (run_dir, steps, best eval, eval protocol).

    ``on_metrics(step, row)`` is called with every metrics row (see :class:`rlmorning.trainer.Trainer`).
    ``overwrite=True`` first deletes an earlier run in ``run_dir`` (only files training writes; a folder holding
    anything else is refused). The run directory is locked while it trains (:func:`rlmorning.run.run_lock`).
    """
    cfg = resolve_run_config(agent, env, config, overrides, **flags)
    check_new_run = getattr(cfg.agent_config, "check_new_run", None)
    if check_new_run is not None:  # an agent's checks of what lies outside its config, before any folder is made
        check_new_run()
    if run_dir is None:
        if overwrite:
            raise RlmError("--overwrite needs --run-dir (without it every run gets a new folder)")
        path = new_run_dir(runs_root, envs_mod.resolve(env).display_name, agent, cfg.trainer.seed)
        with run_lock(path):
            return _train_new(cfg, path, on_metrics, created=True)
    path = Path(run_dir)
    if overwrite:
        check_overwritable(path)
    else:
        _check_new_run_dir(path, agent, env)
    created = not path.exists()
    make_writable_dir(path)
    with run_lock(path):
        if overwrite:
            clear_run_dir(path)
            make_writable_dir(path)
        else:
            _check_new_run_dir(path, agent, env)  # again under the lock: another process may have started it
        return _train_new(cfg, path, on_metrics, created=created)


def _check_new_run_dir(path: Path, agent: str, env: str) -> None:
    """Refuse a ``--run-dir`` that holds a run, or files of one, with the way out."""
    if (path / "config.yaml").exists():
        if not (path / CHECKPOINTS / "latest.pt").is_file():
            raise RlmError(f"'{path}' already holds a run, stopped before its first checkpoint: start it again "
                           f"with {_restart_command(path, agent, env)}")
        raise RlmError(f"'{path}' already holds a run; use --resume {path} to continue it, or --overwrite to delete "
                       "it and start again")
    leftovers = earlier_run_files(path)
    if leftovers:
        raise RlmError(f"'{path}' holds files of an earlier run ({', '.join(leftovers)}) but no config.yaml, so "
                       "it cannot be resumed; choose another --run-dir, or --overwrite to delete them")


def _restart_command(path: Path, agent: str, env: str) -> str:
    """The command that starts the run in ``path`` again from its own config.yaml."""
    import shlex

    return (f"`rlmorning train {agent} --env {shlex.quote(str(env))} --config {shlex.quote(str(path / 'config.yaml'))} "
            f"--run-dir {shlex.quote(str(path))} --overwrite`")


def _train_new(cfg: RunConfig, path: Path, on_metrics: Callable[[int, dict[str, Any]], None] | None,
               created: bool) -> dict[str, Any]:
    from rlmorning.trainer import Trainer

    try:
        trainer = Trainer(cfg, path, on_metrics=on_metrics)
    except BaseException:
        if created:  # a config the agent rejects leaves no half-made run directory behind
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        return trainer.train()
    finally:
        trainer.logger.close()
        trainer.env.close()


def resume(run_dir: str | Path, steps: int | None = None, device: str | None = None,
           progress: bool | None = None,
           on_metrics: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Continue a run from ``checkpoints/latest.pt``; ``steps`` may raise the run's total (never below the
    checkpoint's step). A run at its last step whose final evaluation is missing (Ctrl-C during it) evaluates.
    The run directory is locked while it trains (:func:`rlmorning.run.run_lock`)."""
    if steps is not None and steps < 1:
        raise RlmError(f"--steps must be >= 1, got {steps}")
    path = Path(run_dir)
    flat = read_config(path)
    with run_lock(path):
        return _resume_locked(path, flat, steps, device, progress, on_metrics)


def _resume_locked(path: Path, flat: dict[str, Any], steps: int | None, device: str | None, progress: bool | None,
                   on_metrics: Callable[[int, dict[str, Any]], None] | None) -> dict[str, Any]:
    from rlmorning.trainer import Trainer

    latest = path / CHECKPOINTS / "latest.pt"
    if not latest.is_file():
        raise RlmError(f"run '{path}' has no checkpoints yet (stopped before the first one): start it again with "
                       f"{_restart_command(path, flat['agent'], flat['env'])}")
    if steps is not None:
        done = checkpoint_step(latest)
        if steps < done:
            raise RlmError(f"--steps {steps} is below the run's current step {done} (--steps is the run's total; "
                           f"give at least {done})")
    agent, env = flat.pop("agent"), flat.pop("env")
    if steps is not None:
        flat["steps"] = steps
    if device is not None:
        flat["device"] = device
    if progress is not None:
        flat["progress"] = progress
    spec = AGENTS.get(agent)
    trainer_cfg, agent_cfg = split_config(flat, spec.config_cls, upgrade=True)  # an older run's keys translated
    cfg = RunConfig(agent=agent, env=env, trainer=trainer_cfg, agent_config=agent_cfg)
    trainer = Trainer(cfg, path, resume=True, on_metrics=on_metrics)
    if steps is not None:
        from rlmorning.run import write_yaml

        write_yaml(path / "config.yaml", cfg.to_flat())
    try:
        return trainer.train()
    finally:
        trainer.logger.close()
        trainer.env.close()


def load_agent(run_dir: str | Path, checkpoint: str = "latest", device: str = "cpu", *,
               inference: bool = False) -> tuple[Any, RunConfig]:
    """Rebuild a run's agent from its config and load a checkpoint (``best``, ``latest`` or a path).

    The whole training agent (replay buffer and optimizer included, the buffer left empty); to act, evaluate,
    record or inspect use :func:`load_policy`, which builds neither."""
    from rlmorning.trainer import resolve_device

    dev = resolve_device(device)  # cuda without a GPU, or an unknown device: one clear line, before any loading
    path = Path(run_dir)
    flat = read_config(path)
    ckpt_path = find_checkpoint(path, checkpoint)
    state = load_checkpoint(ckpt_path)
    check_format(state, ckpt_path)
    agent_name, env = flat.pop("agent"), flat.pop("env")
    spec = AGENTS.get(agent_name)
    flat["device"] = str(dev)
    trainer_cfg, agent_cfg = split_config(flat, spec.config_cls, upgrade=True)  # an older run's keys translated
    cfg = RunConfig(agent=agent_name, env=env, trainer=trainer_cfg, agent_config=agent_cfg)
    info = envs_mod.resolve(env)
    probe = envs_mod.make_eval(info, 0, **dict(trainer_cfg.env_kwargs))
    try:
        obs_space, act_space = probe.observation_space, probe.action_space
    finally:
        probe.close()
    setting = AgentSetting(obs_space, act_space, num_envs=1, frame_stack=info.frame_stack,
                           total_steps=trainer_cfg.steps, device=dev, seed=trainer_cfg.seed, inference=inference)
    agent = spec.factory(with_env_game(agent_cfg, info.id), setting)
    agent_state = dict(state["agent"])
    agent_state.pop("replay", None)
    agent.load_state_dict(agent_state)
    return agent, cfg


def load_policy(run_dir: str | Path, checkpoint: str = "latest", device: str = "cpu") -> tuple[Any, RunConfig]:
    """A run's agent for acting and inspection only: networks (and world model) from the checkpoint, no replay
    buffer and no optimizer, so a 1M-transition Atari run evaluates in a few MB of RAM."""
    return load_agent(run_dir, checkpoint, device, inference=True)


def evaluate_run(
    run_dir: str | Path,
    episodes: int = 10,
    checkpoint: str = "latest",
    epsilon: float | None = None,
    sticky_actions: float | None = None,
    seed: int = 12_345,
    device: str = "cpu",
    env: str | None = None,
) -> dict[str, Any]:
    """Evaluate a run's checkpoint (or ``sb3:MODEL.zip`` on ``env``) on fresh envs; returns the returns, mean,
    std, the file evaluated (``best`` falls back to ``latest`` until a best exists), its step and the protocol."""
    from rlmorning.viz.rollout import load_source

    check_probability("--sticky-actions", sticky_actions)
    check_seed("--seed", seed)
    src = load_source(str(run_dir), checkpoint, env=env, device=device, epsilon=epsilon)
    sticky = src.sticky_actions if sticky_actions is None else sticky_actions
    if sticky_actions and src.info.family != "atari":
        raise RlmError(f"--sticky-actions is for Atari envs; '{src.info.display_name}' has none")

    def make(i: int) -> Any:
        return envs_mod.make_eval(src.info, seed + i, sticky_actions=sticky, max_frames=src.max_frames,
                                  **src.env_kwargs)

    returns = evaluate(src.agent, make, episodes, src.epsilon, seed)
    return {
        "returns": returns.tolist(),
        "mean": float(np.mean(returns)),
        "std": float(np.std(returns)),
        "episodes": episodes,
        "checkpoint": src.checkpoint,
        "checkpoint_step": src.checkpoint_step,
        "protocol": envs_mod.eval_protocol(src.info, sticky_actions=sticky, epsilon=src.epsilon,
                                           max_frames=src.max_frames),
    }
