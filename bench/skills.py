"""Skill discovery, measured (docs/skills.md). Resumable: every run lives in ``--out`` and its result is cached
there as JSON; a second call skips finished runs, resumes interrupted ones (``checkpoints/latest.pt``) and
restarts runs that stopped before their first checkpoint.

(a) Mutual information. Skills are trained on MountainCar-v0 (``skills_classic``) and on one MinAtar game
    (``skills_minatar``). Reported: the discriminator's accuracy on replay batches over the last 10% of
    training (``disc_accuracy`` in metrics.csv), its accuracy on the states of greedy rollouts of every skill
    (``rlmorning plot-skills``), both against chance 1/K; how distinct the skills' coverage is (the mean total
    variation distance between the skills' histograms of visited states, beside its value with the skills
    shuffled) and the coverage plot of seed 0.
(b) Using the skills on MountainCar-v0. ``skills+ft``: the MountainCar runs of (a) (``--pretrain-steps``
    reward-free steps) then ``skills_finetune_classic`` with ``init_from`` for ``--finetune-steps`` steps.
    ``dqn``: DQN from scratch with the zoo's MountainCar settings (the learning keys of
    ``skills_finetune_classic``) for ``--pretrain-steps + --finetune-steps`` steps: the same total budget.
    Reported: reward-bearing env steps until the greedy evaluation mean (``--eval-episodes`` episodes every
    ``--eval-every`` steps) first reaches ``--threshold`` (-110); the pretraining steps are listed separately.

    python bench/skills.py                                   # 5 seeds, full budget
    python bench/skills.py --seeds 0 --pretrain-steps 2000 --finetune-steps 1000 --minatar-steps 2000 \\
        --eval-every 500 --out /tmp/skills-smoke             # a smoke test of the script
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from _resumable import cached, train_or_resume, write_cached

from rlmorning.errors import RlmError

DQN_MOUNTAINCAR = ["encoder=mlp", "encoder_kwargs.hidden=[256,256]", "buffer_size=10000", "batch_size=128",
                   "lr=0.004", "gamma=0.98", "target_update_period=600", "train_freq=16", "gradient_steps=8",
                   "learning_starts=1000", "eps_start=1.0", "eps_end=0.07", "eps_fraction=0.2", "eval_epsilon=0.0",
                   "heldout_states=0"]
"""RL Baselines3 Zoo's tuned MountainCar-v0 DQN (hyperparams/dqn.yml), the same learning keys as fine-tuning."""


def read_metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def column(rows: list[dict[str, str]], name: str) -> list[tuple[int, float]]:
    return [(int(float(r["step"])), float(r[name])) for r in rows if r.get(name)]


def steps_to_threshold(rows: list[dict[str, str]], threshold: float) -> int | None:
    """The first evaluation step whose greedy mean return is >= ``threshold`` (None: never)."""
    return next((step for step, v in column(rows, "eval_return_mean") if v >= threshold), None)


def skills_run(args: argparse.Namespace, env: str, seed: int) -> dict:
    """(a): train skills on ``env``; the discriminator's accuracy in training and on greedy rollouts."""
    minatar = env.startswith("MinAtar/")
    steps = args.minatar_steps if minatar else args.pretrain_steps
    run = args.out / f"{env.replace('/', '-')}-skills-{seed}"
    common = [f"num_skills={args.num_skills}", "torch_threads=1", "eval_every=0",
              f"checkpoint_every={max(steps // 10, 1)}"]
    train_or_resume("skills", env, run, steps, seed, "skills_minatar" if minatar else "skills_classic", common)
    acc = column(read_metrics(run), "disc_accuracy")
    tail = [v for s, v in acc if s > 0.9 * steps] or [v for _, v in acc[-1:]]
    return {"env": env, "seed": seed, "run": str(run), "steps": steps, "num_skills": args.num_skills,
            "train_accuracy": float(np.mean(tail)) if tail else None, **coverage(args, run)}


def coverage(args: argparse.Namespace, run: Path) -> dict:
    """``plot-skills`` of a finished skills run: accuracy on greedy rollouts, coverage distinctness, the plot."""
    from rlmorning.viz.skills import plot_skills

    plot = plot_skills(run, out=run / "plots" / "skills.png", episodes=args.plot_episodes, max_steps=1000)
    return {"rollout_accuracy": plot["accuracy"], "distinctness": plot["distinctness"],
            "distinctness_shuffled": plot["distinctness_shuffled"],
            "skill_returns": [float(np.mean(r)) for r in plot["returns"]], "plot": str(plot["png"])}


def with_coverage(args: argparse.Namespace, key: str, result: dict) -> dict:
    """A cached (a) result written before coverage distinctness was measured gets it (and is cached again)."""
    if "distinctness" not in result:
        result.update(coverage(args, Path(result["run"])))
        write_cached(args.out, key, result)
    return result


def finetune_run(args: argparse.Namespace, seed: int, pretrained: str) -> dict:
    """(b): fine-tune the best skill of ``pretrained`` on MountainCar's reward."""
    run = args.out / f"MountainCar-v0-skills-ft-{seed}"
    overrides = [f"init_from={pretrained}", f"num_skills={args.num_skills}", "torch_threads=1",
                 f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}",
                 f"checkpoint_every={args.eval_every * 5}"]
    train_or_resume("skills", "MountainCar-v0", run, args.finetune_steps, seed, "skills_finetune_classic", overrides)
    rows = read_metrics(run)
    init = column(rows, "init_skill")
    evals = column(rows, "eval_return_mean")
    return {"method": "skills+ft", "seed": seed, "run": str(run), "pretrain_steps": args.pretrain_steps,
            "steps": args.finetune_steps, "init_skill": int(init[0][1]) if init else None,
            "to_threshold": steps_to_threshold(rows, args.threshold), "final_eval": evals[-1][1] if evals else None}


