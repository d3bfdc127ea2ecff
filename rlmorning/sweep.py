"""Sweeps on Ray Tune: many seeds and configs, each trial an ordinary run directory.

``sweeps/<name>/`` holds ``sweep.yaml`` (what was asked for, used by ``--resume``), ``runs/<trial>/``
(one run directory per trial, the same layout as ``rlmorning train`` writes), ``trials/<trial>.json``
(attempts and status of each trial), ``trials.csv`` (the final table) and ``tune/`` (Ray Tune's own
experiment state, what ``Tuner.restore`` reads).

Each trial calls :func:`rlmorning.api.train`, or :func:`rlmorning.api.resume` when its run directory
already holds ``checkpoints/latest.pt``: that is how a trial that Ray retries after its worker died
(``FailureConfig(max_failures=...)``) or that ``--resume`` restarts continues from its last checkpoint
instead of step 0. Every evaluation row is reported to Tune (``eval_return`` and the row's columns),
which drives Optuna search and the ASHA scheduler; rlmorning implements neither.

Ray is optional (``pip install 'rlmorning[ray]'``); nothing here imports it at module level.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlmorning.config import read_text_file
from rlmorning.errors import RlmError

RAY_MISSING = "sweeps need Ray: pip install 'rlmorning[ray]'"
OPTUNA_MISSING = "--search optuna needs optuna: pip install 'rlmorning[ray]'"
FAULT_ENV = "RLMORNING_SWEEP_FAULT"
"""Testing hook: a marker path. The first trial to write a checkpoint claims it and kills its own worker
(``os._exit``) after each attempt's first new checkpoint, ``RLMORNING_SWEEP_FAULT_TIMES`` times (default 1)."""
TUNE_DIR = "tune"
METRICS = ("eval_return", "eval_return_mean", "eval_return_std", "heldout_q")
"""What each evaluation reports to Tune (``eval_return`` is ``eval_return_mean``)."""
SEARCHES = ("optuna",)
SCHEDULERS = ("asha",)


def require_ray() -> None:
    """Raise the one-line install hint when Ray Tune cannot be imported."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise RlmError(RAY_MISSING) from None


# ----------------------------------------------------------------------------------------- the spec
@dataclass
class SweepSpec:
    """Everything a sweep was asked for; written to ``sweep.yaml`` and read back by ``--resume``."""

    agent: str
    env: str
    seeds: int = 1
    steps: int | None = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    config: str | None = None
    search: str | None = None
    samples: int = 1
    scheduler: str | None = None
    metric: str = "eval_return"
    mode: str = "max"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    max_failures: int = 3
    name: str = ""
    root: str = "sweeps"

    @property
    def sweep_dir(self) -> Path:
        return Path(self.root) / self.name


@dataclass(frozen=True)
class TrialSpec:
    """One trial of a grid sweep: its seed, the grid values and the run directory's name."""

    index: int
    seed: int
    params: dict[str, Any]
    name: str


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["lr=1e-4,3e-4", "hidden=[64],[64,64]"]`` -> ``{"lr": ["1e-4", "3e-4"], "hidden": [[64], [64, 64]]}``.

    Values are read as YAML, as ``--set`` values are (the config types them later). For ``--search``,
    ``key=LO:HI`` is a uniform range and ``key=LO:HI:log`` a log-uniform one.
    """
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise RlmError(f"--grid expects key=v1,v2,..., got '{item}'")
        key, raw = (s.strip() for s in item.split("=", 1))
        if not key or not raw:
            raise RlmError(f"--grid expects key=v1,v2,..., got '{item}'")
        try:
            values = yaml.safe_load(f"[{raw}]")
        except yaml.YAMLError:
            values = [v.strip() for v in raw.split(",")]
        if not isinstance(values, list) or not values:
            raise RlmError(f"--grid {key}: no values in '{raw}'")
        if key in grid:
            raise RlmError(f"--grid {key} given twice")
        grid[key] = values
    return grid


_RANGE = re.compile(r"^\s*([^:\s]+)\s*:\s*([^:\s]+)\s*(:\s*log)?\s*$")


def _range_of(values: list[Any]) -> tuple[float, float, bool, bool] | None:
    """``["1e-4:1e-2:log"]`` -> ``(1e-4, 1e-2, log=True, integer=False)``; None if not a range."""
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    m = _RANGE.match(values[0])
    if not m:
        return None
    try:
        lo, hi = yaml.safe_load(m.group(1)), yaml.safe_load(m.group(2))
        is_int = isinstance(lo, int) and isinstance(hi, int) and not isinstance(lo, bool)
        lo_f, hi_f = float(lo), float(hi)
    except (ValueError, TypeError, yaml.YAMLError):
        return None
    if not lo_f < hi_f:
        raise RlmError(f"--grid range '{values[0]}': LO must be < HI")
    return lo_f, hi_f, bool(m.group(3)), is_int


def _fmt_value(value: Any) -> str:
    """A value as a ``--set`` string that parses back to the same thing."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _short(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    else:
        text = _fmt_value(value)
    return re.sub(r"[^A-Za-z0-9.+_-]+", "", text.replace(",", "_"))[:24]


