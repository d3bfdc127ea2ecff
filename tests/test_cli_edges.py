"""First-use edges of the command line: output paths that cannot be written, out-of-range settings, a wrong
option under a subcommand, a finished run resumed, file modes, a run named twice, what eval evaluated."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from rlmorning import api
from rlmorning.cli import main
from rlmorning.errors import RlmError
from rlmorning.outputs import output_file, writable_folder
from rlmorning.run import atomic_write_bytes

UNWRITABLE = Path("/proc/rlmorning-test")  # no one, root included, can create files in /proc


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys: pytest.CaptureFixture, *args: object) -> str:
    rc, out, err = cli(capsys, *args)
    assert rc == 2, (rc, out, err)
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("rlmorning: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300-step CartPole DQN run with an evaluation (latest.pt and best.pt)."""
    run = tmp_path_factory.mktemp("cp") / "run"
    rc = main(["train", "dqn", "--env", "CartPole-v1", "--steps", "300", "--run-dir", str(run), "--device", "cpu",
               "--no-progress", "--set", "learning_starts=100", "--set", "eval_every=300", "--set", "eval_episodes=1",
               "--set", "heldout_states=0"])
    assert rc == 0
    return run


def test_writable_folder_creates_and_refuses(tmp_path: Path) -> None:
    made = writable_folder(tmp_path / "a" / "b")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(RlmError, match="cannot write into"):
        writable_folder(tmp_path / "file" / "sub")
    with pytest.raises(RlmError, match="cannot write into '/proc"):
        writable_folder(UNWRITABLE)


def test_output_file_names_folder_suffix_and_unwritable(tmp_path: Path) -> None:
    assert output_file(tmp_path / "new" / "x.mp4", (".mp4",), "dream.mp4") == tmp_path / "new" / "x.mp4"
    with pytest.raises(RlmError, match=r"is a folder; give a file name such as '.*dream\.mp4'"):
        output_file(tmp_path, (".mp4",), "dream.mp4")
    with pytest.raises(RlmError, match=r"--out must be an \.mp4 file"):
        output_file(tmp_path / "x.avi", (".mp4",), "dream.mp4")
    with pytest.raises(RlmError, match=r"--out must be a \.png file"):
        output_file(tmp_path / "x.jpg", (".png",), "plot.png")
    with pytest.raises(RlmError, match="cannot write into"):
        output_file(UNWRITABLE / "x.png", (".png",), "plot.png")


def test_plot_and_record_into_an_unwritable_folder_are_one_line(capsys, cartpole_run: Path) -> None:
    assert "cannot write into '/proc" in one_line_error(capsys, "plot", cartpole_run, "--out", UNWRITABLE / "x.png")
    assert "cannot write into '/proc" in one_line_error(capsys, "plot-q", cartpole_run, "--out",
                                                        UNWRITABLE / "q.png")
    assert "cannot write into '/proc" in one_line_error(capsys, "record", cartpole_run, "--episodes", "1",
                                                        "--out", UNWRITABLE)
    line = one_line_error(capsys, "record", cartpole_run, "--out", "video.mp4")
    assert "--out is the folder the videos go into" in line


