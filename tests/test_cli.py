"""The ``rlmorning`` command line: help, listings, one-line user errors, and full train/eval/resume flows."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rlmorning import api
from rlmorning.cli import main
from rlmorning.config import preset_names

TRAIN_FLAGS = ("--env", "--steps", "--seed", "--config", "--set", "--run-dir", "--resume", "--device",
               "--num-envs")
EVAL_LINE = re.compile(r"^eval return: (-?\d+\.\d+) ± (\d+\.\d+) over (\d+) episodes$", re.MULTILINE)


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, out: str, err: str) -> str:
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("rlmorning: error: "), err
    return lines[0]


def write_fake_run(path: Path, env: str = "CartPole-v1") -> Path:
    """A run directory with a valid config.yaml and an empty checkpoints/ folder."""
    (path / "checkpoints").mkdir(parents=True)
    flat = api.resolve_run_config("dqn", env).to_flat()
    (path / "config.yaml").write_text(yaml.safe_dump(flat, sort_keys=False))
    return path


def read_metrics(run: Path) -> tuple[list[str], list[dict[str, str]]]:
    with (run / "metrics.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def train_dqn(capsys: pytest.CaptureFixture, run: Path, env: str, steps: int, **sets: object) -> str:
    """``train dqn`` on the cpu with ``--set key=value`` per ``sets`` (in order); asserts success, returns stdout."""
    overrides = [a for key, value in sets.items() for a in ("--set", f"{key}={value}")]
    rc, out, err = cli(capsys, "train", "dqn", "--env", env, "--steps", str(steps), *overrides, "--device", "cpu",
                       "--run-dir", run, "--no-progress")
    assert rc == 0, err
    assert "Traceback" not in err
    return out


def check_metrics(run: Path, eval_steps: list[int]) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """A DQN run's metrics.csv has the usual columns and evaluations at ``eval_steps``; returns (rows, eval rows)."""
    columns, rows = read_metrics(run)
    for col in ("step", "sps", "eval_return_mean", "eval_return_std", "heldout_q", "loss", "epsilon",
                "eval_protocol"):
        assert col in columns, col
    eval_rows = [r for r in rows if r["eval_return_mean"]]
    assert [int(r["step"]) for r in eval_rows] == eval_steps
    return rows, eval_rows


