"""Ordinary mistakes and damaged files give one-line errors (exit status 2), never a traceback; ``import rlmorning``
registers rlmorning's Gymnasium ids without importing torch or ale_py."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rlmorning import api
from rlmorning.cli import main
from rlmorning.config import coerce
from rlmorning.errors import RlmError

BINARY = bytes(range(256)) * 8  # not UTF-8 (0x80 ... 0xff), with NUL bytes


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, out: str, err: str) -> str:
    """The error line of a CLI call that must fail with status 2 and one line on stderr, without a traceback."""
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("rlmorning: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 200-step CartPole DQN run with checkpoints/latest.pt (a few seconds)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    api.train("dqn", "CartPole-v1", run_dir=run, steps=200, device="cpu", progress=False,
              overrides=["learning_starts=100", "eval_every=0", "heldout_states=0", "checkpoint_every=200",
                         "log_every=100", "torch_threads=1"])
    assert (run / "checkpoints" / "latest.pt").is_file() and (run / "metrics.csv").is_file()
    return run


@pytest.fixture
def run_copy(trained: Path, tmp_path: Path) -> Path:
    """A copy of the trained run that a test may damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


# ------------------------------------------------------------------------------------ 1. gym ids
IMPORT_CHECK = """
import sys, warnings
import rlmorning
assert 'torch' not in sys.modules and 'ale_py' not in sys.modules, sorted(
    m for m in ('torch', 'ale_py') if m in sys.modules)
import gymnasium as gym
from rlmorning.gym_ids import GYM_IDS
assert all(i in gym.registry for i in GYM_IDS), [i for i in GYM_IDS if i not in gym.registry]
env = gym.make('rlmorning/Copy-v0')
env.reset(seed=0)
assert type(env.unwrapped).__name__ == 'CopyEnv'
with warnings.catch_warnings():
    warnings.simplefilter('error')  # registering an id twice would warn
    import rlmorning.envs.algorithmic
    from rlmorning.envs.algorithmic import register_algorithmic_envs, ntm_tasks
    register_algorithmic_envs()
    ntm_tasks.register_ntm_tasks()
assert type(gym.make('rlmorning/NTMCopy-v0').unwrapped).__name__ == 'NTMCopyEnv'
print('ok')
"""


def test_import_registers_ids_lazily():
    res = subprocess.run([sys.executable, "-c", IMPORT_CHECK], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() == "ok"


# ------------------------------------------------------------------------------------ 2. devices
DEVICES = ["tpu", pytest.param("cuda", marks=pytest.mark.skipif(
    torch.cuda.is_available(), reason="needs a machine without a GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("command", ["eval", "record", "plot-q"])
def test_bad_device_is_one_line(capsys, trained, tmp_path, command, device):
    extra = ["--episodes", "1"] if command != "plot-q" else []
    if command != "eval":
        extra += ["--out", tmp_path / ("out.png" if command == "plot-q" else "videos")]
    line = one_line_error(*cli(capsys, command, trained, "--device", device, *extra))
    assert "device" in line
    assert not any(tmp_path.iterdir()), "nothing is written for a bad device"


# ------------------------------------------------------------------------------- 2. seeds, numbers
@pytest.mark.parametrize("args", [["--seed", "-1"], ["--seed", "1" * 30], ["--set", "seed=-3"]])
def test_bad_train_seed_is_one_line(capsys, tmp_path, args):
    run = tmp_path / "run"
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "10", *args,
                               "--run-dir", run, "--no-progress"))
    assert "seed must be an integer in [0, " in line
    assert not run.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", ".nan", ".inf", "1" + "0" * 400])
def test_non_finite_float_is_one_line(capsys, tmp_path, value):
    run = tmp_path / "run"
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "10",
                               "--set", f"lr={value}", "--run-dir", run, "--no-progress"))
    assert "config key 'lr' expects a finite number" in line
    assert not run.exists()


def test_coerce_rejects_non_finite_floats_only_for_float_keys():
    for value in (float("nan"), float("inf"), "-inf", 10**400):
        with pytest.raises(RlmError, match="'gamma' expects a finite number"):
            coerce("gamma", value, float)
    assert coerce("gamma", "0.99", float) == 0.99
    assert coerce("gamma", 1, float) == 1.0
    assert coerce("clip", None, float | None) is None
    with pytest.raises(RlmError, match="'steps' expects an integer"):
        coerce("steps", float("inf"), int)


@pytest.mark.parametrize("command", ["eval", "record"])
@pytest.mark.parametrize("epsilon", ["2", "-0.1", "nan"])
def test_epsilon_outside_unit_interval_is_one_line(capsys, trained, tmp_path, command, epsilon):
    extra = ["--out", tmp_path / "videos"] if command == "record" else []
    line = one_line_error(*cli(capsys, command, trained, "--episodes", "1", "--epsilon", epsilon, *extra))
    assert "--epsilon must be in [0, 1]" in line


