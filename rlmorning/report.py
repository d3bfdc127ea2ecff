"""``rlmorning report``: aggregate final scores across seeds and envs as Agarwal et al. (2021) recommend.

Each run directory gives one score: the last evaluation row of its ``metrics.csv`` (``eval_return_mean``
by default, the mean return of that evaluation's episodes). Runs are grouped by agent and config (every
key but the seed and keys that do not change training: ``device``, ``progress``, ``torch_threads``); each
env is a task. Per group, the scores form a ``runs x tasks`` matrix on which ``rliable`` computes the
interquartile mean (IQM), median and mean with 95% stratified-bootstrap confidence intervals
(percentile method; runs resampled within each task), and performance profiles (the fraction of runs
scoring above each threshold). Atari scores can be human- or random-normalised with
:mod:`rlmorning.reference_scores`.

Reproducibility: rliable 1.2.0 draws its bootstrap indices from NumPy's global RNG (its
``random_state`` argument does not reach them), so each estimate here runs with the global RNG seeded
with ``seed`` and restores the caller's RNG state afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlmorning.config import check_seed
from rlmorning.errors import RlmError, check_writable_file
from rlmorning.outputs import writable_folder

RLIABLE_MISSING = "report needs rliable: pip install 'rlmorning[report]'"
IGNORED_KEYS = ("seed", "env", "device", "progress", "torch_threads", "flush_subnormals")
"""Config keys that do not split runs into groups (how fast it ran, not what was trained)."""
METRIC_NAMES = ("IQM", "Median", "Mean")
DEFAULT_REPS = 10_000
"""Bootstrap resamples of the aggregate CIs (Agarwal et al. used 50,000; pass --reps 50000 to match)."""
PROFILE_REPS = 2_000
"""Bootstrap resamples of the performance-profile bands (rliable's default; 101 thresholds each)."""


def _require_rliable() -> None:
    try:
        import rliable  # noqa: F401
        from rliable import library, metrics  # noqa: F401
    except ImportError:
        raise RlmError(RLIABLE_MISSING) from None


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG (which rliable's bootstrap uses) and restore its previous state afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def aggregate_func(scores: np.ndarray) -> np.ndarray:
    """IQM, median and mean of a ``runs x tasks`` matrix, in one bootstrap (as in rliable's examples)."""
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_median(scores),
                     metrics.aggregate_mean(scores)])


