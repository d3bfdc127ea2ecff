"""Ordinary mistakes and damaged files give one-line errors (exit status 2), never a traceback; ``import rlmorning``
registers rlmorning's Gymnasium ids without importing torch or ale_py; a run is trained by one process at a time;
a failed checkpoint write stops training cleanly; SB3 models are read without unpickling."""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import pathlib
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_cli import assert_one_line_error, cli  # the CLI helpers shared by the CLI tests

from rlmorning import api
from rlmorning.config import coerce
from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV, load_checkpoint

BINARY = bytes(range(256)) * 8  # not UTF-8 (0x80 ... 0xff), with NUL bytes


one_line_error = assert_one_line_error  # the error line of a CLI call that must fail with status 2, one line


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


# ------------------------------------------------------------------------ 5. one training per run
LOCK_HOLDER = """
import sys, time
from rlmorning.run import run_lock
with run_lock(sys.argv[1]):
    print('locked', flush=True)
    time.sleep(600)
"""


def test_a_run_being_trained_is_refused_and_a_killed_holder_does_not_block(capsys, run_copy):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(run_copy)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        metrics_before = (run_copy / "metrics.csv").read_bytes()
        for args in (["--resume", run_copy, "--steps", "300"],
                     ["--env", "CartPole-v1", "--run-dir", run_copy, "--overwrite"]):
            line = one_line_error(*cli(capsys, "train", "dqn", *args, "--no-progress"))
            assert f"run '{run_copy}' is being trained by process {holder.pid}; " in line
        assert (run_copy / "metrics.csv").read_bytes() == metrics_before
        assert yaml.safe_load((run_copy / "config.yaml").read_text())["steps"] == 200
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock of a dead process
        holder.wait()
    rc, _, err = cli(capsys, "train", "dqn", "--resume", run_copy, "--steps", "300", "--no-progress")
    assert rc == 0, err
    assert [r["step"] for r in MetricsCSV.read(run_copy / "metrics.csv")] == ["100", "200", "300"]


def test_a_training_holds_its_run_lock(run_copy):
    refused: list[str] = []

    def on_metrics(step: int, row: dict) -> None:
        with pytest.raises(RlmError, match=f"is being trained by process {os.getpid()}") as exc:
            api.resume(run_copy, steps=400, progress=False)
        refused.append(str(exc.value))

    api.resume(run_copy, steps=300, progress=False, on_metrics=on_metrics)
    assert len(refused) == 1
    assert [r["step"] for r in MetricsCSV.read(run_copy / "metrics.csv")] == ["100", "200", "300"]


# ------------------------------------------------------------------- 6. failed checkpoint writes
FAST = ["--set", "learning_starts=100", "--set", "eval_every=0", "--set", "heldout_states=0", "--set",
        "checkpoint_every=100", "--set", "log_every=100", "--set", "torch_threads=1", "--no-progress"]


@pytest.mark.parametrize("how", ["disk-full", "disk-full-then-ctrl-c", "read-only"])
def test_failed_checkpoint_write_stops_training_in_one_line(capsys, tmp_path, monkeypatch, how):
    from rlmorning.agents.dqn import DQNAgent

    # root ignores a read-only folder's mode: there the folder's refusal is simulated with the same OSError
    simulate_read_only = how == "read-only" and os.geteuid() == 0
    run = tmp_path / "run"
    real_save, real_observe = torch.save, DQNAgent.observe
    saves: list[int] = []

    def save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        saves.append(1)
        if how != "read-only" and len(saves) > 1:  # the checkpoint of step 100 is written, later ones fail
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if simulate_read_only and len(saves) > 1:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        real_save(obj, f, *args, **kwargs)

    def observe(self: DQNAgent, *args: object, **kwargs: object) -> None:
        if self.env_steps == 150 and how == "read-only" and not simulate_read_only:
            (run / "checkpoints").chmod(0o555)
        if self.env_steps == 150 and how == "disk-full-then-ctrl-c":
            signal.raise_signal(signal.SIGINT)
        real_observe(self, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr(DQNAgent, "observe", observe)
    try:
        line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "400",
                                   "--run-dir", run, *FAST))
    finally:
        if (run / "checkpoints").is_dir():
            (run / "checkpoints").chmod(0o755)
    reason = "[Errno 13] Permission denied" if how == "read-only" else "[Errno 28] No space left on device"
    assert f"could not write checkpoint '{run / 'checkpoints' / 'latest.pt'}': {reason}" in line
    step = 151 if how == "disk-full-then-ctrl-c" else 200
    assert f"training stopped at step {step}, checkpoints/latest.pt of step 100 is kept" in line
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["latest.pt"]  # no temp file left behind
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["train"]["step"] == 100
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.undo()
    rc, _, err = cli(capsys, "train", "dqn", "--resume", run, "--no-progress")
    assert rc == 0, err
    assert [r["step"] for r in MetricsCSV.read(run / "metrics.csv")] == ["100", "200", "300", "400"]


