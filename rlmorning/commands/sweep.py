"""Sweep commands: ``sweep`` (seeds and configs on Ray Tune) and ``report`` (rliable aggregates)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from rlmorning.commands import refuse_with_resume
from rlmorning.errors import RlmError

Handler = Callable[[argparse.Namespace], int]

EPILOG_SWEEP = """examples:
  rlmorning sweep dqn --env MinAtar/Breakout --seeds 5 --steps 200000
  rlmorning sweep dqn --env CartPole-v1 --grid lr=1e-4,3e-4 --grid n_step=1,3 --seeds 3
  rlmorning sweep dqn --env MinAtar/Breakout --search optuna --samples 20 --scheduler asha \\
      --grid lr=1e-5:1e-3:log --grid n_step=1,3,5
  rlmorning sweep dqn --env Breakout --seeds 5 --address auto      # a running Ray cluster
  rlmorning sweep --resume sweeps/CartPole-v1-dqn-20261123-101500  # finished trials are not rerun

Each trial is an ordinary run directory, sweeps/<name>/runs/<trial>/; the table of trials is printed at
the end and saved as sweeps/<name>/trials.csv. Grid sweeps run every combination of --grid values times
--seeds seeds (0..N-1). With --search optuna, --grid key=v1,v2 is a choice and key=LO:HI[:log] a range.
A trial whose worker dies is retried (--max-failures) from its latest checkpoint.
"""

EPILOG_REPORT = """examples:
  rlmorning report sweeps/CartPole-v1-dqn-20261123-101500
  rlmorning report 'runs/Breakout-dqn-*' 'runs/Pong-dqn-*' --baseline human --out report.md

