"""NTM vs LSTM on the NTM paper's Copy task, generalisation to longer sequences, and RL on the algorithmic envs.

1. Supervised Copy (Graves et al. 2014): 8-bit vectors, lengths 1-20, NTM with memory 128 x 20 and an LSTM
   controller of 100 units vs the LSTM baseline (3 x 256), both through ``rlmorning train ntm``. Reports the
   bits-per-sequence error (training batches, averaged over each log window) against sequences seen, the
   first point below ``--target`` (0.1 bits), and the time taken.
2. Generalisation: the trained models on ``--eval-sequences`` fresh sequences of each ``--lengths`` (30,
   50, 80, 120): wrong bits per sequence and the bit error rate (the bar: NTM < 5% at length 50).
3. RL: ``rlmorning train a2c`` with ``core=lstm`` and ``core=ntm`` on Copy-v0, DuplicatedInput-v0, Reverse-v0
   and RepeatCopy-v0 (gym's curriculum drives the input length). Reports the first step at which the
   20-episode training mean reached gym's reward threshold, the curriculum level reached, and the mean of
   the last 100 training episodes (gym's criterion is a 100-episode mean >= threshold).

Everything is seeded and runs on CPU by default. The full runs take hours on a laptop; ``--smoke`` runs a
tiny version of every part (a minute or two) that only shows the pipeline works::

    python bench/ntm.py --smoke
    python bench/ntm.py                                   # the full benchmark
    python bench/ntm.py --skip-rl --sequences 50000 --seeds 0 1 2
    python bench/ntm.py --skip-supervised --rl-steps 2000000 --rl-envs Copy DuplicatedInput
"""

from __future__ import annotations

import rlmorning  # noqa: F401  (first: it sets OpenMP's waiting before torch loads; see rlmorning.threads)

# isort: split
import argparse
import datetime
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmorning import api
from rlmorning.agents.nets.ntm import count_parameters
from rlmorning.envs.algorithmic.ntm_tasks import NTMCopyEnv
from rlmorning.run import MetricsCSV, load_checkpoint

RL_THRESHOLDS = {"Copy": 25.0, "DuplicatedInput": 9.0, "RepeatCopy": 75.0, "Reverse": 25.0}

SMOKE = dict(sequences=300, max_length=5, lengths=[8, 12], memory=[16, 8], controller_size=32, lstm_size=32,
             lstm_layers=1, batch_size=4, lr=0.01, eval_sequences=20, rl_steps=2000, rl_envs=["Copy"], seeds=[0])


