"""Atari 100k on this CPU: the ``atari100k`` preset (DrQ(eps)) on a list of games x seeds, beside published scores.

Each run is ``rlmorning train dqn --env GAME --config atari100k --seed S`` in ``ROOT/GAME/seedS``: 100k agent
steps, then the preset's final evaluation (100 episodes, true game score, epsilon 0.001; the protocol is
printed). Runs are resumable pieces: an interrupted run continues from its checkpoint (exactly), a finished
one is skipped. ``--parallel 1`` (the default) trains one run at a time on all cores; ``--parallel 2`` trains
two side by side, each pinned to its own core with one torch thread. On 2 cores both finish a batch at about
the same rate (one run alone at 23-25 agent steps/s with 2 threads, a pair at 11-12 each), and one at a time
gives each result in half the time. Wall time per run (all its pieces, including
the final evaluation) is kept in ``ROOT/GAME/seedS/bench_wall.json``.

``--summarize`` prints per-game means beside the published DrQ(eps), SPR, DER and random scores, a row per run
(the final score's std over episodes, the evaluation by half the run, the training return at each quarter),
and hands the runs to ``rlmorning report`` (human-normalised IQM / median / mean with bootstrap CIs, performance
profile) written to ``ROOT/report.md``.

    python bench/atari100k.py --games Breakout --seeds 0                 # one run (about 1 h 20 min here)
    python bench/atari100k.py                                            # 5 games x 3 seeds, one at a time
    python bench/atari100k.py --summarize
    python bench/atari100k.py --games Breakout --seeds 0 --root runs/variant --set init=xavier   # a variant
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_GAMES = ["Breakout", "Pong", "Boxing", "Freeway", "MsPacman"]


class _Children:
    """The training processes running now. SIGTERM or Ctrl-C to this script reaches them (each writes its
    checkpoint and exits, so the runs resume exactly); no new run starts after it."""

    def __init__(self) -> None:
        self.procs: set[subprocess.Popen] = set()
        self.stopping = False
        self.lock = threading.Lock()

    def start(self, cmd: list[str], **kwargs: object) -> subprocess.Popen | None:
        with self.lock:
            if self.stopping:
                return None
            proc = subprocess.Popen(cmd, **kwargs)
            self.procs.add(proc)
            return proc

    def wait(self, proc: subprocess.Popen) -> int:
        code = proc.wait()
        with self.lock:
            self.procs.discard(proc)
        return code

    def stop(self, signum: int, frame: object) -> None:
        with self.lock:
            if not self.stopping:
                print(f"\n{signal.Signals(signum).name}: stopping the running training(s); they write their "
                      "checkpoints and resume from them next time", flush=True)
            self.stopping = True
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)


CHILDREN = _Children()


def run_dir(root: Path, game: str, seed: int) -> Path:
    return root / game / f"seed{seed}"


def final_eval(run: Path) -> dict | None:
    """The run's final evaluation row (eval_return_mean at the last step), or None before it exists."""
    from rlmorning.run import MetricsCSV, read_config

    csv_path = run / "metrics.csv"
    if not (run / "config.yaml").is_file() or not csv_path.is_file():
        return None
    steps = int(read_config(run)["steps"])
    rows = [r for r in MetricsCSV.read(csv_path) if r.get("eval_return_mean") not in (None, "")]
    if rows and int(float(rows[-1]["step"])) >= steps:
        return rows[-1]
    return None


def _wall_file(run: Path) -> Path:
    return run / "bench_wall.json"


def recorded_wall(run: Path) -> float:
    path = _wall_file(run)
    return float(json.loads(path.read_text())["wall_s"]) if path.is_file() else 0.0


SETTINGS_IGNORED = ("device", "progress", "torch_threads", "flush_subnormals")
"""Config keys a batch may change without making an earlier run of the same folder another experiment."""


def settings_mismatch(run: Path, game: str, seed: int, args: argparse.Namespace) -> list[str]:
    """``key: run's value, asked value`` for each config key in which the run already in ``run`` differs from
    what this batch would train (keys the run predates count at their defaults); empty for a new run."""
    from rlmorning.api import resolve_run_config
    from rlmorning.report import completed_config
    from rlmorning.run import read_config

    if not (run / "config.yaml").is_file():
        return []
    have = completed_config(read_config(run))
    want = resolve_run_config("dqn", game, config="atari100k", overrides=list(args.set), steps=args.steps,
                              seed=seed, device="cpu").to_flat()
    keys = sorted((set(have) | set(want)) - set(SETTINGS_IGNORED))
    return [f"{k}: {have.get(k)!r} there, {want.get(k)!r} asked" for k in keys if have.get(k) != want.get(k)]