def trial_name(index: int, params: dict[str, Any], seed: int) -> str:
    """``003-lr=0.0003-n_step=3-seed1``: the trial's run directory name (unique by its index)."""
    parts = [f"{index:03d}"]
    parts += [f"{k.split('.')[-1]}={_short(v)}" for k, v in params.items()]
    parts.append(f"seed{seed}")
    return "-".join(parts)[:120]


def grid_trials(spec: SweepSpec) -> list[TrialSpec]:
    """Every combination of the grid's values times ``seeds`` seeds (0..N-1), seeds varying fastest."""
    keys = list(spec.grid)
    combos = list(itertools.product(*(spec.grid[k] for k in keys))) or [()]
    out = []
    for combo in combos:
        params = dict(zip(keys, combo, strict=True))
        for seed in range(spec.seeds):
            i = len(out)
            out.append(TrialSpec(i, seed, params, trial_name(i, params, seed)))
    return out


def trial_overrides(spec: SweepSpec, params: dict[str, Any]) -> list[str]:
    """The ``--set`` items of one trial: the sweep's, its grid values, and per-trial resources."""
    items = list(spec.overrides) + [f"{k}={_fmt_value(v)}" for k, v in params.items()]
    keys = {i.split("=", 1)[0].strip() for i in items}
    if "torch_threads" not in keys:
        items.append(f"torch_threads={max(1, int(spec.cpus_per_trial))}")
    if "device" not in keys:
        items.append(f"device={'cuda' if spec.gpus_per_trial > 0 else 'cpu'}")
    return items


