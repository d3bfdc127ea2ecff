"""Core commands: train, eval, envs, agents, configs."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rlmorning.commands import refuse_with_resume
from rlmorning.errors import RlmError

Handler = Callable[[argparse.Namespace], int]

EPILOG_TRAIN = """examples:
  rlmorning train dqn --env Breakout --steps 50000 --set learning_starts=5000
  rlmorning train dqn --env Breakout --config atari100k
  rlmorning train dqn --env CartPole-v1 --steps 50000
  rlmorning train dqn --env MinAtar/Breakout --set double=true --set n_step=3
  rlmorning train dqn --resume runs/Breakout-dqn-0-20261123-101500 --steps 200000
  rlmorning train dqn --env CartPole-v1 --run-dir runs/cartpole --overwrite   # delete the run there, start again

config keys: 'rlmorning agents -v' lists every key with its default.
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add the core subcommands to ``sub``; returns name -> handler."""
    tr = sub.add_parser("train", help="train an agent (writes a run directory)", epilog=EPILOG_TRAIN,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    tr.add_argument("agent", help="agent name ('rlmorning agents' lists them), e.g. dqn")
    tr.add_argument("--env", help="Breakout, ALE/Breakout-v5, BreakoutNoFrameskip-v4, MinAtar/Breakout, "
                    "or a Gymnasium id such as CartPole-v1 ('rlmorning envs' lists them); default: the env "
                    "of a --config file that names one (a run's config.yaml)")
    tr.add_argument("--steps", type=int, help="environment steps to train for, summed over parallel envs "
                    "(Atari: 1 step = 4 frames; a run stops at the first whole vector step at or past it); "
                    "default from the preset. With --resume: the run's new total, not steps added")
    tr.add_argument("--seed", type=int, help="seed of envs, networks and sampling (default 0)")
    tr.add_argument("--config", help="preset name (dqn_atari, atari100k, ...: 'rlmorning configs' lists them) or "
                    "a YAML path (a run's config.yaml too); default: the agent's preset for the env family")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (repeatable; typed and validated), e.g. --set lr=3e-4 "
                    "--set encoder_kwargs.hidden=[64,64]; --set encoder=NAME drops the preset's encoder_kwargs "
                    "(they were for its encoder)")
    tr.add_argument("--run-dir", help="write the run here (default: runs/<env>-<agent>-<seed>-<time>)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its checkpoints/latest.pt")
    tr.add_argument("--overwrite", action="store_true", help="with --run-dir: delete the run already there (only "
                    "what training writes: config.yaml, checkpoints/, metrics.csv, tb/, ...) and start again; a folder "
                    "that also holds other files, videos/ and plots/ included, is refused")
    tr.add_argument("--device", choices=None, help="auto | cpu | cuda | cuda:N (default auto)")
    tr.add_argument("--num-envs", type=int, help="parallel training envs (default: the preset's; 1 unless it "
                    "says otherwise)")
    tr.add_argument("--no-progress", action="store_true", help="print nothing while training (no bar, no log lines)")

    ev = sub.add_parser("eval", help="evaluate a run's checkpoint (epsilon-greedy at the run's eval_epsilon), "
                        "print mean ± std")
    ev.add_argument("run", help="run directory, or sb3:MODEL.zip (a Stable-Baselines3 DQN model; needs --env)")
    ev.add_argument("--env", help="env of an sb3: model, e.g. Breakout")
    ev.add_argument("--episodes", type=int, default=10, help="episodes (default 10)")
    ev.add_argument("--checkpoint", default="best", help="best | latest | PATH (default best, else latest)")
    ev.add_argument("--epsilon", type=float, help="random-action probability (default: the run's eval_epsilon)")
    ev.add_argument("--sticky-actions", type=float, help="sticky-action probability (Atari; default: the run's)")
    ev.add_argument("--seed", type=int, default=12_345, help="seed of the evaluation envs (default 12345)")
    ev.add_argument("--device", default="cpu", help="cpu | cuda (default cpu)")

    en = sub.add_parser("envs", help="list env names")
    en.add_argument("--family", choices=["atari", "minatar", "rlmorning", "gymnasium"], help="only this family")
    ag = sub.add_parser("agents", help="list agents (and with -v their config keys)")
    ag.add_argument("-v", "--verbose", action="store_true", help="show every config key with its default")
    sub.add_parser("configs", help="list the YAML presets")
    return {"train": _cmd_train, "eval": _cmd_eval, "envs": _cmd_envs, "agents": _cmd_agents,
            "configs": _cmd_configs}


def _cmd_train(args: argparse.Namespace) -> int:
    from rlmorning import api

    progress = False if args.no_progress else None
    if args.resume:
        refuse_with_resume((("--set", args.overrides), ("--config", args.config), ("--seed", args.seed),
                            ("--num-envs", args.num_envs), ("--run-dir", args.run_dir),
                            ("--overwrite", args.overwrite)),
                           "the run's config.yaml is used; only --steps and --device may change")
        from rlmorning.envs import resolve
        from rlmorning.run import read_config

        saved = read_config(args.resume)
        if saved["agent"] != args.agent:
            raise RlmError(f"run '{args.resume}' was trained with agent '{saved['agent']}', not '{args.agent}'")
        if args.env and resolve(args.env) != resolve(saved["env"]):
            raise RlmError(f"run '{args.resume}' was trained on '{saved['env']}', not '{args.env}'")
        summary = api.resume(args.resume, steps=args.steps, device=args.device, progress=progress)
    else:
        args.env = _env_of_config(args.env, args.config)
        summary = api.train(
            args.agent, args.env, config=args.config, overrides=args.overrides, run_dir=args.run_dir,
            overwrite=args.overwrite, steps=args.steps, seed=args.seed, num_envs=args.num_envs, device=args.device,
            progress=progress,
        )
    best = summary["best_eval"]
    best_s = f"{best:.2f}" if best != float("-inf") else "n/a (no evaluation ran)"
    print(f"run: {summary['run_dir']}")
    print(f"steps: {summary['steps']}  episodes: {summary['episodes']}  best eval return: {best_s}")
    print(f"eval protocol: {summary['eval_protocol']}")
    return 0


def _env_of_config(env: str | None, config: str | None) -> str:
    """``--env``, else the ``env:`` of a ``--config`` file (a run's config.yaml names its env). A file's env that
    ``--env`` replaces is said on stderr."""
    import sys

    from rlmorning.config import load_preset
    from rlmorning.envs import resolve

    saved = load_preset(config).get("env") if config else None
    if env is None:
        if not isinstance(saved, str):
            raise RlmError("train needs --env (e.g. --env Breakout) or --resume RUN_DIR")
        return saved
    if isinstance(saved, str) and resolve(saved) != resolve(env):
        print(f"note: --env {env} replaces the config's env '{saved}'", file=sys.stderr)
    return env


def _cmd_eval(args: argparse.Namespace) -> int:
    from rlmorning import api

    if args.episodes < 1:
        raise RlmError("--episodes must be >= 1")
    res = api.evaluate_run(args.run, episodes=args.episodes, checkpoint=args.checkpoint, epsilon=args.epsilon,
                           sticky_actions=args.sticky_actions, seed=args.seed, device=args.device, env=args.env)
    n = res["episodes"]
    print(f"eval return: {res['mean']:.2f} ± {res['std']:.2f} over {n} episode{'' if n == 1 else 's'}")
    print(f"eval protocol: {res['protocol']}")
    step = res["checkpoint_step"]
    print(f"checkpoint: {res['checkpoint']}" + (f" (step {step})" if step is not None else ""))
    return 0


def _cmd_envs(args: argparse.Namespace) -> int:
    from rlmorning.envs import env_names, unavailable_gym_ids

    for family, names in env_names().items():
        if args.family and family != args.family:
            continue
        print(f"{family} ({len(names)}):")
        print("  " + ", ".join(names))
    if args.family in (None, "gymnasium"):
        missing = unavailable_gym_ids()
        if missing:
            print(f"gymnasium, not available here ({sum(map(len, missing.values()))}):")
            for reason, names in missing.items():
                print(f"  {', '.join(names)}\n    ({reason})")
    return 0


def _cmd_agents(args: argparse.Namespace) -> int:
    import dataclasses

    from rlmorning.agents import AGENTS
    from rlmorning.config import TrainerConfig
    from rlmorning.field_docs import field_docs

    def keys(cls: type) -> None:
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            doc = f"  # {docs[f.name]}" if f.name in docs else ""
            print(f"    {f.name} = {default!r}{doc}")

    for name in AGENTS.names():
        spec = AGENTS.get(name)
        presets = ", ".join(f"{fam}: {p}" for fam, p in spec.presets.items())
        print(f"{name}: {spec.description}  (presets {presets})")
        if args.verbose:
            keys(spec.config_cls)
    if args.verbose:
        print("trainer keys (all agents):")
        keys(TrainerConfig)
    return 0


def _cmd_configs(args: argparse.Namespace) -> int:
    from rlmorning.config import preset_names

    print("\n".join(preset_names()))
    return 0