def test_wrong_option_shows_the_subcommands_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["train", "dqn", "--env", "CartPole-v1", "--runs-root", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rlmorning train ") and "--run-dir" in err
    assert "unrecognized arguments: --runs-root x" in err


@pytest.mark.parametrize(("setting", "message"), [
    ("eval_epsilon=2", "config key 'eval_epsilon' must be in [0, 1], got 2.0"),
    ("eval_sticky_actions=-1", "config key 'eval_sticky_actions' must be in [0, 1]"),
    ("eps_start=5", "config key 'eps_start' must be in [0, 1], got 5.0"),
    ("eps_end=-0.1", "config key 'eps_end' must be in [0, 1]"),
    ("eps_fraction=1.5", "config key 'eps_fraction' must be in [0, 1]"),
    ("eps_decay_steps=-10", "config key 'eps_decay_steps' must be >= 0, got -10"),
    ("eval_episodes=0", "config key 'eval_episodes' must be >= 1 while eval_every > 0"),
])
def test_out_of_range_settings_are_refused(capsys, tmp_path: Path, setting: str, message: str) -> None:
    line = one_line_error(capsys, "train", "dqn", "--env", "CartPole-v1", "--steps", "10", "--set", setting,
                          "--run-dir", tmp_path / "r", "--no-progress")
    assert message in line
    assert not (tmp_path / "r").exists()


def test_no_periodic_evaluation_needs_no_eval_episodes(tmp_path: Path) -> None:
    res = api.train("dqn", "CartPole-v1", overrides=["steps=50", "eval_every=0", "eval_episodes=0",
                                                     "heldout_states=0", "progress=false"], run_dir=tmp_path / "r")
    assert res["steps"] == 50


def test_resuming_a_finished_run_says_there_is_nothing_to_train(capsys, cartpole_run: Path) -> None:
    rc, _out, err = cli(capsys, "train", "dqn", "--resume", cartpole_run)
    assert rc == 0
    assert "nothing to train: the run is complete (300 of 300 steps)" in err
    assert "--steps N > 300" in err


def test_run_files_follow_the_umask(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.txt", b"x")
    with open(tmp_path / "plain.txt", "w") as fh:  # what open() gives under this process's umask
        fh.write("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain.txt").st_mode)


def test_checkpoints_and_config_are_readable_by_the_group(cartpole_run: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    if umask & 0o040:
        pytest.fail(f"this test expects a umask that lets the group read (got {umask:o})")
    for path in (cartpole_run / "config.yaml", cartpole_run / "checkpoints" / "latest.pt"):
        assert os.stat(path).st_mode & stat.S_IRGRP, path


def test_a_run_named_twice_is_one_seed(tmp_path: Path, cartpole_run: Path) -> None:
    from rlmorning.viz.curves import plot_curves

    paths = plot_curves([cartpole_run, str(cartpole_run) + "/", cartpole_run], out=tmp_path / "p.png")
    numbers = json.loads(paths["json"].read_text())
    labels = [g["label"] for g in numbers["groups"]]
    assert len(labels) == 1 and "seeds" not in labels[0], labels


def test_report_takes_the_plot_metric_names(tmp_path: Path, cartpole_run: Path) -> None:
    pytest.importorskip("rliable")
    from rlmorning.report import build_report

    rep, n_runs, _ = build_report([str(cartpole_run)], metric="eval_return", reps=10, out=tmp_path / "r.md")
    assert n_runs == 1 and rep.metric == "eval_return_mean"
    with pytest.raises(RlmError, match=r"--seed must be an integer in \[0"):
        build_report([str(cartpole_run)], reps=10, seed=-1)


def test_config_given_a_run_folder_points_at_its_config_yaml(capsys, cartpole_run: Path) -> None:
    line = one_line_error(capsys, "train", "dqn", "--env", "CartPole-v1", "--config", cartpole_run)
    assert f"is a folder, not a YAML file; did you mean '{cartpole_run / 'config.yaml'}'?" in line


def test_eval_names_the_checkpoint_and_refuses_sticky_actions_off_atari(capsys, cartpole_run: Path,
                                                                         tmp_path: Path) -> None:
    rc, out, _ = cli(capsys, "eval", cartpole_run, "--episodes", "1", "--checkpoint", "latest")
    assert rc == 0
    assert f"checkpoint: {cartpole_run / 'checkpoints' / 'latest.pt'}" in out
    only_latest = tmp_path / "only-latest"
    (only_latest / "checkpoints").mkdir(parents=True)
    (only_latest / "config.yaml").write_text((cartpole_run / "config.yaml").read_text())
    (only_latest / "checkpoints" / "latest.pt").write_bytes((cartpole_run / "checkpoints" / "latest.pt").read_bytes())
    rc, out, _ = cli(capsys, "eval", only_latest, "--episodes", "1")  # best (the default) falls back to latest
    assert rc == 0 and f"checkpoint: {only_latest / 'checkpoints' / 'latest.pt'}" in out
    line = one_line_error(capsys, "eval", cartpole_run, "--episodes", "1", "--sticky-actions", "0.25")
    assert "--sticky-actions is for Atari envs" in line


def test_html_without_video_refuses_video_options(capsys, cartpole_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.html"
    line = one_line_error(capsys, "html", cartpole_run, "--out", out, "--no-video", "--video-file")
    assert line.endswith("--video-file is for the episode player: it excludes --no-video")
    line = one_line_error(capsys, "html", cartpole_run, "--out", out, "--no-video", "--max-steps", "5")
    assert line.endswith("--max-steps is for the recorded episode: it excludes --video and --no-video")
    assert not out.exists()


def test_dream_checks_out_seed_and_size_before_loading_the_run(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "no-run"  # never read: the checks come first
    assert "is a folder; give a file name" in one_line_error(capsys, "dream", missing, "--out", tmp_path)
    assert "--seed must be an integer" in one_line_error(capsys, "dream", missing, "--seed", "-1")
    assert "--display-size must be >= 8" in one_line_error(capsys, "dream", missing, "--display-size", "0")
    assert "--seed must be an integer" in one_line_error(capsys, "plot-memory", missing, "--seed", "-1")


def test_an_os_error_naming_a_file_is_one_line(capsys, monkeypatch: pytest.MonkeyPatch,
                                               cartpole_run: Path) -> None:
    import rlmorning.viz.curves as curves

    def refuse(*_a: object, **_k: object) -> None:
        raise PermissionError(13, "Permission denied", "/data/shared/plot.png")

    monkeypatch.setattr(curves, "save_figure", refuse)
    line = one_line_error(capsys, "plot", cartpole_run)
    assert line == "rlmorning: error: '/data/shared/plot.png': Permission denied"


def test_config_yaml_of_a_run_still_loads_as_config(cartpole_run: Path) -> None:
    """The folder hint does not get in the way of the file itself."""
    flat = yaml.safe_load((cartpole_run / "config.yaml").read_text())
    cfg = api.resolve_run_config("dqn", "CartPole-v1", config=str(cartpole_run / "config.yaml"))
    assert cfg.trainer.steps == flat["steps"] == 300


def test_eval_takes_an_sb3_model_and_scores_what_sb3_plays(capsys, tmp_path: Path) -> None:
    import gymnasium as gym
    import numpy as np
    from stable_baselines3 import DQN
    from stable_baselines3.common.logger import configure

    from rlmorning import envs as envs_mod

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), policy_kwargs={"net_arch": [16]}, buffer_size=200,
                learning_starts=50, seed=0, device="cpu")
    model.set_logger(configure(str(tmp_path / "sb3-log"), []))
    model.learn(120)
    model.save(tmp_path / "cartpole.zip")
    rc, out, _ = cli(capsys, "eval", f"sb3:{tmp_path / 'cartpole.zip'}", "--env", "CartPole-v1", "--episodes", 2,
                     "--epsilon", 0, "--seed", 7)
    assert rc == 0
    shown = float(out.split("eval return: ")[1].split(" ")[0])
    assert f"checkpoint: {tmp_path / 'cartpole.zip'}" in out
    returns = []
    for i in range(2):  # SB3's own greedy play on the same eval envs and seeds
        env = envs_mod.make_eval(envs_mod.resolve("CartPole-v1"), 7 + i)
        obs, _ = env.reset(seed=7 + i)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(int(action))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    assert shown == pytest.approx(float(np.mean(returns)), abs=0.005)
    assert "--env" in one_line_error(capsys, "eval", f"sb3:{tmp_path / 'cartpole.zip'}")
    assert "--env is only for sb3: models" in one_line_error(capsys, "eval", tmp_path, "--env", "CartPole-v1")


def test_sb3_models_refuse_a_checkpoint_path(capsys, tmp_path: Path) -> None:
    fake = tmp_path / "m.zip"
    fake.write_bytes(b"PK")
    for command in ("eval", "record", "plot-q"):
        line = one_line_error(capsys, command, f"sb3:{fake}", "--env", "CartPole-v1", "--checkpoint", tmp_path / "x.pt")
        assert "is for run directories; an sb3: model is one file" in line