def validate(spec: SweepSpec) -> int:
    """Check the spec before starting Ray (bad keys, names and values fail here); returns the trial steps."""
    from rlmorning.api import resolve_run_config

    if spec.seeds < 1:
        raise RlmError(f"--seeds must be >= 1, got {spec.seeds}")
    if spec.samples < 1:
        raise RlmError(f"--samples must be >= 1, got {spec.samples}")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0:
        raise RlmError("--cpus-per-trial must be > 0 and --gpus-per-trial >= 0")
    if spec.max_concurrent is not None and spec.max_concurrent < 1:
        raise RlmError(f"--max-concurrent must be >= 1, got {spec.max_concurrent}")
    if spec.max_failures < 0:
        raise RlmError(f"--max-failures must be >= 0, got {spec.max_failures}")
    if spec.metric not in METRICS:
        raise RlmError(f"unknown --metric '{spec.metric}'. Valid: {', '.join(METRICS)}")
    if spec.mode not in ("max", "min"):
        raise RlmError(f"--mode must be max or min, got '{spec.mode}'")
    if spec.search is not None and spec.search not in SEARCHES:
        raise RlmError(f"unknown --search '{spec.search}'. Valid: {', '.join(SEARCHES)}")
    if spec.scheduler is not None and spec.scheduler not in SCHEDULERS:
        raise RlmError(f"unknown --scheduler '{spec.scheduler}'. Valid: {', '.join(SCHEDULERS)}")
    if spec.search is None and spec.samples != 1:
        raise RlmError("--samples needs --search optuna (a grid sweep runs every combination x --seeds)")
    if spec.search is not None and spec.seeds != 1:
        raise RlmError("--seeds is for grid sweeps; with --search every sample is one trial with its own seed "
                       "(0, 1, 2, ...)")
    if spec.search is not None and not spec.grid:
        raise RlmError("--search optuna needs a search space: --grid key=v1,v2 (choice) or --grid key=LO:HI[:log]")
    combos: list[dict[str, Any]] = []
    if spec.search is None:
        for key, values in spec.grid.items():
            if _range_of(values) is not None:
                raise RlmError(f"--grid {key}={values[0]} is a range: ranges need --search optuna")
        combos = [t.params for t in grid_trials(spec)[:: spec.seeds]]
    else:  # every choice and both ends of every range, one key at a time
        ends = {k: ([r[0], r[1]] if (r := _range_of(v)) else list(v)) for k, v in spec.grid.items()}
        base = {k: v[0] for k, v in ends.items()}
        combos = [base] + [{**base, k: x} for k, v in ends.items() for x in v[1:]]
    steps = 0
    for params in combos:
        try:
            cfg = resolve_run_config(spec.agent, spec.env, spec.config, trial_overrides(spec, params),
                                     steps=spec.steps)
            check_agent_config(spec.agent, cfg.agent_config)
        except RlmError as exc:
            if not params:
                raise
            shown = " ".join(f"{k}={_fmt_value(v)}" for k, v in params.items())
            raise RlmError(f"--grid {shown}: {exc}") from None
        if cfg.trainer.eval_every <= 0:
            raise RlmError("sweeps report evaluations to Ray Tune: eval_every must be > 0")
        steps = max(steps, cfg.trainer.steps)
    return steps


def check_agent_config(agent: str, agent_config: Any) -> None:
    """The agent's own checks of its config (the ``_validate`` function of its module, where it has one), without
    building networks or buffers: a bad value fails before any trial starts instead of in every trial."""
    from rlmorning.agents import AGENTS

    module = sys.modules.get(getattr(AGENTS.get(agent).factory, "__module__", ""))
    check = getattr(module, "_validate", None)
    if callable(check):
        check(agent_config)


def write_spec(spec: SweepSpec) -> None:
    """``sweep.yaml``: the spec, for ``--resume`` and for people."""
    from rlmorning.run import write_yaml

    write_yaml(spec.sweep_dir / "sweep.yaml", asdict(spec))


def read_spec(sweep_dir: str | Path) -> SweepSpec:
    """The spec of an existing sweep directory (``sweep.yaml``)."""
    path = Path(sweep_dir) / "sweep.yaml"
    if not path.is_file():
        raise RlmError(f"'{sweep_dir}' is not a sweep directory (no sweep.yaml)")
    try:
        data = yaml.safe_load(read_text_file(path)) or {}
    except yaml.YAMLError:
        raise RlmError(f"'{path}' is not valid YAML") from None
    if not isinstance(data, dict):
        raise RlmError(f"'{path}' does not look like an rlmorning sweep")
    try:
        spec = SweepSpec(**data)
    except TypeError as exc:
        raise RlmError(f"'{path}' does not look like an rlmorning sweep: {exc}") from None
    spec.root, spec.name = str(Path(sweep_dir).parent), Path(sweep_dir).name
    return spec


# ---------------------------------------------------------------------------------- the trial side
def _trial_state_path(sweep_dir: Path, name: str) -> Path:
    return sweep_dir / "trials" / f"{name}.json"