# ----------------------------------------------------------------------- 7. SB3 models are not unpickled
class _Payload:
    """Unpickling this creates ``marker``: what a hostile model file could run instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (self.marker,))


def _with_entry(src: Path, dst: Path, name: str, data: bytes) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            zout.writestr(item, data if item == name else zin.read(item))
    return dst


def test_sb3_models_are_read_without_unpickling(capsys, tmp_path):
    pytest.importorskip("stable_baselines3")
    import cloudpickle
    from stable_baselines3 import DQN

    from rlmorning.envs import make_eval, resolve

    env = make_eval(resolve("CartPole-v1"), 0)
    model = DQN("MlpPolicy", env, policy_kwargs={"net_arch": [16]}, buffer_size=100, seed=0, device="cpu")
    model.save(tmp_path / "genuine.zip")
    env.close()
    marker = tmp_path / "pwned"
    payload = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
    data = json.loads(zipfile.ZipFile(tmp_path / "genuine.zip").read("data"))
    for key in ("policy_class", "observation_space", "action_space", "lr_schedule"):
        data[key][":serialized:"] = payload
    hostile_data = _with_entry(tmp_path / "genuine.zip", tmp_path / "data.zip", "data", json.dumps(data).encode())
    weights = io.BytesIO()
    torch.save({"q_net.q_net.0.weight": _Payload(marker)}, weights)
    hostile_pth = _with_entry(tmp_path / "genuine.zip", tmp_path / "pth.zip", "policy.pth", weights.getvalue())

    for path in (hostile_data, tmp_path / "genuine.zip"):
        out = tmp_path / f"videos-{path.stem}"
        rc, _, err = cli(capsys, "record", f"sb3:{path}", "--env", "CartPole-v1", "--episodes", 1, "--max-steps", 3,
                         "--out", out)
        assert not marker.exists(), "loading an SB3 zip unpickled its payload"
        assert rc == 0, err
        side = json.loads(next(out.glob("*.json")).read_text())
        assert side["agent"] == "sb3-dqn" and len(side["per_step"]["action"]) == 3
        eval_env = make_eval(resolve("CartPole-v1"), side["seed"])
        obs, _ = eval_env.reset(seed=side["seed"])
        for action, q_recorded in zip(side["per_step"]["action"], side["per_step"]["q_values"], strict=True):
            with torch.no_grad():  # the genuine network's Q-values, as SB3 itself loads it
                q = model.policy.q_net(torch.as_tensor(obs[None]))[0].numpy()
            np.testing.assert_allclose(q, q_recorded, rtol=1e-6, atol=1e-7)
            obs, *_ = eval_env.step(action)
        eval_env.close()
        rc, _, err = cli(capsys, "plot-q", f"sb3:{path}", "--env", "CartPole-v1", "--out", out / "q.png")
        assert rc == 0, err
    line = one_line_error(*cli(capsys, "record", f"sb3:{hostile_pth}", "--env", "CartPole-v1", "--episodes", 1,
                               "--max-steps", 3, "--out", tmp_path / "videos"))
    assert "policy.pth is not a plain state dict" in line and "not unpickled" in line
    assert not marker.exists()


# ---------------------------------------------------------------- 8. final evaluation on resume
EVAL = ["learning_starts=100", "eval_every=100", "eval_episodes=1", "final_eval_episodes=2", "heldout_states=0",
        "checkpoint_every=100", "log_every=100", "torch_threads=1"]


def test_resume_runs_a_final_evaluation_that_ctrl_c_cut_short(tmp_path, monkeypatch):
    from rlmorning.trainer import Trainer

    def train(run: Path) -> None:
        api.train("dqn", "CartPole-v1", run_dir=run, steps=200, device="cpu", progress=False, overrides=EVAL)

    def rows(run: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")}
                for r in MetricsCSV.read(run / "metrics.csv")]

    train(tmp_path / "full")
    real = Trainer._evaluate

    def evaluate(self: Trainer, final: bool = False) -> None:
        if final:
            raise KeyboardInterrupt  # Ctrl-C while the final evaluation plays
        real(self, final)

    monkeypatch.setattr(Trainer, "_evaluate", evaluate)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "part")
    monkeypatch.undo()
    assert [r["step"] for r in rows(tmp_path / "part") if r["eval_return_mean"]] == ["100"]
    summary = api.resume(tmp_path / "part", progress=False)
    assert summary["steps"] == 200
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    assert [r["eval_episodes"] for r in rows(tmp_path / "part") if r["eval_return_mean"]] == ["1", "2"]
    api.resume(tmp_path / "part", progress=False)  # evaluated now: nothing more happens
    assert rows(tmp_path / "part") == rows(tmp_path / "full")
    full = load_checkpoint(tmp_path / "full" / "checkpoints" / "latest.pt")["train"]
    part = load_checkpoint(tmp_path / "part" / "checkpoints" / "latest.pt")["train"]
    assert (part["evals"], part["best_eval"]) == (full["evals"], full["best_eval"])


# -------------------------------------------------- 9. a run killed before its first checkpoint
def test_run_killed_before_its_first_checkpoint_can_be_started_again(capsys, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlmorning.cli", "train", "dqn", "--env", "CartPole-v1", "--steps", "1000000",
           "--run-dir", str(run), "--no-progress", "--set", "checkpoint_every=1000000", "--set", "eval_every=0",
           "--set", "log_every=100", "--set", "torch_threads=1", "--set", "learning_starts=100"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (run / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.1)
    proc.kill()  # kill -9: no checkpoint, no cleanup
    proc.wait()
    assert (run / "config.yaml").is_file() and not (run / "checkpoints" / "latest.pt").exists()

    line = one_line_error(*cli(capsys, "train", "dqn", "--resume", run, "--no-progress"))
    assert f"run '{run}' has no checkpoints yet (stopped before the first one): start it again with `" in line
    command = line.split("`")[1]
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--run-dir", run, "--no-progress"))
    assert "already holds a run, stopped before its first checkpoint: start it again with `" in line
    assert line.split("`")[1] == command
    assert command.startswith("rlmorning train dqn --env CartPole-v1 ") and command.endswith(" --overwrite")
    rc, _, err = cli(capsys, *shlex.split(command)[1:], "--steps", "200", "--set", "checkpoint_every=200")
    assert rc == 0, err
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["train"]["step"] == 200
    assert [r["step"] for r in MetricsCSV.read(run / "metrics.csv")] == ["100", "200"]


def test_overwrite_deletes_only_what_training_writes(capsys, trained, tmp_path):
    run = Path(shutil.copytree(trained, tmp_path / "run"))
    (run / "notes.txt").write_text("mine")
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--run-dir", run, "--overwrite",
                               *FAST))
    assert "--overwrite deletes only what training writes" in line and "notes.txt" in line
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--overwrite", *FAST))
    assert "--overwrite needs --run-dir" in line
    line = one_line_error(*cli(capsys, "train", "dqn", "--resume", run, "--overwrite", "--no-progress"))
    assert "--overwrite cannot be combined with --resume" in line
    (run / "notes.txt").unlink()
    (run / "videos").mkdir()  # what `rlmorning record` writes: kept, and the message says why
    (run / "videos" / "best-s0.mp4").write_bytes(b"mp4")
    line = one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--run-dir", run, "--overwrite",
                               *FAST))
    assert "videos/: what record/plot commands wrote, kept in case you want them" in line
    shutil.rmtree(run / "videos")
    rc, _, err = cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "100", "--run-dir", run,
                     "--overwrite", *FAST)
    assert rc == 0, err
    assert load_checkpoint(run / "checkpoints" / "latest.pt")["train"]["step"] == 100
    assert [r["step"] for r in MetricsCSV.read(run / "metrics.csv")] == ["100"]


# --------------------------------------------------------------------------------------- 10. sweeps
def test_sweep_without_a_cluster_or_with_a_bad_grid_value_is_one_line_before_ray(capsys, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")

    def no_init(*args: object, **kwargs: object) -> None:
        raise AssertionError("ray.init must not be called")

    monkeypatch.setattr(ray, "init", no_init)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "sweeps"
    start = time.time()
    line = one_line_error(*cli(capsys, "sweep", "dqn", "--env", "CartPole-v1", "--steps", "100",
                               "--address", f"127.0.0.1:{port}", "--root", root))
    assert f"no Ray cluster answers at '127.0.0.1:{port}'" in line and time.time() - start < 30
    line = one_line_error(*cli(capsys, "sweep", "dqn", "--env", "CartPole-v1", "--steps", "100",
                               "--grid", "gamma=0.9,2", "--root", root))
    assert "--grid gamma=2: config key 'gamma' must be in [0, 1], got 2.0" in line
    line = one_line_error(*cli(capsys, "sweep", "dqn", "--env", "CartPole-v1", "--search", "optuna",
                               "--grid", "lr=1e-4:1e-3:log", "--grid", "n_step=1,0", "--root", root))
    assert "--grid lr=0.0001 n_step=0: config key 'n_step' must be >= 1, got 0" in line
    assert not root.exists()
    from rlmorning.sweep import error_line

    wrapped = RuntimeError("ray::ImplicitFunc.train() (pid=1, ip=127.0.0.1)\n  File \"x.py\", line 1\n"
                           "rlmorning.errors.RlmError: config key 'lr' must be > 0, got -1.0")
    assert error_line(wrapped) == "config key 'lr' must be > 0, got -1.0"


@pytest.mark.parametrize("command", ["record", "plot-q", "plot", "html", "eval"])
def test_a_file_given_as_run_directory_is_named_a_file(command, capsys, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a run")
    extra = ["--out", str(tmp_path / "p.html")] if command == "html" else []
    line = one_line_error(*cli(capsys, command, afile, *extra))
    assert f"'{afile}' is not a run directory" in line