Runs are grouped by agent and config (all keys but seed; device, progress and torch_threads ignored);
each env is a task. Score of a run: the last evaluation row of its metrics.csv. Aggregates (IQM, median,
mean) with 95% stratified-bootstrap confidence intervals and performance profiles via rliable
(Agarwal et al. 2021). --baseline human: (score - random) / (human - random); --baseline random:
score - random (Atari games only; reference scores in rlmorning/reference_scores.py, with sources).
"""


def register(sub: argparse._SubParsersAction) -> dict[str, Handler]:
    """Add ``sweep`` and ``report`` to ``sub``; returns name -> handler."""
    sw = sub.add_parser("sweep", help="run many seeds/configs as Ray Tune trials (local or on a Ray cluster)",
                        epilog=EPILOG_SWEEP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sw.add_argument("agent", nargs="?", help="agent name, e.g. dqn (not needed with --resume)")
    sw.add_argument("--env", help="env name, as for train")
    sw.add_argument("--seeds", type=int, default=1, help="seeds per grid point, 0..N-1 (default 1)")
    sw.add_argument("--steps", type=int, help="environment steps per trial (default: the preset's)")
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="values of a config key to sweep (repeatable: the grid is their product); with "
                    "--search optuna also KEY=LO:HI or KEY=LO:HI:log")
    sw.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key in every trial (repeatable), as for train")
    sw.add_argument("--config", help="preset name or YAML path, as for train")
    sw.add_argument("--search", choices=["optuna"], help="sample configs with Ray Tune's OptunaSearch")
    sw.add_argument("--samples", type=int, default=1, help="trials to sample with --search (default 1)")
    sw.add_argument("--scheduler", choices=["asha"], help="stop weak trials early with Ray Tune's ASHA")
    sw.add_argument("--metric", default="eval_return",
                    help="reported metric that search and scheduler optimise (default eval_return: the mean "
                    "return of each evaluation)")
    sw.add_argument("--mode", choices=["max", "min"], default="max", help="maximise or minimise --metric (default max)")
    sw.add_argument("--cpus-per-trial", type=float, default=1.0,
                    help="CPUs Ray reserves per trial; also its torch threads (default 1)")
    sw.add_argument("--gpus-per-trial", type=float, default=0.0,
                    help="GPUs per trial (default 0; > 0 trains on cuda)")
    sw.add_argument("--max-concurrent", type=int,
                    help="trials at once (default: as many as the CPUs allow, 2 on a 2-core machine)")
    sw.add_argument("--max-failures", type=int, default=3,
                    help="retries of a trial whose worker died, each from its latest checkpoint (default 3)")
    sw.add_argument("--address", help="Ray cluster to use: auto or HOST:PORT (default: RAY_ADDRESS, else a "
                    "local Ray started for this sweep)")
    sw.add_argument("--name", help="sweep name (default <env>-<agent>-<time>)")
    sw.add_argument("--root", default="sweeps", help="folder of sweeps (default sweeps)")
    sw.add_argument("--resume", metavar="SWEEP_DIR", help="continue an interrupted sweep")

    rp = sub.add_parser("report", help="aggregate runs across seeds and envs (IQM, bootstrap CIs, profiles)",
                        epilog=EPILOG_REPORT, formatter_class=argparse.RawDescriptionHelpFormatter)
    rp.add_argument("runs", nargs="+", metavar="RUN_OR_GLOB",
                    help="run directories, globs of them, or folders holding runs (a sweep directory)")
    rp.add_argument("--baseline", choices=["random", "human"], help="normalise Atari scores (default: raw)")
    rp.add_argument("--reference", default="atari57", help="reference-score table: atari57 (default) or "
                    "nature2015")
    rp.add_argument("--metric", default="eval_return_mean", help="metrics.csv column scored (default "
                    "eval_return_mean)")
    rp.add_argument("--out", default="report.md", help="Markdown file (default report.md in the current folder); "
                    "PNG plots are written beside it")
    rp.add_argument("--reps", type=int, default=10_000,
                    help="bootstrap resamples of the confidence intervals (default 10000; Agarwal et al. used 50000)")
    rp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    return {"sweep": _cmd_sweep, "report": _cmd_report}


def _cmd_sweep(args: argparse.Namespace) -> int:
    from rlmorning import sweep

    if args.resume:
        refuse_with_resume((("--env", args.env), ("--steps", args.steps), ("--grid", args.grid),
                            ("--set", args.overrides), ("--config", args.config), ("--search", args.search),
                            ("--scheduler", args.scheduler), ("--name", args.name),
                            ("--max-concurrent", args.max_concurrent)),
                           "the sweep's sweep.yaml is used; only --address may be given")
        sweep.require_ray()
        spec = sweep.read_spec(args.resume)
        if args.agent and args.agent != spec.agent:
            raise RlmError(f"sweep '{args.resume}' is of agent '{spec.agent}', not '{args.agent}'")
        rows = sweep.run_sweep(resume=args.resume, address=args.address)
    else:
        if not args.agent or not args.env:
            raise RlmError("sweep needs an agent and --env (e.g. rlmorning sweep dqn --env CartPole-v1), "
                           "or --resume SWEEP_DIR")
        sweep.require_ray()
        spec = sweep.SweepSpec(
            agent=args.agent, env=args.env, seeds=args.seeds, steps=args.steps, grid=sweep.parse_grid(args.grid),
            overrides=list(args.overrides), config=args.config, search=args.search, samples=args.samples,
            scheduler=args.scheduler, metric=args.metric, mode=args.mode, cpus_per_trial=args.cpus_per_trial,
            gpus_per_trial=args.gpus_per_trial, max_concurrent=args.max_concurrent,
            max_failures=args.max_failures, name=args.name or "", root=args.root,
        )
        rows = sweep.run_sweep(spec, address=args.address)
    return 0 if all(r.status in ("done", "stopped early") for r in rows) else 1


def _cmd_report(args: argparse.Namespace) -> int:
    from rlmorning.report import write_report

    rep = write_report(args.runs, out=args.out, baseline=args.baseline, metric=args.metric, reps=args.reps,
                       seed=args.seed, reference=args.reference)
    print(rep.summary())
    return 0