def read_trial_state(sweep_dir: Path, name: str) -> dict[str, Any]:
    path = _trial_state_path(sweep_dir, name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_trial_state(sweep_dir: Path, name: str, state: dict[str, Any]) -> None:
    from rlmorning.run import atomic_write_bytes

    path = _trial_state_path(sweep_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(state, indent=1).encode())


def _eval_rows(run_dir: Path) -> list[dict[str, str]]:
    from rlmorning.run import MetricsCSV

    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    return [r for r in MetricsCSV.read(path) if r.get("eval_return_mean") not in (None, "")]


def _tune_metrics(step: int, row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k in ("step", "wall_time") or v in ("", None):
            continue
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue  # eval_protocol and other text
    out["eval_return"] = out["eval_return_mean"]
    out["step"] = int(step)
    return out


def trial_identity(spec: dict[str, Any], config: dict[str, Any], experiment_tag: str) -> tuple[str, int, dict]:
    """(run name, seed, params) of a trial: grid trials by their index, search trials by Tune's counter."""
    if "trial" in config:
        t = spec["trials"][int(config["trial"])]
        return t["name"], t["seed"], t["params"]
    index = int(experiment_tag.split("_", 1)[0]) - 1  # Tune's searcher counts from 1
    params = {k: config[k] for k in spec["grid"] if k in config}
    return trial_name(index, params, index), index, params


class TrialNamer:
    """Tune's ``trial_name_creator`` / ``trial_dirname_creator``: the run directory's name."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = {"trials": spec["trials"], "grid": spec["grid"]}

    def __call__(self, trial: Any) -> str:
        return trial_identity(self.spec, trial.config, trial.experiment_tag)[0]


def run_trial(config: dict[str, Any], spec: dict[str, Any]) -> None:
    """The Tune function trainable: train (or resume) one run directory, reporting each evaluation."""
    from ray import tune

    from rlmorning import api

    sweep_dir = Path(spec["sweep_dir"])
    name = tune.get_context().get_trial_name()
    if "trial" in config:
        _, seed, params = trial_identity(spec, config, "")
    else:  # search trials: the name starts with Tune's counter, which is also the seed
        seed, params = int(name.split("-", 1)[0]), {k: config[k] for k in spec["grid"] if k in config}
    run_dir = sweep_dir / "runs" / name
    latest = run_dir / "checkpoints" / "latest.pt"
    state = read_trial_state(sweep_dir, name)
    if state.get("status") == "done" and (run_dir / "metrics.csv").is_file():
        rows = _eval_rows(run_dir)
        if rows:  # finished before the driver recorded it: report, touch nothing
            tune.report(_tune_metrics(int(float(rows[-1]["step"])), rows[-1]))
            return
    state.update(name=name, seed=seed, params=params, run_dir=str(run_dir), status="running",
                 attempts=int(state.get("attempts", 0)) + 1)
    _write_trial_state(sweep_dir, name, state)

    fault = spec.get("fault")
    start_mtime = latest.stat().st_mtime_ns if latest.is_file() else None
    pending: list[tuple[int, dict[str, Any]]] = []
    reported: list[int] = []

    def report_pending() -> None:
        # Reported one metrics row late, i.e. after the trainer wrote the checkpoint that follows an
        # evaluation: a scheduler that stops the trial on this report cannot cut that checkpoint short.
        while pending:
            step, row = pending.pop(0)
            with tempfile.TemporaryDirectory() as tmp:
                # A pointer, not a copy: the state lives in the run directory's checkpoints/latest.pt.
                Path(tmp, "rlmorning.json").write_text(json.dumps({"run_dir": str(run_dir), "step": step}))
                checkpoint = tune.Checkpoint.from_directory(tmp) if latest.is_file() else None
                tune.report(_tune_metrics(step, row), checkpoint=checkpoint)
            reported.append(step)

    def on_metrics(step: int, row: dict[str, Any]) -> None:
        if fault and _fault_due(fault, name, latest, start_mtime):
            os._exit(1)  # a worker that dies (tests of the retry and resume paths)
        report_pending()
        if row.get("eval_return_mean") is not None:
            pending.append((step, row))

    if latest.is_file():
        summary = api.resume(run_dir, steps=spec["steps"], progress=False, on_metrics=on_metrics)
    else:
        if run_dir.exists():  # died before its first checkpoint: nothing to keep
            shutil.rmtree(run_dir)
        summary = api.train(
            spec["agent"], spec["env"], config=spec["config"], overrides=trial_overrides_from(spec, params),
            run_dir=run_dir, on_metrics=on_metrics, steps=spec["steps"], seed=seed, progress=False,
        )
    state.update(status="done", steps=summary["steps"])
    _write_trial_state(sweep_dir, name, state)
    if not pending and not reported:  # resumed at its last step: nothing was evaluated in this attempt
        rows = _eval_rows(run_dir)
        if rows:
            pending.append((int(float(rows[-1]["step"])), rows[-1]))
    report_pending()


def _fault_due(fault: dict[str, Any], name: str, latest: Path, start_mtime: int | None) -> bool:
    """The testing hook of :data:`FAULT_ENV`: True when this trial should kill its worker now."""
    if not latest.is_file() or latest.stat().st_mtime_ns == start_mtime:
        return False  # no checkpoint written by this attempt yet
    marker = Path(fault["marker"])
    # the marker is only ever whole: another trial may read it at any moment (written aside, then linked or
    # renamed into place; the first trial to link it owns the fault)
    claim = marker.with_name(f"{marker.name}.{name}.{os.getpid()}")
    claim.write_text(f"{name}\n0")
    try:
        os.link(claim, marker)
    except FileExistsError:
        pass
    finally:
        claim.unlink()
    owner, count = marker.read_text().split("\n")
    if owner != name or int(count) >= fault["times"]:
        return False
    claim.write_text(f"{name}\n{int(count) + 1}")
    os.replace(claim, marker)
    return True


def trial_overrides_from(spec: dict[str, Any], params: dict[str, Any]) -> list[str]:
    """:func:`trial_overrides` from the plain-dict spec the trainable receives."""
    s = SweepSpec(agent=spec["agent"], env=spec["env"], overrides=spec["overrides"],
                  cpus_per_trial=spec["cpus_per_trial"], gpus_per_trial=spec["gpus_per_trial"])
    return trial_overrides(s, params)


# ---------------------------------------------------------------------------------- the driver side
def quiet_ray_env() -> None:
    """Environment (``setdefault``: the user's settings win) and log levels for a quiet Ray: no usage-stats
    prompt, no Tune console tables, no Tune result loggers (each run has its own metrics.csv)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    for name in ("ray", "ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"ray(\..*)?")


def _check_local_resources(spec: SweepSpec) -> None:
    """A trial that needs more than this machine has would wait forever on a local Ray: say so instead."""
    cpus = os.cpu_count() or 1
    if spec.cpus_per_trial > cpus:
        raise RlmError(f"--cpus-per-trial {spec.cpus_per_trial:g} is more than this machine's {cpus} CPUs")
    if spec.gpus_per_trial > 0:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if spec.gpus_per_trial > gpus:
            raise RlmError(f"--gpus-per-trial {spec.gpus_per_trial:g} but this machine has {gpus} CUDA GPU(s)")


ADDRESS_TIMEOUT_S = 5.0
"""How long :func:`check_ray_address` waits for a cluster's port to answer."""


def check_ray_address(address: str | None, timeout: float = ADDRESS_TIMEOUT_S) -> None:
    """One line, after at most ``timeout`` seconds, when nothing listens at a Ray address (``HOST:PORT``,
    ``ray://HOST:PORT`` or ``auto``); ``ray.init`` would retry for minutes, printing connection errors."""
    if not address or address == "local":
        return
    shown = address
    if address == "auto":  # the address of the latest 'ray start' on this machine, as ray.init reads it
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:
            return
        try:
            address = canonicalize_bootstrap_address_or_die("auto")
        except (ConnectionError, ValueError) as exc:
            raise RlmError(f"no Ray cluster found for --address auto: {str(exc).splitlines()[0]}") from None
    target = address.removeprefix("ray://")
    host, sep, port_text = target.rpartition(":")
    try:
        port = int(port_text) if sep else 10001 if address.startswith("ray://") else -1
    except ValueError:
        port = -1
    if not 0 < port < 65536 or (sep and not host):
        raise RlmError(f"--address '{shown}' is not auto, HOST:PORT or ray://HOST:PORT")
    host = (host or port_text).strip("[]")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except TimeoutError:
        raise RlmError(f"no Ray cluster answers at '{shown}' (no reply within {timeout:g} s); check --address / "
                       "RAY_ADDRESS and that the cluster runs ('ray status' on its head node)") from None
    except OSError as exc:
        raise RlmError(f"no Ray cluster answers at '{shown}' ({exc.strerror or exc}); check --address / RAY_ADDRESS "
                       "and that the cluster runs ('ray status' on its head node)") from None


def init_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Start an embedded local Ray (or connect to ``address`` / ``RAY_ADDRESS``); True if this call started it.

    Reuses a Ray that is already initialised in this process.
    """
    require_ray()
    import ray

    quiet_ray_env()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_ray_address(address)
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                  configure_logging=True)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **common)
    except (ConnectionError, RuntimeError) as exc:
        hint = ""
        if address != "auto" and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            hint = (" (clusters started with 'ray start' use token authentication: set RAY_AUTH_MODE=token and "
                    "the cluster's token in RAY_AUTH_TOKEN or ~/.ray/auth_token; 'ray get-auth-token' on the head "
                    "prints it)")
        raise RlmError(f"cannot connect to the Ray cluster at '{address}': {str(exc).splitlines()[0]}{hint}") from None
    return True


def error_line(error: BaseException) -> str:
    """The reason a trial failed, in one line: the message of the RlmError that Ray wrapped, else the last line
    of the traceback Ray's error prints (its first line only names the Ray task)."""
    cause: BaseException | None = error
    for _ in range(10):  # RayTaskError(.cause) chains
        inner = getattr(cause, "cause", None)
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    if isinstance(cause, RlmError) and cause.args:
        return str(cause.args[0])
    text = str(error).strip()
    found = re.findall(r"^\S*RlmError: (.+)$", text, re.MULTILINE)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return found[-1] if found else lines[-1] if lines else type(error).__name__


@dataclass
class TrialRow:
    """One line of the trials table."""

    trial: str
    params: dict[str, Any]
    seed: int
    status: str
    steps: int
    final_eval: float | None
    attempts: int
    run_dir: str


def collect_trials(sweep_dir: Path, spec: SweepSpec, steps: int,
                   errors: dict[str, str] | None = None) -> list[TrialRow]:
    """The trials table, read from the run directories and trial state files (not from Ray)."""
    errors = errors or {}
    rows = []
    names = {p.stem for p in (sweep_dir / "trials").glob("*.json")} | set(errors)
    for name in sorted(names):
        st = read_trial_state(sweep_dir, name)
        run_dir = Path(st.get("run_dir") or sweep_dir / "runs" / name)
        evals = _eval_rows(run_dir)
        from rlmorning.run import MetricsCSV

        all_rows = MetricsCSV.read(run_dir / "metrics.csv") if (run_dir / "metrics.csv").is_file() else []
        last_step = int(float(all_rows[-1]["step"])) if all_rows else 0
        if name in errors:
            status = "error"
        elif st.get("status") == "done":
            status = "done"
        elif spec.scheduler and last_step < steps:
            status = "stopped early"
        else:
            status = "unfinished"
        rows.append(TrialRow(
            trial=name, params=st.get("params", {}), seed=int(st.get("seed", 0)), status=status, steps=last_step,
            final_eval=float(evals[-1]["eval_return_mean"]) if evals else None,
            attempts=int(st.get("attempts", 0)), run_dir=str(run_dir),
        ))
    return rows


def write_trials_csv(path: Path, rows: list[TrialRow]) -> None:
    """``trials.csv``: one column per grid key, then seed, status, steps, final eval, attempts, run dir."""
    keys = sorted({k for r in rows for k in r.params})
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["trial", *keys, "seed", "status", "steps", "final_eval", "attempts", "run_dir"])
        for r in rows:
            w.writerow([r.trial, *(_fmt_value(r.params[k]) if k in r.params else "" for k in keys), r.seed,
                        r.status, r.steps, "" if r.final_eval is None else f"{r.final_eval:.6g}", r.attempts,
                        r.run_dir])


def _display_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def trials_table(rows: list[TrialRow], title: str = "") -> Any:
    """A rich Table of the trials (the run directory's name is the trial's)."""
    from rich.table import Table

    table = Table(title=title)
    for col, justify in (("config", "left"), ("seed", "right"), ("status", "left"), ("steps", "right"),
                         ("final eval", "right"), ("attempts", "right"), ("run dir", "left")):
        wrap = col in ("config", "run dir")
        table.add_column(col, justify=justify, overflow="fold" if wrap else "ellipsis",  # type: ignore[arg-type]
                         no_wrap=not wrap)
    for r in rows:
        cfg = " ".join(f"{k}={_fmt_value(v)}" for k, v in r.params.items()) or "-"
        final = "-" if r.final_eval is None else f"{r.final_eval:.2f}"
        style = {"done": "green", "error": "red"}.get(r.status, "yellow")
        table.add_row(cfg, str(r.seed), f"[{style}]{r.status}[/{style}]", str(r.steps), final,
                      str(r.attempts), _display_path(r.run_dir))
    return table


def _search_space(spec: SweepSpec) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for key, values in spec.grid.items():
        rng = _range_of(values)
        if rng is None:
            space[key] = tune.choice(values)
            continue
        lo, hi, log, is_int = rng
        if is_int:
            space[key] = (tune.lograndint if log else tune.randint)(int(lo), int(hi) + 1)
        else:
            space[key] = (tune.loguniform if log else tune.uniform)(lo, hi)
    return space


def _make_tuner(spec: SweepSpec, trainable: Any, trial_specs: list[TrialSpec], steps: int, namer: Any) -> Any:
    from ray import tune

    metric = spec.metric
    search_alg = None
    if spec.search == "optuna":
        try:
            import optuna
            from ray.tune.search.optuna import OptunaSearch
        except ImportError:
            raise RlmError(OPTUNA_MISSING) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        search_alg = OptunaSearch(seed=0)
        param_space = _search_space(spec)
    else:
        param_space = {"trial": tune.grid_search([t.index for t in trial_specs])}
    scheduler = None
    if spec.scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        from rlmorning.api import resolve_run_config

        cfg = resolve_run_config(spec.agent, spec.env, spec.config, list(spec.overrides), steps=spec.steps)
        grace = max(1, min(cfg.trainer.eval_every, steps))
        scheduler = ASHAScheduler(time_attr="step", max_t=steps, grace_period=grace, reduction_factor=3)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=metric, mode=spec.mode, search_alg=search_alg, scheduler=scheduler,
            num_samples=spec.samples if spec.search else 1, max_concurrent_trials=spec.max_concurrent,
            trial_name_creator=namer, trial_dirname_creator=namer,
        ),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=str(spec.sweep_dir.resolve()), verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        ),
    )