def score_distribution(scores: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """Fraction of all runs' scores above each threshold: rliable's score distribution, vectorised over taus."""
    return (scores.reshape(-1, 1) > np.asarray(taus).reshape(1, -1)).mean(axis=0)


def interval_estimates(score_dict: dict[str, np.ndarray], reps: int, seed: int
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's point estimates and 95% stratified-bootstrap CIs of :func:`aggregate_func` per group."""
    _require_rliable()
    from rliable import library as rly

    with seeded_global_rng(seed):
        return rly.get_interval_estimates(score_dict, aggregate_func, reps=reps)


# --------------------------------------------------------------------------------------- reading runs
@dataclass
class RunScore:
    """The final evaluation of one run directory."""

    path: Path
    agent: str
    env: str
    task: str
    rom: str | None
    seed: int
    config: dict[str, Any]
    score: float
    step: int
    episodes: int | None
    protocol: str


def find_runs(items: list[str]) -> list[Path]:
    """Run directories named by paths or globs; a folder without config.yaml contributes the runs inside it
    (``sweeps/<name>`` -> ``sweeps/<name>/runs/*``)."""
    found: list[Path] = []
    for item in items:
        matches = sorted(glob.glob(item)) or ([item] if Path(item).exists() else [])
        if not matches:
            raise RlmError(f"no run matches '{item}'")
        for m in matches:
            p = Path(m)
            if (p / "config.yaml").is_file():
                found.append(p)
            elif p.is_dir():
                inner = sorted(c.parent for c in p.glob("*/config.yaml"))
                inner += sorted(c.parent for c in p.glob("runs/*/config.yaml"))
                found.extend(inner)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise RlmError(f"no run directories (with config.yaml) in: {' '.join(items)}")
    return unique


def _metric_columns(paths: list[Path]) -> set[str]:
    """The columns of the runs' metrics.csv files, but ``step`` and text columns such as ``eval_protocol``."""
    from rlmorning.run import MetricsCSV

    columns: set[str] = set()
    for p in paths:
        if (p / "metrics.csv").is_file():
            for row in MetricsCSV.read(p / "metrics.csv"):
                columns.update(k for k, v in row.items() if k and v not in (None, ""))
    return columns - {"step", "eval_protocol"}


def load_run(path: Path, metric: str = "eval_return_mean") -> RunScore | str:
    """The run's final evaluation, or a string saying why it has none."""
    from rlmorning import envs as envs_mod
    from rlmorning.run import MetricsCSV, read_config

    cfg = completed_config(read_config(path))
    csv_path = path / "metrics.csv"
    if not csv_path.is_file():
        return "no metrics.csv"
    rows = [r for r in MetricsCSV.read(csv_path) if r.get(metric) not in (None, "")]
    if not rows:
        return f"no evaluation rows with '{metric}'"
    last = rows[-1]
    try:
        info = envs_mod.resolve(str(cfg["env"]))
        task, rom = info.display_name, (info.id if info.family == "atari" else None)
    except RlmError:
        task, rom = str(cfg["env"]), None
    episodes = last.get("eval_episodes")
    try:
        score, step = float(last[metric]), int(float(last.get("step") or 0))
        n_episodes = int(float(episodes)) if episodes not in (None, "") else None
        seed = int(cfg.get("seed", 0))
    except (TypeError, ValueError) as exc:
        raise RlmError(f"run '{path}': unreadable config.yaml or metrics.csv values ({exc})") from None
    return RunScore(
        path=path, agent=str(cfg["agent"]), env=str(cfg["env"]), task=task, rom=rom, seed=seed, config=cfg,
        score=score, step=step, episodes=n_episodes, protocol=last.get("eval_protocol") or "",
    )


def completed_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A run's config with the keys it predates set to today's defaults (an older version's keys translated), so
    runs of one setting group together whichever version of rlmorning wrote them; as written if it does not
    parse (an agent or key this version does not know)."""
    from rlmorning.agents import AGENTS
    from rlmorning.config import RunConfig, split_config

    flat = {k: v for k, v in cfg.items() if k not in ("agent", "env")}
    try:
        spec = AGENTS.get(str(cfg["agent"]))
        trainer, agent_config = split_config(flat, spec.config_cls, upgrade=True, warn=False)
    except (RlmError, KeyError, TypeError, ValueError):
        return cfg
    return {**cfg, **RunConfig(agent=str(cfg["agent"]), env=str(cfg["env"]), trainer=trainer,
                               agent_config=agent_config).to_flat()}


def _config_key(run: RunScore) -> str:
    return json.dumps({k: v for k, v in run.config.items() if k not in IGNORED_KEYS}, sort_keys=True, default=str)


# ------------------------------------------------------------------------------------------- groups
@dataclass
class Group:
    """Runs of one agent and config, by task; ``matrix`` is ``runs x tasks`` of (normalised) scores."""

    label: str
    agent: str
    differing: dict[str, Any]
    tasks: list[str]
    runs: dict[str, list[RunScore]]
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    raw: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    dropped: list[RunScore] = field(default_factory=list)


def group_runs(runs: list[RunScore]) -> list[Group]:
    """Group runs by (agent, config minus seed); label each group by the keys that tell groups apart."""
    by_key: dict[str, list[RunScore]] = {}
    for r in runs:
        by_key.setdefault(_config_key(r), []).append(r)
    configs = {k: json.loads(k) for k in by_key}
    all_keys = sorted({kk for c in configs.values() for kk in c})
    varying = [k for k in all_keys if len({json.dumps(c.get(k), sort_keys=True) for c in configs.values()}) > 1]
    varying = [k for k in varying if k != "agent"]
    groups: list[Group] = []
    for key, members in by_key.items():
        cfg = configs[key]
        differing = {k: cfg.get(k) for k in varying}
        label = " ".join([str(cfg["agent"])] + [f"{k}={_short(v)}" for k, v in differing.items()])
        by_task: dict[str, list[RunScore]] = {}
        for r in sorted(members, key=lambda r: (r.seed, str(r.path))):
            by_task.setdefault(r.task, []).append(r)
        groups.append(Group(label=label[:80], agent=str(cfg["agent"]), differing=differing,
                            tasks=sorted(by_task), runs=by_task))
    seen: dict[str, int] = {}
    for g in sorted(groups, key=lambda g: g.label):
        n = seen.get(g.label, 0)
        seen[g.label] = n + 1
        if n:
            g.label = f"{g.label} #{n + 1}"
    return sorted(groups, key=lambda g: g.label)


def _short(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= 24 else text[:21] + "..."


def build_matrices(groups: list[Group], baseline: str | None = None, reference: str = "atari57") -> None:
    """Fill each group's ``runs x tasks`` matrices (raw and normalised); tasks with more runs than the
    group's smallest task keep their first runs by seed (rliable needs equal runs per task)."""
    from rlmorning.reference_scores import get_table, normalise

    table = get_table(reference)
    if baseline is not None:
        missing = sorted({t for g in groups for t, rs in g.runs.items()
                          if rs[0].rom is None or rs[0].rom not in table.scores})
        if missing:
            raise RlmError(f"--baseline {baseline} needs {table.name} reference scores, which exist only for Atari "
                           f"games; none for: {', '.join(missing)}")
    for g in groups:
        n = min(len(g.runs[t]) for t in g.tasks)
        raw = np.zeros((n, len(g.tasks)))
        norm = np.zeros_like(raw)
        for j, t in enumerate(g.tasks):
            kept = g.runs[t][:n]
            g.dropped.extend(g.runs[t][n:])
            g.runs[t] = kept
            for i, r in enumerate(kept):
                raw[i, j] = r.score
                norm[i, j] = r.score if baseline is None else normalise(r.score, r.rom or "", baseline, reference)
        g.raw, g.matrix = raw, norm


# ------------------------------------------------------------------------------------------- report
@dataclass
class Report:
    """What ``write_report`` computed and wrote."""

    groups: list[Group]
    points: dict[str, np.ndarray]
    intervals: dict[str, np.ndarray]
    baseline: str | None
    reference: str
    metric: str
    reps: int
    seed: int
    out: Path
    plots: list[Path]
    skipped: list[tuple[Path, str]]
    markdown: str = ""

    def aggregate(self, label: str, name: str = "IQM") -> tuple[float, float, float]:
        """(point, CI low, CI high) of ``name`` (IQM, Median, Mean) for group ``label``."""
        i = METRIC_NAMES.index(name)
        return float(self.points[label][i]), float(self.intervals[label][0, i]), float(self.intervals[label][1, i])

    def summary(self) -> str:
        """A few lines for the terminal: the aggregate table and where the files are."""
        lines = [_aggregate_table(self)]
        lines.append(f"report: {self.out}")
        lines += [f"plot: {p}" for p in self.plots]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} run(s) without evaluations (listed in the report)")
        return "\n".join(lines)


def _rel(path: Path, out: Path) -> str:
    """``path`` relative to the report's folder (links in the Markdown keep working when both move)."""
    try:
        return os.path.relpath(path, Path(out).resolve().parent)
    except ValueError:  # another drive
        return str(path)


def _fmt(x: float) -> str:
    if not math.isfinite(x):
        return str(x)
    return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"


def _score_name(baseline: str | None) -> str:
    return {None: "raw score", "human": "human-normalised score", "random": "score above random"}[baseline]


def _aggregate_table(rep: Report) -> str:
    head = "| group | tasks | runs per task | " + " | ".join(f"{m} [95% CI]" for m in METRIC_NAMES) + " |"
    lines = [head, "|" + "---|" * (3 + len(METRIC_NAMES))]
    for g in rep.groups:
        cells = []
        for m in METRIC_NAMES:
            p, lo, hi = rep.aggregate(g.label, m)
            cells.append(f"{_fmt(p)} [{_fmt(lo)}, {_fmt(hi)}]")
        lines.append(f"| {g.label} | {len(g.tasks)} | {g.matrix.shape[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _markdown(rep: Report, runs_total: int) -> str:
    from importlib.metadata import version

    groups = rep.groups
    envs = sorted({t for g in groups for t in g.tasks})
    protocols: dict[str, set[str]] = {}
    episodes: set[int] = set()
    for g in groups:
        for t in g.tasks:
            for r in g.runs[t]:
                protocols.setdefault(r.protocol or "(not recorded)", set()).add(t)
                if r.episodes is not None:
                    episodes.add(r.episodes)
    from rlmorning.reference_scores import get_table

    ref = get_table(rep.reference)
    out = ["# rlmorning report", ""]
    out.append(f"{runs_total} runs in {len(groups)} group(s) on {len(envs)} env(s): {', '.join(envs)}. "
               f"Written {time.strftime('%Y-%m-%d %H:%M')}.")
    out += ["", "## Evaluation protocol", ""]
    ep = ", ".join(str(e) for e in sorted(episodes)) or "?"
    out.append(f"- Score of a run: its **final evaluation**, the last evaluation row of `metrics.csv` "
               f"(`{rep.metric}`: mean return over {ep} evaluation episode(s) on separate evaluation envs).")
    for proto, tasks in sorted(protocols.items()):
        out.append(f"- Evaluation protocol ({', '.join(sorted(tasks))}): {proto}")
    if rep.baseline == "human":
        out.append(f"- Scores are **human-normalised**: (score − random) / (human − random), so 0 = random play "
                   f"and 1 = human. Reference scores: {ref.source}.")
    elif rep.baseline == "random":
        out.append(f"- Scores are **random-normalised**: score − random (points above random play; game units, "
                   f"so not comparable across games). Reference scores: {ref.source}.")
    else:
        out.append("- Scores are **raw** returns (no normalisation; use `--baseline human` to aggregate Atari games).")
    out.append(f"- Aggregates over the runs × tasks matrix of each group with rliable {version('rliable')} "
               f"(Agarwal et al. 2021): IQM (25% trimmed mean), median and mean of per-task means; 95% "
               f"confidence intervals by stratified bootstrap (percentile method, runs resampled within each "
               f"task), **{rep.reps} bootstrap resamples, bootstrap seed {rep.seed}**. Performance profiles: "
               f"fraction of runs scoring above τ, bands from {min(rep.reps, PROFILE_REPS)} resamples.")
    if len({tuple(g.tasks) for g in groups}) > 1:
        out.append("- **Groups were run on different sets of envs**: their aggregates are not directly comparable.")
    out += ["", f"## Aggregate {_score_name(rep.baseline)}", "", _aggregate_table(rep), ""]
    for p in rep.plots:
        out.append(f"![{p.stem}]({p.name})")
    out += ["", "## Per env", ""]
    norm_col = rep.baseline is not None
    out.append("| group | env | runs | seeds | final eval mean ± std | " + ("normalised mean | " if norm_col else "")
               + "step |")
    out.append("|" + "---|" * (6 + norm_col))
    for g in groups:
        for j, t in enumerate(g.tasks):
            rs = g.runs[t]
            raw = g.raw[:, j]
            steps = sorted({r.step for r in rs})
            step_s = str(steps[0]) if len(steps) == 1 else f"{steps[0]}–{steps[-1]}"
            row = (f"| {g.label} | {t} | {len(rs)} | {', '.join(str(r.seed) for r in rs)} | "
                   f"{_fmt(float(raw.mean()))} ± {_fmt(float(raw.std()))} | ")
            if norm_col:
                row += f"{_fmt(float(g.matrix[:, j].mean()))} | "
            out.append(row + f"{step_s} |")
    out += ["", "## Groups", ""]
    for g in groups:
        diff = ", ".join(f"`{k}={json.dumps(v)}`" for k, v in g.differing.items()) or "the only config"
        out.append(f"- **{g.label}**: agent `{g.agent}`, {diff}")
    out += ["", "## Runs", "", "| group | env | seed | score | run |", "|---|---|---|---|---|"]
    for g in groups:
        for t in g.tasks:
            for r in g.runs[t]:
                out.append(f"| {g.label} | {t} | {r.seed} | {_fmt(r.score)} | `{_rel(r.path, rep.out)}` |")
    dropped = [r for g in groups for r in g.dropped]
    if dropped:
        out += ["", "Left out so that every env of a group has the same number of runs (rliable needs a "
                    "runs × tasks matrix): " + ", ".join(f"`{_rel(r.path, rep.out)}`" for r in dropped)]
    if rep.skipped:
        out += ["", "Skipped (no evaluation): " + ", ".join(f"`{_rel(p, rep.out)}` ({why})" for p, why in rep.skipped)]
    return "\n".join(out) + "\n"


def _plots(rep: Report, profile_taus: np.ndarray, profiles: dict, profile_cis: dict) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import plot_utils

    stem = rep.out.with_suffix("")
    xlabel = _score_name(rep.baseline).capitalize()
    paths = []
    fig, _ = plot_utils.plot_interval_estimates(rep.points, rep.intervals, metric_names=list(METRIC_NAMES),
                                                algorithms=[g.label for g in rep.groups], xlabel=xlabel,
                                                row_height=0.5, xlabel_y_coordinate=-1.3 / len(rep.groups))
    path = Path(f"{stem}-aggregates.png")
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    paths.append(path)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(profiles, profile_taus, performance_profile_cis=profile_cis, ax=ax,
                                         xlabel=f"{xlabel} (τ)", ylabel="Fraction of runs with score > τ",
                                         legend=False)
    if len(profiles) > 1:
        ax.legend(loc="upper right", fontsize="small")
    path = Path(f"{stem}-profiles.png")
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def build_report(items: list[str], *, baseline: str | None = None, metric: str = "eval_return_mean",
                 reps: int = DEFAULT_REPS, seed: int = 0, reference: str = "atari57", out: str | Path = "report.md"
                 ) -> tuple[Report, int, tuple[np.ndarray, dict, dict]]:
    """Read, group and aggregate runs (no files written); returns the report, the run count and profiles."""
    _require_rliable()
    from rliable import library as rly

    if reps < 1:
        raise RlmError(f"--reps must be >= 1, got {reps}")
    check_seed("--seed", seed)
    from rlmorning.run import METRIC_ALIASES  # not at import: it brings torch

    metric = METRIC_ALIASES.get(metric, metric)
    paths = find_runs(items)
    runs: list[RunScore] = []
    skipped: list[tuple[Path, str]] = []
    for p in paths:
        r = load_run(p, metric)
        if isinstance(r, str):
            skipped.append((p, r))
        else:
            runs.append(r)
    if not runs:
        columns = _metric_columns(paths)
        if metric not in columns:
            raise RlmError(f"no run's metrics.csv has a column '{metric}'; --metric can be one of: "
                           f"{', '.join(sorted(columns)) or 'none (no metrics.csv yet)'}")
        raise RlmError(f"none of the {len(paths)} run(s) has an evaluation yet ('{metric}' in metrics.csv)")
    groups = group_runs(runs)
    build_matrices(groups, baseline, reference)
    score_dict = {g.label: g.matrix for g in groups}
    points, intervals = interval_estimates(score_dict, reps, seed)
    allv = np.concatenate([m.ravel() for m in score_dict.values()])
    lo, hi = float(allv.min()), float(allv.max())
    if math.isclose(lo, hi):
        lo, hi = lo - 1.0, hi + 1.0
    taus = np.linspace(lo, hi, 101)
    with seeded_global_rng(seed):
        profiles, profile_cis = rly.create_performance_profile(score_dict, taus, reps=min(reps, PROFILE_REPS),
                                                               custom_profile_func=score_distribution)
    rep = Report(groups=groups, points=points, intervals=intervals, baseline=baseline, reference=reference,
                 metric=metric, reps=reps, seed=seed, out=Path(out), plots=[], skipped=skipped)
    return rep, len(runs), (taus, profiles, profile_cis)


def write_report(items: list[str], *, out: str | Path = "report.md", baseline: str | None = None,
                 metric: str = "eval_return_mean", reps: int = DEFAULT_REPS, seed: int = 0, reference: str = "atari57"
                 ) -> Report:
    """Aggregate the runs named by ``items`` and write ``out`` (Markdown) and PNG plots beside it."""
    check_writable_file(Path(out))  # before the bootstrap, which takes a while
    writable_folder(Path(out).parent)
    rep, n_runs, (taus, profiles, profile_cis) = build_report(items, baseline=baseline, metric=metric, reps=reps,
                                                              seed=seed, reference=reference, out=out)
    try:
        rep.out.parent.mkdir(parents=True, exist_ok=True)
        rep.plots = _plots(rep, taus, profiles, profile_cis)
        rep.markdown = _markdown(rep, n_runs)
        rep.out.write_text(rep.markdown)
    except OSError as exc:
        raise RlmError(f"cannot write report '{out}': {exc.strerror or exc}") from None
    return rep