def dqn_run(args: argparse.Namespace, seed: int) -> dict:
    """(b): DQN from scratch with the whole budget, every step reward-bearing."""
    run = args.out / f"MountainCar-v0-dqn-{seed}"
    steps = args.pretrain_steps + args.finetune_steps
    overrides = DQN_MOUNTAINCAR + ["torch_threads=1", f"eval_every={args.eval_every}",
                                   f"eval_episodes={args.eval_episodes}", f"checkpoint_every={args.eval_every * 5}"]
    train_or_resume("dqn", "MountainCar-v0", run, steps, seed, "dqn_classic", overrides)
    rows = read_metrics(run)
    evals = column(rows, "eval_return_mean")
    return {"method": "dqn", "seed": seed, "run": str(run), "pretrain_steps": 0, "steps": steps,
            "to_threshold": steps_to_threshold(rows, args.threshold), "final_eval": evals[-1][1] if evals else None}


def _ms(values: list[float]) -> str:
    return f"{np.mean(values):.3f} +- {np.std(values):.3f}" if values else "n/a"


def table(mi: list[dict], use: list[dict], threshold: float) -> str:
    """Markdown tables of (a) and (b)."""
    lines = ["(a) discriminator accuracy (mean +- std over seeds) vs chance 1/K", "",
             "| env | seeds | K | chance | accuracy, replay (last 10%) | accuracy, greedy rollouts "
             "| coverage distinctness (skills shuffled) | coverage (seed 0) |",
             "|---|---|---|---|---|---|---|---|"]
    for env in dict.fromkeys(r["env"] for r in mi):
        rs = [r for r in mi if r["env"] == env]
        k = rs[0]["num_skills"]
        first = min(rs, key=lambda r: r["seed"])
        lines.append(f"| {env} | {len(rs)} | {k} | {1 / k:.3f} | "
                     f"{_ms([r['train_accuracy'] for r in rs if r['train_accuracy'] is not None])} | "
                     f"{_ms([r['rollout_accuracy'] for r in rs if r['rollout_accuracy'] is not None])} | "
                     f"{_ms([r['distinctness'] for r in rs])} ({_ms([r['distinctness_shuffled'] for r in rs])}) | "
                     f"{first['plot']} |")
    lines += ["", f"(b) MountainCar-v0: reward-bearing env steps until the greedy mean >= {threshold:g}", "",
              "| method | seeds | reward-free pretraining steps | reward-bearing budget | reached | steps to "
              "threshold, median (mean over runs that reached it) | final eval (mean) |",
              "|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(r["method"] for r in use):
        rs = [r for r in use if r["method"] == method]
        hit = [r["to_threshold"] for r in rs if r["to_threshold"] is not None]
        finals = [r["final_eval"] for r in rs if r["final_eval"] is not None]
        median = f"{np.median(hit):,.0f} ({np.mean(hit):,.0f})" if hit else "never"
        lines.append(f"| {method} | {len(rs)} | {rs[0]['pretrain_steps']:,} | {rs[0]['steps']:,} | "
                     f"{len(hit)}/{len(rs)} | {median} | {np.mean(finals):.1f} |" if finals else
                     f"| {method} | {len(rs)} | {rs[0]['pretrain_steps']:,} | {rs[0]['steps']:,} | "
                     f"{len(hit)}/{len(rs)} | {median} | n/a |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--out", type=Path, default=Path("runs/bench-skills"), help="run folders and cached results")
    p.add_argument("--num-skills", type=int, default=8)
    p.add_argument("--minatar", default="MinAtar/Breakout", help="the MinAtar game of (a)")
    p.add_argument("--pretrain-steps", type=int, default=100_000, help="reward-free skill steps on MountainCar")
    p.add_argument("--minatar-steps", type=int, default=200_000, help="skill steps on the MinAtar game")
    p.add_argument("--finetune-steps", type=int, default=50_000, help="reward-bearing fine-tuning steps")
    p.add_argument("--eval-every", type=int, default=2_500)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--threshold", type=float, default=-110.0)
    p.add_argument("--plot-episodes", type=int, default=3, help="greedy episodes per skill for plot-skills")
    p.add_argument("--parts", nargs="+", choices=("mi", "use"), default=["mi", "use"])
    args = p.parse_args(argv)
    for name in ("pretrain_steps", "minatar_steps", "finetune_steps", "eval_every", "eval_episodes", "num_skills"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    mi: list[dict] = []
    use: list[dict] = []
    for seed in args.seeds:
        mc_key, minatar_key = f"skills-MountainCar-v0-{seed}", f"skills-{args.minatar.replace('/', '-')}-{seed}"
        mc = cached(args.out, mc_key, lambda s=seed: skills_run(args, "MountainCar-v0", s))
        if "mi" in args.parts:
            mi.append(with_coverage(args, mc_key, mc))
            mi.append(with_coverage(args, minatar_key, cached(args.out, minatar_key,
                                                              lambda s=seed: skills_run(args, args.minatar, s))))
        if "use" in args.parts:
            try:
                use.append(cached(args.out, f"ft-{seed}", lambda s=seed, m=mc["run"]: finetune_run(args, s, m)))
            except RlmError as exc:
                raise SystemExit(f"bench/skills.py: {exc}") from None
            use.append(cached(args.out, f"dqn-{seed}", lambda s=seed: dqn_run(args, s)))
    print(table(mi, use, args.threshold))


if __name__ == "__main__":
    main()