def check_run_dir(run: Path, env: str, steps: int, heldout: int, obs_shape: tuple[int, ...]) -> dict:
    """The files every finished run writes; returns the parsed config.yaml."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["agent"] == "dqn" and config["env"] == env and config["steps"] == steps
    for which in ("latest", "best"):
        state = torch.load(run / "checkpoints" / f"{which}.pt", weights_only=True, map_location="cpu")
        assert isinstance(state, dict) and "agent" in state and "train" in state
        assert "online" in state["agent"]
    latest = torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
    assert latest["train"]["step"] == steps
    assert not list((run / "checkpoints").glob(".*.tmp")), "temp files of atomic writes left behind"
    versions = json.loads((run / "versions.json").read_text())
    for key in ("torch", "gymnasium", "ale-py", "eval_protocol"):
        assert versions.get(key), key
    assert list((run / "tb").glob("events.out.tfevents.*"))
    with np.load(run / "heldout_states.npz", allow_pickle=False) as data:
        states = data["states"]
    assert states.shape == (heldout, *obs_shape)
    return config


# ---------------------------------------------------------------------------------------------- help
def test_help_via_subprocess():
    res = subprocess.run([sys.executable, "-m", "rlmorning.cli", "--help"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    for command in ("train", "eval", "envs", "agents", "configs"):
        assert command in res.stdout
    assert "Traceback" not in res.stderr


def test_train_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in (*TRAIN_FLAGS, "--no-progress"):
        assert flag in out, flag
    assert "rlmorning train dqn --env Breakout" in out  # examples epilog


def test_no_command_prints_help(capsys):
    rc, out, _ = cli(capsys)
    assert rc == 2 and "train" in out


# ------------------------------------------------------------------------------------------ listings
def test_envs_listing(capsys):
    rc, out, _ = cli(capsys, "envs")
    assert rc == 0
    for family in ("atari", "minatar", "gymnasium"):
        assert re.search(rf"^{family} \(\d+\):$", out, re.MULTILINE), family
    assert "Breakout" in out and "MinAtar/Breakout" in out and "CartPole-v1" in out
    rc, out, _ = cli(capsys, "envs", "--family", "minatar")
    assert rc == 0
    assert out.splitlines()[0] == "minatar (5):"
    assert "CartPole-v1" not in out and "atari (" not in out and "not available here" not in out


def test_envs_listing_names_what_is_missing(capsys):
    """Ids registered with Gymnasium that cannot be made here are listed apart, each group with its reason."""
    import gymnasium as gym

    gym.register("NeedsMissingPackage-v0", entry_point="rlmorning_no_such_package.envs:Env")
    try:
        rc, out, _ = cli(capsys, "envs", "--family", "gymnasium")
    finally:
        del gym.registry["NeedsMissingPackage-v0"]
    assert rc == 0
    available, missing = out.split("gymnasium, not available here")
    assert "CartPole-v1" in available and "NeedsMissingPackage-v0" not in available
    assert re.search(r"NeedsMissingPackage-v0.*\n +\(.*rlmorning_no_such_package", missing)


def test_agents_listing(capsys):
    rc, out, _ = cli(capsys, "agents")
    assert rc == 0
    dqn = [line for line in out.splitlines() if line.startswith("dqn: ")]
    assert len(dqn) == 1 and "atari: dqn_atari" in dqn[0] and "gym: dqn_classic" in dqn[0]
    assert "lr =" not in out
    rc, out, _ = cli(capsys, "agents", "-v")
    assert rc == 0
    keys = {line.split("  # ")[0] for line in out.splitlines()}  # without each key's doc
    for line in ("    lr = 0.0001", "    batch_size = 32", "    double = False", "trainer keys (all agents):",
                 "    steps = 50000", "    eval_max_frames = 108000"):
        assert line in keys, line
    # each key's docstring, first sentence: the meaning and units a user needs
    assert "    train_freq = 4  # Env steps per update round" in out
    assert "  # ae | vae | vqvae | grid-ae" in out  # a key of the world model's section
    assert any(line.startswith("    kstep_every = ") and "model updates" in line.lower() for line in out.splitlines())


def test_configs_listing(capsys):
    rc, out, _ = cli(capsys, "configs")
    assert rc == 0
    assert out.split() == preset_names()
    assert {"atari100k", "dqn_atari", "dqn_classic", "dqn_minatar"} <= set(out.split())


# ------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["train", "nosuchagent", "--env", "CartPole-v1"], "unknown agent 'nosuchagent'"),
        (["train", "dqn", "--env", "Breakot"], "Did you mean 'Breakout'?"),
        (["train", "dqn", "--env", "CartPole-v1", "--set", "lerning_starts=5"],
         "unknown config key 'lerning_starts'. Did you mean 'learning_starts'?"),
        (["train", "dqn", "--env", "CartPole-v1", "--set", "lr=abc"], "config key 'lr' expects a number"),
        (["train", "dqn", "--env", "CartPole-v1", "--set", "double=maybe"], "'double' expects true/false"),
        (["train", "dqn", "--env", "CartPole-v1", "--set", "novalue"], "--set expects key=value"),
        (["train", "dqn", "--env", "CartPole-v1", "--config", "nosuchpreset"],
         "unknown config preset 'nosuchpreset'"),
        (["train", "dqn", "--env", "CartPole-v1", "--steps", "0"], "steps must be >= 1"),
        (["train", "dqn"], "train needs --env"),
    ],
)
def test_config_errors_are_one_line(capsys, tmp_path, args, needle):
    run = tmp_path / "run"
    rc, out, err = cli(capsys, *args, "--run-dir", run, "--no-progress")
    line = assert_one_line_error(rc, out, err)
    assert needle in line
    assert not run.exists(), "a bad config must be rejected before the run directory is created"


def test_unknown_preset_error_lists_presets(capsys):
    rc, out, err = cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--config", "atari100")
    line = assert_one_line_error(rc, out, err)
    assert "Did you mean 'atari100k'?" in line
    for name in preset_names():
        assert name in line


def test_eval_errors_are_one_line(capsys, tmp_path):
    no_ckpt = write_fake_run(tmp_path / "no_ckpt")
    line = assert_one_line_error(*cli(capsys, "eval", no_ckpt, "--episodes", "1"))
    assert "has no checkpoints" in line

    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_one_line_error(*cli(capsys, "eval", empty))
    assert "is not a run directory" in line

    line = assert_one_line_error(*cli(capsys, "eval", tmp_path / "missing"))
    assert f"run directory '{tmp_path / 'missing'}' does not exist" in line

    corrupt = write_fake_run(tmp_path / "corrupt")
    (corrupt / "checkpoints" / "latest.pt").write_bytes(b"\x00garbage, not a torch file\xff" * 50)
    for extra in ([], ["--checkpoint", "latest"]):
        line = assert_one_line_error(*cli(capsys, "eval", corrupt, "--episodes", "1", *extra))
        assert "latest.pt" in line and "corrupt" in line

    line = assert_one_line_error(*cli(capsys, "eval", no_ckpt, "--episodes", "0"))
    assert "--episodes must be >= 1" in line

    bad_yaml = tmp_path / "bad_yaml"
    bad_yaml.mkdir()
    (bad_yaml / "config.yaml").write_text("agent: [dqn\n")
    line = assert_one_line_error(*cli(capsys, "eval", bad_yaml))
    assert "not valid YAML" in line


def test_resume_conflicts_and_unwritable_run_dir(capsys, tmp_path):
    run = write_fake_run(tmp_path / "run")
    line = assert_one_line_error(*cli(capsys, "train", "dqn", "--resume", run, "--set", "lr=0.1"))
    assert "--set" in line and "--resume" in line
    line = assert_one_line_error(*cli(capsys, "train", "dqn", "--resume", run, "--config", "dqn_classic"))
    assert "--config" in line
    line = assert_one_line_error(*cli(capsys, "train", "dqn", "--resume", run, "--no-progress"))
    assert "no checkpoints" in line

    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    line = assert_one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--run-dir",
                                      blocker / "run", "--no-progress"))
    assert "cannot write run directory" in line

    line = assert_one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--run-dir", run,
                                      "--no-progress"))
    assert "already holds a run" in line


def test_dqn_validation_error_through_cli(capsys, tmp_path):
    line = assert_one_line_error(*cli(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "10",
                                      "--set", "optimizer=sgd", "--set", "heldout_states=0",
                                      "--run-dir", tmp_path / "run", "--no-progress"))
    assert "'optimizer' must be one of adam, rmsprop" in line


# -------------------------------------------------------------------------------------- full flows
def test_cartpole_train_eval_resume(capsys, tmp_path):
    run = tmp_path / "cartpole"
    out = train_dqn(capsys, run, "CartPole-v1", 600, learning_starts=200, train_freq=4, gradient_steps=1,
                    eval_every=300, eval_episodes=2, checkpoint_every=300, heldout_states=50, log_every=300)
    assert f"run: {run}" in out
    assert re.search(r"^steps: 600 ", out, re.MULTILINE)
    assert "eval protocol: undiscounted episode return, epsilon=0.0" in out

    config = check_run_dir(run, "CartPole-v1", 600, 50, (4,))
    assert config["learning_starts"] == 200 and config["heldout_states"] == 50
    assert config["encoder"] == "mlp"  # the dqn_classic preset below the --set overrides

    rows, eval_rows = check_metrics(run, [300, 600])
    for r in eval_rows:
        assert 1 <= float(r["eval_return_mean"]) <= 500
        assert float(r["eval_return_std"]) >= 0
        assert np.isfinite(float(r["heldout_q"]))
        assert r["eval_protocol"] == "undiscounted episode return, epsilon=0.0"
    train_rows = [r for r in rows if r["loss"]]
    assert train_rows and all(np.isfinite(float(r["loss"])) for r in train_rows)
    assert all(0 <= float(r["epsilon"]) <= 1 for r in train_rows)

    rc, out, err = cli(capsys, "eval", run, "--episodes", "2")
    assert rc == 0, err
    m = EVAL_LINE.search(out)
    assert m, out
    assert int(m.group(3)) == 2 and 1 <= float(m.group(1)) <= 500
    assert "eval protocol: undiscounted episode return, epsilon=0.0" in out

    rc, out, err = cli(capsys, "train", "dqn", "--resume", run, "--steps", "900", "--no-progress")
    assert rc == 0, err
    assert re.search(r"^steps: 900 ", out, re.MULTILINE)
    _, rows = read_metrics(run)
    steps = [int(r["step"]) for r in rows]
    assert steps[-1] == 900
    assert steps == sorted(steps), "steps restarted after --resume"
    assert steps[0] == 300 and 600 in steps
    assert [int(r["step"]) for r in rows if r["eval_return_mean"]] == [300, 600, 900]
    assert yaml.safe_load((run / "config.yaml").read_text())["steps"] == 900
    latest = torch.load(run / "checkpoints" / "latest.pt", weights_only=True, map_location="cpu")
    assert latest["train"]["step"] == 900
    assert latest["agent"]["env_steps"] == 900


def test_a_runs_config_yaml_trains_again_on_its_env(capsys, tmp_path):
    first = tmp_path / "first"
    train_dqn(capsys, first, "CartPole-v1", 150, learning_starts=50, eval_every=0, heldout_states=0, batch_size=17)
    rc, out, err = cli(capsys, "train", "dqn", "--config", first / "config.yaml", "--run-dir", tmp_path / "again",
                       "--no-progress")
    assert rc == 0, err
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert again["env"] == "CartPole-v1" and again["batch_size"] == 17 and again["steps"] == 150
    rc, out, err = cli(capsys, "train", "dqn", "--config", first / "config.yaml", "--env", "Acrobot-v1",
                       "--run-dir", tmp_path / "other", "--steps", "60", "--no-progress")
    assert rc == 0, err
    assert "note: --env Acrobot-v1 replaces the config's env 'CartPole-v1'" in err
    rc, _, err = cli(capsys, "train", "dqn", "--config", "dqn_classic")  # a preset names no env
    assert rc == 2 and "train needs --env" in err


def test_final_step_is_logged(capsys, tmp_path):
    run = tmp_path / "short"
    train_dqn(capsys, run, "CartPole-v1", 150, learning_starts=50, train_freq=4, gradient_steps=1, eval_every=0,
              heldout_states=0, log_every=1000)
    assert (run / "metrics.csv").is_file()
    _, rows = read_metrics(run)
    assert int(rows[-1]["step"]) == 150 and rows[-1]["loss"]


def test_breakout_train_through_cli(capsys, tmp_path):
    run = tmp_path / "breakout"
    out = train_dqn(capsys, run, "Breakout", 600, learning_starts=400, buffer_size=5000, eval_every=300,
                    eval_episodes=1, eval_max_frames=1000, checkpoint_every=300, heldout_states=20, log_every=300)
    assert "eval protocol: true game score" in out
    config = check_run_dir(run, "Breakout", 600, 20, (4, 84, 84))
    assert config["buffer_size"] == 5000 and config["train_freq"] == 4  # dqn_atari preset + --set
    versions = json.loads((run / "versions.json").read_text())
    assert "true game score" in versions["eval_protocol"]
    assert "<= 1000 frames" in versions["eval_protocol"]
    rows, eval_rows = check_metrics(run, [300, 600])
    assert all(r["eval_protocol"].startswith("true game score") for r in eval_rows)
    assert any(r["loss"] for r in rows), "learning_starts < steps: gradient steps must have happened"
    with np.load(run / "heldout_states.npz") as data:
        assert data["states"].dtype == np.uint8