_SAY_LOCK = threading.Lock()


def say(line: str) -> None:
    """Print one whole line, even when runs side by side report at the same moment."""
    with _SAY_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def train_one(game: str, seed: int, args: argparse.Namespace, cores: list[int] | None) -> str:
    """Train (or resume) one run to its end; returns a one-line status. A folder holding a run of other
    settings (``--set``, ``--steps``) is left alone and named, never resumed or counted as this batch's."""
    run = run_dir(args.root, game, seed)
    differing = settings_mismatch(run, game, seed, args)
    if differing:
        return (f"{game} seed {seed}: skipped: {run} holds a run with other settings ({'; '.join(differing)}); "
                "use another --root or remove that folder")
    if final_eval(run) is not None:
        return f"{game} seed {seed}: done already"
    if CHILDREN.stopping:
        return f"{game} seed {seed}: not started (stopped)"
    resume = (run / "checkpoints" / "latest.pt").is_file()
    cmd = [sys.executable, "-m", "rlmorning.cli", "train", "dqn"]  # into a file: one plain line per metrics row
    cmd += ["--resume", str(run)] if resume else [
        "--env", game, "--config", "atari100k", "--seed", str(seed), "--run-dir", str(run),
        "--steps", str(args.steps), "--set", f"torch_threads={args.threads}", "--device", "cpu"]
    if not resume:
        cmd += [arg for kv in args.set for arg in ("--set", kv)]
    run.parent.mkdir(parents=True, exist_ok=True)
    if not resume and run.exists() and not any(run.iterdir()):
        run.rmdir()
    log_path = args.root / f"{game}-seed{seed}.log"
    say(f"{game} seed {seed}: {'resuming' if resume else 'training'} in {run} (progress lines in {log_path})")
    t0 = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"\n# {datetime.datetime.now().isoformat(timespec='seconds')} {' '.join(cmd)}\n")
        log.flush()
        # its own session: a Ctrl-C at the terminal reaches it once, through CHILDREN.stop, not twice
        proc = CHILDREN.start(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=(lambda: os.sched_setaffinity(0, cores)) if cores else None)
        if proc is None:
            return f"{game} seed {seed}: not started (stopped)"
        returncode = CHILDREN.wait(proc)
    wall = recorded_wall(run) + time.perf_counter() - t0
    if run.is_dir():
        _wall_file(run).write_text(json.dumps({"wall_s": round(wall, 1)}))
    status = "finished" if final_eval(run) is not None else f"stopped (exit {returncode}; run again to resume)"
    return f"{game} seed {seed}: {status}, {wall / 60:.1f} min so far"