def test_eval_seed_and_sticky_actions_are_checked(capsys, trained):
    line = one_line_error(*cli(capsys, "eval", trained, "--episodes", "1", "--seed", "-1"))
    assert "--seed must be an integer in [0, " in line
    line = one_line_error(*cli(capsys, "eval", trained, "--episodes", "1", "--sticky-actions", "1.5"))
    assert "--sticky-actions must be in [0, 1]" in line


# ----------------------------------------------------------------------------------- 2. bad files
def test_binary_or_unreadable_config_file_is_one_line(capsys, tmp_path, monkeypatch):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(BINARY)
    run = tmp_path / "run"
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--config", binary,
                               "--run-dir", run, "--no-progress"))
    assert str(binary) in line and "not a text file" in line
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"steps: 10\x00\n")
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--config", nul,
                               "--run-dir", run, "--no-progress"))
    assert "not valid YAML" in line

    locked = tmp_path / "locked.yaml"
    locked.write_text("steps: 10\n")
    real_read_text = pathlib.Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "locked.yaml":  # what chmod 000 does for a user that is not root
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", read_text)
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--config", locked,
                               "--run-dir", run, "--no-progress"))
    assert f"cannot read '{locked}': Permission denied" in line
    assert not run.exists()


def test_binary_config_yaml_in_run_is_one_line(capsys, run_copy):
    (run_copy / "config.yaml").write_bytes(BINARY)
    for args in (["eval", run_copy, "--episodes", "1"], ["train", "dqn", "--resume", run_copy, "--no-progress"],
                 ["record", run_copy, "--episodes", "1"], ["plot", run_copy]):
        line = one_line_error(*cli(capsys, *args))
        assert "config.yaml" in line and "not a text file" in line, args


def test_binary_metrics_csv_on_resume_is_one_line(capsys, run_copy):
    (run_copy / "metrics.csv").write_bytes(BINARY)
    line = one_line_error(*cli(capsys, "train", "dqn", "--resume", run_copy, "--steps", "300", "--no-progress"))
    assert "metrics.csv" in line and "not a text file" in line
    assert (run_copy / "metrics.csv").read_bytes() == BINARY
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["steps"] == 200


def test_binary_run_files_in_report_are_one_line(capsys, trained, tmp_path):
    pytest.importorskip("rliable")
    for name in ("config.yaml", "metrics.csv"):
        run = Path(shutil.copytree(trained, tmp_path / name / "run"))
        (run / name).write_bytes(BINARY)
        line = one_line_error(*cli(capsys, "report", run, "--metric", "step", "--reps", "10",
                                   "--out", tmp_path / name / "report.md"))
        assert name in line and "not a text file" in line
        assert not (tmp_path / name / "report.md").exists()


def test_report_out_under_a_file_or_on_a_folder_is_one_line(capsys, trained, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    scored = ["--metric", "step", "--reps", "10"]  # the run has no eval rows: score its step column
    line = one_line_error(*cli(capsys, "report", trained, *scored, "--out", blocker / "sub" / "report.md"))
    assert f"'{blocker}' is a file" in line
    line = one_line_error(*cli(capsys, "report", trained, *scored, "--out", tmp_path))
    assert "is a folder" in line


# --------------------------------------------------------------------------------- 3. resume steps
@pytest.mark.parametrize(("steps", "needle"), [("0", "--steps must be >= 1, got 0"),
                                               ("-5", "--steps must be >= 1, got -5"),
                                               ("150", "--steps 150 is below the run's current step 200")])
def test_resume_steps_below_current_step_is_refused(capsys, run_copy, steps, needle):
    config_before = (run_copy / "config.yaml").read_bytes()
    metrics_before = (run_copy / "metrics.csv").read_bytes()
    line = one_line_error(*cli(capsys, "train", "dqn", "--resume", run_copy, "--steps", steps, "--no-progress"))
    assert needle in line
    assert (run_copy / "config.yaml").read_bytes() == config_before
    assert (run_copy / "metrics.csv").read_bytes() == metrics_before


# ------------------------------------------------------------------------------- 4. old run folders
@pytest.mark.parametrize("keep", [("checkpoints",), ("metrics.csv",), ("checkpoints", "metrics.csv")])
def test_folder_with_an_old_runs_files_is_refused(capsys, trained, tmp_path, keep):
    old = tmp_path / "old"
    old.mkdir()
    for name in keep:
        src = trained / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, old / name)
    before = sorted(str(p.relative_to(old)) for p in old.rglob("*"))
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "10",
                               "--run-dir", old, "--no-progress"))
    assert "holds files of an earlier run" in line and "no config.yaml" in line
    for name in keep:
        assert name in line
    assert sorted(str(p.relative_to(old)) for p in old.rglob("*")) == before


def test_empty_folders_are_not_an_old_run(tmp_path):
    from rlmorning.run import earlier_run_files

    assert earlier_run_files(tmp_path / "missing") == []
    (tmp_path / "checkpoints").mkdir()  # what a run that failed before its first checkpoint leaves
    assert earlier_run_files(tmp_path) == []
    (tmp_path / "checkpoints" / "latest.pt").write_bytes(b"")
    assert earlier_run_files(tmp_path) == ["checkpoints/"]