def _signal_handlers() -> dict[int, Any]:
    """The SIGINT and SIGTERM handlers of this process (main thread only), to restore after Ray Tune's ``fit``,
    which leaves its own installed: a later training in this process would not see Ctrl-C as usual."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    return {s: h for s, h in handlers.items() if h is not None}


def run_sweep(spec: SweepSpec | None = None, *, resume: str | Path | None = None, address: str | None = None,
              console: Any = None) -> list[TrialRow]:
    """Run (or with ``resume=SWEEP_DIR`` continue) a sweep; prints and returns the trials table.

    A new sweep needs ``spec``; ``resume`` reads ``SWEEP_DIR/sweep.yaml`` and restores Tune's experiment
    (finished trials are not rerun; unfinished and errored ones continue from their checkpoints).
    """
    require_ray()
    from rich.console import Console

    console = console or Console()
    if resume is not None:
        spec = read_spec(resume)
    elif spec is None:
        raise ValueError("run_sweep needs a spec or resume=")
    if not spec.name:
        safe_env = spec.env.replace("/", "-")
        spec.name = f"{safe_env}-{spec.agent}-{time.strftime('%Y%m%d-%H%M%S')}"
    if spec.config and (spec.config.endswith((".yaml", ".yml")) or Path(spec.config).exists()):
        spec.config = str(Path(spec.config).resolve())  # trials run with another working directory
    steps = validate(spec)
    if not (address or os.environ.get("RAY_ADDRESS")):
        _check_local_resources(spec)
    else:  # before anything is written: an address where no cluster answers is one line
        check_ray_address(address or os.environ.get("RAY_ADDRESS"))
    sweep_dir = spec.sweep_dir
    if resume is None:
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise RlmError(f"'{sweep_dir}' already exists; continue it with --resume {sweep_dir} or pick --name")
        (sweep_dir / "runs").mkdir(parents=True, exist_ok=True)
        write_spec(spec)
    trial_specs = grid_trials(spec) if spec.search is None else []
    trainable_spec = {
        "agent": spec.agent, "env": spec.env, "config": spec.config, "overrides": list(spec.overrides),
        "steps": steps, "grid": {k: list(v) for k, v in spec.grid.items()},
        "trials": [asdict(t) for t in trial_specs], "sweep_dir": str(sweep_dir.resolve()),
        "cpus_per_trial": spec.cpus_per_trial, "gpus_per_trial": spec.gpus_per_trial,
        "fault": {"marker": os.environ[FAULT_ENV], "times": int(os.environ.get(f"{FAULT_ENV}_TIMES", "1"))}
        if os.environ.get(FAULT_ENV) else None,
    }
    handlers = _signal_handlers()
    started = init_ray(address)
    try:
        from ray import tune

        trainable = tune.with_resources(
            tune.with_parameters(run_trial, spec=trainable_spec),
            {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
        )
        tune_path = str((sweep_dir / TUNE_DIR).resolve())
        if resume is not None and tune.Tuner.can_restore(tune_path):
            tuner = tune.Tuner.restore(tune_path, trainable, resume_unfinished=True, resume_errored=True)
        else:  # a new sweep, or one stopped before Tune saved anything: trial states skip what finished
            tuner = _make_tuner(spec, trainable, trial_specs, steps, TrialNamer(trainable_spec))
        results = tuner.fit()
        errors = {}
        for res in results:
            if res.error is not None:
                errors[Path(res.path).name] = error_line(res.error)[:300]
    finally:
        if started:
            import ray

            ray.shutdown()
        for signum, handler in handlers.items():  # Ray and Tune leave theirs installed in this process
            signal.signal(signum, handler)
    rows = collect_trials(sweep_dir, spec, steps, errors)
    write_trials_csv(sweep_dir / "trials.csv", rows)
    console.print(trials_table(rows, title=f"sweep {sweep_dir}: {spec.agent} on {spec.env}"))
    for name, err in errors.items():
        console.print(f"[red]{name}[/red]: {err}")
    if any(r.status in ("error", "unfinished") for r in rows):
        console.print(f"continue with: rlmorning sweep --resume {sweep_dir}")
    console.print(f"trials table: {sweep_dir / 'trials.csv'}")
    return rows
