"""Sweeps on Ray Tune: trials are ordinary run directories, a dead worker's trial resumes from its
checkpoint, ``--resume`` skips finished trials, and a missing Ray is one line.

One local Ray instance (2 CPUs) is shared by the module; each sweep trains CartPole for 400 steps.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rlmorning.cli import main
from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV, read_config

TINY = [
    "learning_starts=100", "eval_every=200", "eval_episodes=2", "heldout_states=10", "checkpoint_every=100",
    "log_every=50", "encoder_kwargs.hidden=[32]", "train_freq=4", "gradient_steps=1", "buffer_size=1000",
]
# Every trial logs at 50, 100, ..., 400 and evaluates at 200 and 400 (eval rows follow the log row).
EXPECTED_STEPS = [50, 100, 150, 200, 200, 250, 300, 350, 400, 400]


@pytest.fixture(scope="module")
def local_ray():
    pytest.importorskip("ray.tune")
    import ray

    from rlmorning.sweep import init_ray

    started = init_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


def _steps(run_dir: Path) -> list[int]:
    return [int(float(r["step"])) for r in MetricsCSV.read(run_dir / "metrics.csv")]


def _spec(tmp_path: Path, name: str, **kw):
    from rlmorning.sweep import SweepSpec

    return SweepSpec(agent="dqn", env="CartPole-v1", steps=400, overrides=list(TINY), name=name,
                     root=str(tmp_path / "sweeps"), **kw)


def _check_run_dir(run: Path) -> None:
    cfg = read_config(run)
    assert cfg["agent"] == "dqn" and cfg["env"] == "CartPole-v1" and cfg["steps"] == 400
    assert cfg["torch_threads"] == 1 and cfg["device"] == "cpu"
    assert (run / "checkpoints" / "latest.pt").is_file()
    assert (run / "checkpoints" / "best.pt").is_file()
    evals = [r for r in MetricsCSV.read(run / "metrics.csv") if r.get("eval_return_mean")]
    assert [int(float(r["step"])) for r in evals] == [200, 400]
    assert _steps(run) == EXPECTED_STEPS


@pytest.fixture(scope="module")
def finished_sweep(local_ray, tmp_path_factory):
    """A 2-trial grid sweep run through the CLI."""
    root = tmp_path_factory.mktemp("grid") / "sweeps"
    argv = ["sweep", "dqn", "--env", "CartPole-v1", "--steps", "400", "--grid", "lr=1e-3,3e-3",
            "--name", "grid", "--root", str(root)]
    for item in TINY:
        argv += ["--set", item]
    assert main(argv) == 0
    return root / "grid"


def test_two_trial_sweep_writes_run_dirs_and_table(finished_sweep):
    runs = sorted((finished_sweep / "runs").iterdir())
    assert [r.name for r in runs] == ["000-lr=1e-3-seed0", "001-lr=3e-3-seed0"]
    for run in runs:
        _check_run_dir(run)
    assert read_config(runs[0])["lr"] == pytest.approx(1e-3)
    assert read_config(runs[1])["lr"] == pytest.approx(3e-3)
    with (finished_sweep / "trials.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["trial"] for r in rows] == [r.name for r in runs]
    assert [r["lr"] for r in rows] == ["1e-3", "3e-3"]
    assert all(r["status"] == "done" and r["steps"] == "400" and r["attempts"] == "1" for r in rows)
    assert all(r["final_eval"] and Path(r["run_dir"]).resolve() == (finished_sweep / "runs" / r["trial"]).resolve()
               for r in rows)
    assert (finished_sweep / "sweep.yaml").is_file()


def test_resume_of_finished_sweep_reruns_nothing(finished_sweep):
    from rlmorning.sweep import run_sweep

    files = [p for p in (finished_sweep / "runs").rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in files}
    rows = run_sweep(resume=finished_sweep)
    assert [r.status for r in rows] == ["done", "done"]
    assert [r.attempts for r in rows] == [1, 1]
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_dead_worker_is_retried_from_checkpoint_and_resume_finishes_the_sweep(local_ray, tmp_path, monkeypatch):
    """One trial's worker dies after its first checkpoint (step 100, at step 150); Ray retries it
    (max_failures=1) from that checkpoint; the retry dies again after its next checkpoint (step 200, at
    step 250) and the trial errors. ``--resume`` then finishes it from step 200 and leaves the other,
    finished trial alone."""
    from rlmorning.sweep import FAULT_ENV, run_sweep

    marker = tmp_path / "crashed"
    monkeypatch.setenv(FAULT_ENV, str(marker))
    monkeypatch.setenv(f"{FAULT_ENV}_TIMES", "2")
    rows = run_sweep(_spec(tmp_path, "crash", seeds=2, max_failures=1))
    crashed, crashes = marker.read_text().split("\n")
    assert crashes == "2"
    by_name = {r.trial: r for r in rows}
    assert by_name[crashed].status == "error" and by_name[crashed].attempts == 2
    (finished,) = [r for r in rows if r.trial != crashed]
    assert finished.status == "done" and finished.attempts == 1
    _check_run_dir(Path(finished.run_dir))
    crashed_dir = Path(by_name[crashed].run_dir)
    # The retry resumed at step 100: the rows before it were kept, the step-150 row was redone once,
    # and training went on to step 250 instead of starting again from 0.
    assert _steps(crashed_dir) == [50, 100, 150, 200, 200, 250]
    done_csv = Path(finished.run_dir) / "metrics.csv"
    mtime = done_csv.stat().st_mtime_ns

    rows = run_sweep(resume=tmp_path / "sweeps" / "crash")
    assert {r.trial: (r.status, r.attempts) for r in rows} == {crashed: ("done", 3), finished.trial: ("done", 1)}
    assert done_csv.stat().st_mtime_ns == mtime
    _check_run_dir(crashed_dir)
    assert (tmp_path / "sweeps" / "crash" / "trials.csv").read_text().count("done") == 2


def test_optuna_search_with_asha(local_ray, tmp_path):
    pytest.importorskip("optuna")
    from rlmorning.sweep import parse_grid, run_sweep

    spec = _spec(tmp_path, "optuna", search="optuna", samples=2, scheduler="asha",
                 grid=parse_grid(["lr=1e-4:1e-2:log", "gamma=0.9,0.99"]))
    rows = run_sweep(spec)
    assert [r.trial.split("-")[0] for r in rows] == ["000", "001"]
    assert [r.seed for r in rows] == [0, 1]
    for r in rows:
        assert r.status in ("done", "stopped early")
        cfg = read_config(Path(r.run_dir))
        assert 1e-4 <= cfg["lr"] <= 1e-2 and cfg["gamma"] in (0.9, 0.99)
        assert cfg["seed"] == r.seed


def test_grid_parsing_and_trial_names():
    from rlmorning.sweep import SweepSpec, grid_trials, parse_grid, trial_overrides

    grid = parse_grid(["lr=1e-4,3e-4", "encoder_kwargs.hidden=[64],[64,64]", "double=true,false"])
    assert grid == {"lr": ["1e-4", "3e-4"], "encoder_kwargs.hidden": [[64], [64, 64]], "double": [True, False]}
    spec = SweepSpec(agent="dqn", env="CartPole-v1", seeds=2, grid=grid)
    trials = grid_trials(spec)
    assert len(trials) == 16 and [t.seed for t in trials[:4]] == [0, 1, 0, 1]
    assert trials[3].name == "003-lr=1e-4-hidden=64-double=false-seed1"
    assert len({t.name for t in trials}) == 16
    items = trial_overrides(spec, trials[3].params)
    assert "encoder_kwargs.hidden=[64]" in items and "double=false" in items
    assert "torch_threads=1" in items and "device=cpu" in items
    with pytest.raises(RlmError, match="--grid expects"):
        parse_grid(["lr"])


def test_bad_specs_fail_before_ray_starts(tmp_path):
    from rlmorning.sweep import SweepSpec, parse_grid, validate

    with pytest.raises(RlmError, match="unknown config key 'lrr'"):
        validate(SweepSpec(agent="dqn", env="CartPole-v1", grid=parse_grid(["lrr=1,2"])))
    with pytest.raises(RlmError, match="ranges need --search"):
        validate(SweepSpec(agent="dqn", env="CartPole-v1", grid=parse_grid(["lr=1e-4:1e-3"])))
    with pytest.raises(RlmError, match="--samples needs --search"):
        validate(SweepSpec(agent="dqn", env="CartPole-v1", samples=3))
    with pytest.raises(RlmError, match="eval_every must be > 0"):
        validate(SweepSpec(agent="dqn", env="CartPole-v1", overrides=["eval_every=0"]))
    with pytest.raises(RlmError, match="unknown --metric 'eval_retrun'"):
        validate(SweepSpec(agent="dqn", env="CartPole-v1", metric="eval_retrun"))


def test_more_cpus_than_the_machine_has_is_an_error(tmp_path):
    pytest.importorskip("ray.tune")
    from rlmorning.sweep import SweepSpec, run_sweep

    spec = SweepSpec(agent="dqn", env="CartPole-v1", cpus_per_trial=10_000, root=str(tmp_path), name="big")
    with pytest.raises(RlmError, match="more than this machine's"):
        run_sweep(spec)
    assert not (tmp_path / "big").exists()


def test_missing_ray_is_one_line(hide_package, capsys, tmp_path):
    hide_package("ray")
    assert main(["sweep", "dqn", "--env", "CartPole-v1", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == "rlmorning: error: sweeps need Ray: pip install 'rlmorning[ray]'\n"
    assert not (tmp_path / "sweeps").exists()