def supervised_run(core: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Train on Copy; returns the error curve, the first point below target, and timing."""
    n, m = args.memory
    run_dir = root / f"copy-{core}-{seed}"
    mean_steps = args.min_length + args.max_length + 1  # a length-L sequence takes 2L + 1 steps
    overrides = [
        f"core={core}", f"memory_size={n}", f"memory_width={m}", f"controller_size={args.controller_size}",
        f"lstm_size={args.lstm_size}", f"lstm_layers={args.lstm_layers}", f"batch_size={args.batch_size}",
        f"lr={args.lr}", f"lr_end={args.lr_end}", f"env_kwargs.min_length={args.min_length}",
        f"env_kwargs.max_length={args.max_length}",
        f"log_every={max(mean_steps * 50, mean_steps * args.sequences // 200)}", "eval_every=0",
        f"checkpoint_every={mean_steps * args.sequences // 10 + 1}", f"torch_threads={args.threads}",
    ]
    start = time.perf_counter()
    api.train("ntm", "rlmorning/NTMCopy-v0", overrides=overrides, run_dir=run_dir, seed=seed, progress=False,
              steps=mean_steps * args.sequences)
    wall = time.perf_counter() - start
    rows = [r for r in MetricsCSV.read(run_dir / "metrics.csv") if r.get("bits_error_per_seq")]
    curve = [(float(r["sequences"]), float(r["bits_error_per_seq"])) for r in rows]
    reached = next((s for s, e in curve if e < args.target), None)
    agent, _ = api.load_agent(run_dir)
    return {"run_dir": run_dir, "curve": curve, "reached": reached, "final": curve[-1][1] if curve else None,
            "wall": wall, "params": count_parameters(agent.net), "agent": agent}


def generalisation(agent: Any, lengths: list[int], count: int, seed: int) -> dict[int, tuple[float, float]]:
    """Wrong bits per sequence and bit error rate (%) on ``count`` fresh Copy sequences of each length."""
    env = NTMCopyEnv()
    env.reset(seed=seed + 424_242)
    out = {}
    for length in lengths:
        eps = [env.sample_episode(length) for _ in range(count)]
        inputs = np.stack([e.inputs for e in eps], axis=1)  # [T, B, in]
        targets = np.stack([e.targets for e in eps], axis=1)
        mask = np.stack([e.mask for e in eps], axis=1)
        wrong_total = 0.0
        for start in range(0, count, 50):  # batches keep memory small for long sequences
            bits, _ = agent.predict(inputs[:, start : start + 50])
            wrong = (bits != targets[:, start : start + 50]).sum(-1) * mask[:, start : start + 50]
            wrong_total += float(wrong.sum())
        per_seq = wrong_total / count
        out[length] = (per_seq, 100.0 * per_seq / (length * env.bits))
    return out


def rl_run(env_name: str, core: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """One a2c run; returns when the threshold was first reached, the curriculum level and the last 100 returns."""
    run_dir = root / f"rl-{env_name}-{core}-{seed}"
    overrides = [f"core={core}", f"log_every={max(1000, args.rl_steps // 200)}", "eval_every=0",
                 f"checkpoint_every={args.rl_steps // 5 + 1}", f"torch_threads={args.threads}"]
    start = time.perf_counter()
    api.train("a2c", f"rlmorning/{env_name}-v0", overrides=overrides + args.rl_set, run_dir=run_dir, seed=seed,
              steps=args.rl_steps, progress=False)
    wall = time.perf_counter() - start
    rows = [r for r in MetricsCSV.read(run_dir / "metrics.csv") if r.get("train_return")]
    threshold = RL_THRESHOLDS[env_name]
    reached = next((int(float(r["step"])) for r in rows if float(r["train_return"]) >= threshold), None)
    levels = [float(r["curriculum_min_length"]) for r in rows if r.get("curriculum_min_length")]
    last100 = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["train"]["recent_returns"]
    return {"reached": reached, "level": max(levels) if levels else None, "threshold": threshold,
            "last100": float(np.mean(last100)) if last100 else float("nan"), "wall": wall}


def fmt(x: float | None, spec: str = ".3g") -> str:
    return "not reached" if x is None else format(x, spec)


def main() -> None:
    """Parse the flags, run the parts asked for and print Markdown tables."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes: checks the pipeline, measures nothing")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--sequences", type=int, default=50_000, help="training sequences per supervised run")
    p.add_argument("--min-length", type=int, default=1)
    p.add_argument("--max-length", type=int, default=20)
    p.add_argument("--target", type=float, default=0.1, help="bits-per-sequence error to reach")
    p.add_argument("--lengths", type=int, nargs="+", default=[30, 50, 80, 120], help="generalisation lengths")
    p.add_argument("--eval-sequences", type=int, default=200, help="sequences per generalisation length")
    p.add_argument("--memory", type=int, nargs=2, default=[128, 20], metavar=("N", "M"))
    p.add_argument("--controller-size", type=int, default=100)
    p.add_argument("--lstm-size", type=int, default=256, help="LSTM baseline units per layer")
    p.add_argument("--lstm-layers", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-end", type=float, default=0.0, help="anneal lr linearly to this over the run (0: constant)")
    p.add_argument("--cores", nargs="+", default=["ntm", "lstm"], choices=["ntm", "lstm"])
    p.add_argument("--rl-steps", type=int, default=1_000_000, help="env steps per RL run")
    p.add_argument("--rl-envs", nargs="+", default=["Copy", "DuplicatedInput", "Reverse", "RepeatCopy"],
                   choices=sorted(RL_THRESHOLDS))
    p.add_argument("--rl-cores", nargs="+", default=["lstm", "ntm"], choices=["ntm", "lstm"])
    p.add_argument("--rl-set", action="append", default=[], metavar="KEY=VALUE", help="extra a2c overrides")
    p.add_argument("--skip-supervised", action="store_true")
    p.add_argument("--skip-rl", action="store_true")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = auto)")
    p.add_argument("--out-dir", help="keep the runs here (default: a temp folder)")
    args = p.parse_args()
    if args.smoke:
        for k, v in SMOKE.items():
            setattr(args, k, v)
    root = Path(args.out_dir) if args.out_dir else Path(tempfile.mkdtemp(prefix="bench-ntm-"))
    root.mkdir(parents=True, exist_ok=True)
    n, m = args.memory
    print(f"{datetime.date.today()} {platform.machine()} {platform.processor() or ''} torch {torch.__version__} "
          f"seeds={args.seeds}{' SMOKE' if args.smoke else ''}  runs in {root}")

    if not args.skip_supervised:
        anneal = f" -> {args.lr_end}" if args.lr_end else ""
        print(f"\n### Copy ({args.min_length}-{args.max_length}, 8 bits), {args.sequences} sequences, batch "
              f"{args.batch_size}, Adam {args.lr}{anneal}; NTM {n}x{m}, controller LSTM {args.controller_size}; "
              f"LSTM {args.lstm_layers}x{args.lstm_size}\n")
        results: dict[tuple[str, int], dict[str, Any]] = {}
        for core in args.cores:
            for seed in args.seeds:
                results[(core, seed)] = r = supervised_run(core, seed, args, root)
                r["gen"] = generalisation(r["agent"], args.lengths, args.eval_sequences, seed)
        print(f"| core | seed | params | sequences to < {args.target} bits | final bits/seq | wall (s) |")
        print("|---|---|---|---|---|---|")
        for (core, seed), r in results.items():
            print(f"| {core} | {seed} | {r['params']:,} | {fmt(r['reached'], '.0f')} | {fmt(r['final'])} | "
                  f"{r['wall']:.0f} |")
        marks = sorted({int(s) for r in results.values() for s, _ in r["curve"]})
        picks = [marks[int(i)] for i in np.linspace(0, len(marks) - 1, min(8, len(marks)))] if marks else []
        print("\nbits-per-sequence error (training batches) vs sequences seen:\n")
        print("| core | seed | " + " | ".join(str(s) for s in picks) + " |")
        print("|---|---|" + "---|" * len(picks))
        for (core, seed), r in results.items():
            curve = r["curve"]
            vals = [min(curve, key=lambda c, s=s: abs(c[0] - s))[1] for s in picks]
            print(f"| {core} | {seed} | " + " | ".join(f"{v:.3g}" for v in vals) + " |")
        print(f"\ngeneralisation ({args.eval_sequences} sequences per length): wrong bits per sequence "
              "(bit error %)\n")
        print("| core | seed | " + " | ".join(f"L={L}" for L in args.lengths) + " |")
        print("|---|---|" + "---|" * len(args.lengths))
        for (core, seed), r in results.items():
            cells = [f"{r['gen'][L][0]:.3g} ({r['gen'][L][1]:.2f}%)" for L in args.lengths]
            print(f"| {core} | {seed} | " + " | ".join(cells) + " |")

    if not args.skip_rl:
        print(f"\n### RL: a2c, {args.rl_steps} env steps per run (a2c_algorithmic preset"
              f"{', ' + ' '.join(args.rl_set) if args.rl_set else ''})\n")
        print("| env | core | seed | threshold | first step with 20-ep mean >= threshold | curriculum min_length "
              "reached | last-100-episode mean | wall (s) |")
        print("|---|---|---|---|---|---|---|---|")
        for env_name in args.rl_envs:
            for core in args.rl_cores:
                for seed in args.seeds:
                    r = rl_run(env_name, core, seed, args, root)
                    print(f"| {env_name}-v0 | {core} | {seed} | {r['threshold']:g} | {fmt(r['reached'], 'd')} | "
                          f"{fmt(r['level'], '.1f')} | {r['last100']:.2f} | {r['wall']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