def train_all(args: argparse.Namespace) -> bool:
    """Train the games x seeds; False when a signal stopped the batch early."""
    jobs = [(g, s) for g in args.games for s in args.seeds]
    ncores = len(os.sched_getaffinity(0))
    per = max(1, ncores // args.parallel)
    slots = [sorted(os.sched_getaffinity(0))[i * per:(i + 1) * per] for i in range(args.parallel)]
    args.threads = args.threads or per
    print(f"{len(jobs)} run(s), {args.parallel} at a time, {args.threads} torch thread(s) each, cores {slots}")
    free = list(range(args.parallel))

    def work(job: tuple[str, int]) -> str:
        slot = free.pop()
        try:
            return train_one(*job, args, slots[slot] if args.parallel > 1 else None)
        finally:
            free.append(slot)

    previous = {sig: signal.signal(sig, CHILDREN.stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            for line in pool.map(work, jobs):
                say(line)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return not CHILDREN.stopping


TRACED = ("aux_grad_ratio", "hallucination_cos", "teacher_loss", "dead_units", "recycled_units")
"""Logged diagnostics whose spread over a run the per-run table gives (median and 5-95% range)."""


def final_dead_units(run: Path) -> tuple[float, int, tuple[float, float] | None] | None:
    """(fraction, count) of the final agent's feature units that are zero on all the run's held-out states
    (``heldout_states.npz``), and the (mean cosine between, mean norm of) those states' inputs to the feature
    layer (cosine near 1: it reads almost the same input on every state); None without a checkpoint or
    held-out states."""
    from rlmorning import api
    from rlmorning.evaluation import heldout_dead_units, heldout_feature_inputs, load_states

    states_path = run / "heldout_states.npz"
    if not (run / "checkpoints" / "latest.pt").is_file() or not states_path.is_file():
        return None
    agent, _ = api.load_policy(run)
    states = load_states(states_path)
    dead = heldout_dead_units(agent, states)
    if dead is None:
        return None
    return dead[0], dead[1], heldout_feature_inputs(agent, states)


def _number(value: str | None) -> float | None:
    return None if value in (None, "") else float(value)


def run_trace(run: Path, steps: int | None = None) -> dict[str, Any]:
    """What a finished run's ``metrics.csv`` says beside its final score (``steps``: the run's length, by default
    its ``config.yaml``'s).

    ``final``: (mean, std over episodes, episodes) of the final evaluation; ``mid_eval``: the same for the
    last evaluation logged at or before half the run (None when there was none); ``train_return``: the
    training return (clipped, recent games) last logged at or before each quarter of ``steps`` (None before
    the first); per metric of :data:`TRACED` that the run logged, (median, 5th, 95th percentile);
    ``dead_end``: :func:`final_dead_units`.
    """
    from rlmorning.run import MetricsCSV, read_config

    steps = int(read_config(run)["steps"]) if steps is None else steps
    rows = MetricsCSV.read(run / "metrics.csv")

    def last(key: str, upto: float) -> dict[str, str] | None:
        logged = [r for r in rows if _number(r.get(key)) is not None and float(r["step"]) <= upto]
        return logged[-1] if logged else None

    def evaluation(row: dict[str, str] | None) -> tuple[float, float, int] | None:
        if row is None:
            return None
        return (float(row["eval_return_mean"]), _number(row.get("eval_return_std")) or 0.0,
                int(_number(row.get("eval_episodes")) or 0))

    out: dict[str, Any] = {
        "final": evaluation(last("eval_return_mean", steps)),
        "mid_eval": evaluation(last("eval_return_mean", steps / 2)),
        "train_return": [None if (r := last("train_return", steps * q / 4)) is None else float(r["train_return"])
                         for q in (1, 2, 3, 4)],
    }
    out["dead_end"] = final_dead_units(run)
    for key in TRACED:
        values = np.array([v for r in rows if (v := _number(r.get(key))) is not None])
        if values.size:
            out[key] = (float(np.median(values)), float(np.percentile(values, 5)), float(np.percentile(values, 95)))
    return out


def trace_cells(trace: dict[str, Any]) -> list[str]:
    """The per-run table's cells for :func:`run_trace`'s result."""
    def ev(e: tuple[float, float, int] | None) -> str:
        return "-" if e is None else f"{e[0]:.2f} ± {e[1]:.2f} ({e[2]} ep.)"

    aux = [f"{key} {m:.3g} [{lo:.3g}, {hi:.3g}]" for key in TRACED if key in trace
           for m, lo, hi in [trace[key]]]
    returns = " / ".join("-" if r is None else f"{r:.2f}" for r in trace["train_return"])
    dead = trace.get("dead_end")
    dead_cell = "-" if dead is None else f"{dead[0]:.3f} of {dead[1]}" + (
        "" if dead[2] is None else f"; input cos {dead[2][0]:.3f}, norm {dead[2][1]:.3g}")
    return [ev(trace["final"]), ev(trace["mid_eval"]), returns, dead_cell, "; ".join(aux) or "-"]


PER_RUN_LEGEND = ("Per run: final score ± std over episodes; the last evaluation by half the run; training return "
                  "(clipped, recent games) at each quarter; dead feature units at the end (zero on all held-out "
                  "states: the Q head reads nothing from them) with the mean cosine between, and mean norm of, those "
                  "states' inputs to the feature layer (cosine near 1: the same input on every state); logged "
                  "diagnostics, median [5%, 95%] over the run")
PER_RUN_HEADER = ("final score | eval by half-run | training return at 1/4, 1/2, 3/4, end | "
                  "dead units at the end; input cos, norm | logged diagnostics")
PER_RUN_RULE = "---:|---:|---|---:|---|"


def summarize(args: argparse.Namespace) -> None:
    from rlmorning.envs.atari import parse_atari_name
    from rlmorning.published_scores import PUBLISHED_ATARI100K, PUBLISHED_SOURCES
    from rlmorning.report import write_report

    games = sorted(p.name for p in args.root.iterdir() if p.is_dir()) if args.root.is_dir() else []
    header = "| game | seeds | rlmorning (mean +- std over seeds) | per seed | wall min/run | " + \
        " | ".join(PUBLISHED_ATARI100K) + " |"
    lines = [header, "|" + "---|" * (5 + len(PUBLISHED_ATARI100K))]
    finished: list[str] = []
    finished_games: list[str] = []
    per_run: list[str] = []
    protocol = ""
    for game in games:
        runs = sorted((args.root / game).glob("seed*"))
        done = [(r, final_eval(r)) for r in runs]
        done = [(r, row) for r, row in done if row is not None]
        if not done:
            continue
        finished += [str(r) for r, _ in done]
        finished_games.append(game)
        scores = np.array([float(row["eval_return_mean"]) for _, row in done])
        protocol = done[0][1].get("eval_protocol", "")
        episodes = {int(float(row["eval_episodes"])) for _, row in done}
        walls = [recorded_wall(r) / 60 for r, _ in done]
        rom = parse_atari_name(game) or game
        published = " | ".join(_fmt(PUBLISHED_ATARI100K[a].get(rom)) for a in PUBLISHED_ATARI100K)
        lines.append(f"| {game} | {len(done)} | {scores.mean():.1f} +- {scores.std():.1f} | "
                     f"{', '.join(f'{s:.1f}' for s in scores)} | {np.mean(walls):.0f} | {published} |")
        if episodes != {100}:
            lines[-1] += f" (evaluated over {sorted(episodes)} episodes)"
        per_run += [f"| {game} | {r.name[4:]} | " + " | ".join(trace_cells(run_trace(r))) + " |"
                    for r, _ in done]
    print(f"Atari 100k, `atari100k` preset, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} cores")
    print(f"protocol: {protocol}")
    print("\n".join(lines))
    if per_run:
        print("\n" + PER_RUN_LEGEND)
        print("| game | seed | " + PER_RUN_HEADER + " |")
        print("|---|---:|" + PER_RUN_RULE)
        print("\n".join(per_run))
    print("\npublished scores:")
    for name, source in PUBLISHED_SOURCES.items():
        print(f"  {name}: {source}")
    if finished:
        rep = write_report(finished, out=args.root / "report.md", baseline="human", reps=args.reps)
        print("\n" + rep.summary())
        print(_published_iqm(finished_games))  # the games with a finished run, as in the report


def _published_iqm(games: list[str]) -> str:
    """Human-normalised IQM of each published agent's per-game means over the same games (points, no CIs:
    the papers' per-run scores are not in this table)."""
    from scipy.stats import trim_mean

    from rlmorning.envs.atari import parse_atari_name
    from rlmorning.published_scores import PUBLISHED_ATARI100K
    from rlmorning.reference_scores import normalise

    roms = [parse_atari_name(g) or g for g in games]
    out = ["published agents on the same games (human-normalised, IQM of per-game means):"]
    for name, table in PUBLISHED_ATARI100K.items():
        if name in ("Random", "Human"):
            continue
        vals = [normalise(table[r], r, "human") for r in roms if table.get(r) is not None]
        if vals:
            out.append(f"  {name}: IQM {trim_mean(vals, 0.25):.3f} over {len(vals)} game(s)")
    return "\n".join(out)


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def add_run_arguments(p: argparse.ArgumentParser, games: list[str], root: Path) -> None:
    """The options of a batch of Atari-100k runs (shared by the benchmarks built on this runner)."""
    p.add_argument("--games", nargs="+", default=games)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100_000, help="agent steps per run (Atari 100k: 100000)")
    p.add_argument("--parallel", type=int, default=1, choices=[1, 2],
                   help="runs side by side (default 1: one run on all cores; 2: one core and thread each)")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (default: its share of the cores)")
    p.add_argument("--root", type=Path, default=root)
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides for new runs, repeatable (a variant of the preset: give it its own --root)")
    p.add_argument("--summarize", action="store_true", help="print the table and write the report; train nothing")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples of the report's CIs")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(p, DEFAULT_GAMES, Path("runs/atari100k"))
    args = p.parse_args()
    if args.summarize:
        summarize(args)
    else:
        args.root.mkdir(parents=True, exist_ok=True)
        train_all(args)


if __name__ == "__main__":
    main()
