"""Visualizations: recorded videos and sidecars, Q traces, learning curves, saliency, SB3 models, errors."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning import envs as envs_mod
from rlmorning.cli import main
from rlmorning.viz.rollout import obs_digest

BREAKOUT = [
    "learning_starts=100", "buffer_size=2000", "eval_every=200", "eval_episodes=1", "eval_max_frames=1000",
    "heldout_states=20", "checkpoint_every=200", "log_every=100", "batch_size=8", "torch_threads=1",
]
CARTPOLE = [
    "learning_starts=100", "buffer_size=1000", "eval_every=100", "eval_episodes=2", "heldout_states=20",
    "checkpoint_every=100", "log_every=100", "batch_size=16", "train_freq=4", "gradient_steps=1",
    "target_update_period=50", "encoder_kwargs.hidden=[32]", "torch_threads=1",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def breakout_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("viz") / "breakout"
    api.train("dqn", "Breakout", run_dir=run, steps=200, progress=False, overrides=BREAKOUT)
    return run


@pytest.fixture(scope="module")
def cartpole_runs(tmp_path_factory: pytest.TempPathFactory, train_seeds: Callable) -> list[Path]:
    return train_seeds(tmp_path_factory.mktemp("viz"), "CartPole-v1", 300, CARTPOLE)


def cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def decode(path: Path) -> tuple[dict, list[np.ndarray]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    w, h = meta["size"]
    return meta, [np.frombuffer(f, np.uint8).reshape(h, w, 3) for f in reader]


def only(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(scope="module")
def breakout_video(breakout_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("videos")
    assert main(["record", str(breakout_run), "--episodes", "1", "--max-steps", "40", "--out", str(out),
                 "--gif"]) == 0
    return {"video": only(out, "*.mp4"), "sidecar": only(out, "*.json"), "gif": only(out, "*.gif")}


def test_record_writes_h264_video_with_panel_and_gif(breakout_video: dict[str, Path]) -> None:
    side = json.loads(breakout_video["sidecar"].read_text())
    meta, frames = decode(breakout_video["video"])
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p")
    assert side["steps"] == 40 and side["stopped_at_max_steps"]
    assert len(frames) == side["frames"] == side["steps"] + 1
    w, h = meta["size"]
    assert (w, h) == tuple(side["frame_size"])
    assert h == 630 and w > 160 * 3  # Atari screen at 3x (630 x 480) plus the panel
    assert side["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert side["eval_protocol"].startswith("true game score")
    assert breakout_video["gif"].read_bytes()[:4] == b"GIF8"


def test_sidecar_q_values_are_the_agents(breakout_run: Path, breakout_video: dict[str, Path]) -> None:
    side = json.loads(breakout_video["sidecar"].read_text())
    steps = side["per_step"]
    agent, cfg = api.load_agent(breakout_run, "best")
    t = cfg.trainer
    env = envs_mod.make_eval(envs_mod.resolve(cfg.env), side["seed"], sticky_actions=t.eval_sticky_actions,
                             max_frames=t.eval_max_frames, render_rgb=True)
    obs, info = env.reset(seed=side["seed"])
    score = 0.0
    for i, action in enumerate(steps["action"]):
        assert obs_digest(obs) == steps["obs_sha1"][i]
        q = agent.q_values(obs[None])[0].numpy()
        assert q.tolist() == steps["q_values"][i]
        assert steps["lives"][i] == info["lives"]
        assert steps["score"][i] == score
        if not steps["random_action"][i]:
            assert action == int(np.argmax(q)) == steps["greedy_action"][i]
        obs, r, _, _, info = env.step(action)
        assert r == steps["reward"][i]
        score += r
    env.close()
    assert obs_digest(obs) == side["final"]["obs_sha1"]
    assert side["score"] == score == side["final"]["score"]


def test_plot_q_trace_matches_the_sidecar(breakout_run: Path, breakout_video: dict[str, Path],
                                          capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    side = json.loads(breakout_video["sidecar"].read_text())
    png = tmp_path / "q.png"
    rc, out, _ = cli(capsys, "plot-q", breakout_run, "--episode-steps", 40, "--out", png)
    assert rc == 0 and str(png) in out
    assert png.stat().st_size > 20_000
    data = json.loads(png.with_suffix(".json").read_text())
    assert data["q_values"][:-1] == side["per_step"]["q_values"]
    assert data["q_values"][-1] == side["final"]["q_values"]
    assert data["v"] == [max(q) for q in data["q_values"]]
    assert data["rewards"] == side["per_step"]["reward"] and data["actions"] == side["per_step"]["action"]
    assert 3 <= len(data["events"]) <= 6
    assert data["training"]["heldout_q"]["step"] == [200]
    assert data["eval_protocol"] == side["eval_protocol"]


def test_saliency_overlays_a_heatmap(breakout_run: Path, tmp_path: Path) -> None:
    args = ["record", str(breakout_run), "--episodes", "1", "--max-steps", "2", "--no-overlay"]
    assert main(args + ["--out", str(tmp_path / "plain")]) == 0
    assert main(args + ["--out", str(tmp_path / "sal"), "--saliency", "--saliency-every", "2"]) == 0
    _, plain = decode(only(tmp_path / "plain", "*.mp4"))
    _, sal = decode(only(tmp_path / "sal", "*-saliency.mp4"))
    assert len(plain) == len(sal) == 3 and plain[0].shape == sal[0].shape == (630, 480, 3)
    assert np.abs(plain[0].astype(int) - sal[0].astype(int)).mean() > 2.0
    side = json.loads(only(tmp_path / "sal", "*.json").read_text())
    assert side["saliency"]["steps"] == [0, 2] and side["saliency"]["stride"] == 5
    # the same episode without the heatmap, named in the sidecar (a player's saliency toggle switches to it)
    off = only(tmp_path / "sal", "*-saliency-off.mp4")
    assert side["saliency"]["video_without"] == off.name and side["video"] == off.name.replace("-off", "")
    _, without = decode(off)
    assert len(without) == 3
    for a, b in zip(without, plain, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5


def test_saliency_finds_the_region_the_q_function_reads() -> None:
    from rlmorning.viz.saliency import perturbation_saliency

    def q_fn(x: np.ndarray) -> torch.Tensor:  # depends only on pixels around (row 60, col 20)
        x = torch.as_tensor(x).float()
        return torch.stack([x[:, :, 55:65, 15:25].mean(dim=(1, 2, 3)), torch.zeros(len(x))], dim=1)

    obs = np.zeros((4, 84, 84), np.uint8)
    obs[:, 58:62, 18:22] = 255
    sal = perturbation_saliency(q_fn, obs)
    y, x = np.unravel_index(np.argmax(sal), sal.shape)
    assert abs(y - 60) <= 5 and abs(x - 20) <= 5
    assert sal[10, 70] < 1e-3 * sal.max()


def test_numbers_drawn_are_the_sidecars(cartpole_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rlmorning.viz.video as video

    drawn = []
    real = video.draw_panel

    def spy(*args, **kwargs):
        drawn.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(video, "draw_panel", spy)
    [paths] = video.record(str(cartpole_runs[0]), episodes=1, max_steps=30, out=tmp_path, progress=False)
    side = json.loads(paths["sidecar"].read_text())
    s = side["per_step"]
    assert len(drawn) == side["steps"] + 1
    for t, d in enumerate(drawn[:-1]):
        assert (d["step"], d["score"], d["lives"], d["action"]) == (t, s["score"][t], s["lives"][t], s["action"][t])
        assert d["q"] == s["q_values"][t]
        assert d["trace"][-1] == max(s["q_values"][t])
    assert drawn[-1]["action"] is None and drawn[-1]["q"] == side["final"]["q_values"]
    assert drawn[-1]["score"] == side["score"]


def test_record_cartpole(cartpole_runs: list[Path], capsys: pytest.CaptureFixture) -> None:
    rc, out, _ = cli(capsys, "record", cartpole_runs[0], "--episodes", 2, "--max-steps", 25, "--fps", 15)
    assert rc == 0
    videos = sorted((cartpole_runs[0] / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(str(v) in out for v in videos)
    for v in videos:
        side = json.loads(v.with_suffix(".json").read_text())
        meta, frames = decode(v)
        assert len(frames) == side["steps"] + 1 and meta["fps"] == 15
        assert side["per_step"]["lives"][0] is None and len(side["per_step"]["q_values"][0]) == 2
        assert side["eval_protocol"] == "undiscounted episode return, epsilon=0.0"


def test_plot_groups_seeds_into_a_band(cartpole_runs: list[Path], capsys: pytest.CaptureFixture,
                                       tmp_path: Path) -> None:
    png = tmp_path / "curves.png"
    rc, out, _ = cli(capsys, "plot", *cartpole_runs, "--metric", "eval_return", "--out", png)
    assert rc == 0 and png.stat().st_size > 10_000
    data = json.loads(png.with_suffix(".json").read_text())
    [group] = data["groups"]
    assert group["seeds"] == [0, 1] and data["eval_protocols"] == ["undiscounted episode return, epsilon=0.0"]
    runs = [group["per_run"][str(r)] for r in cartpole_runs]
    assert group["step"] == runs[0]["step"] == [100.0, 200.0, 300.0]
    values = np.array([r["value"] for r in runs])
    np.testing.assert_allclose(group["mean"], values.mean(axis=0))
    np.testing.assert_allclose(group["std"], values.std(axis=0))
    assert data["frames_per_step"] is None
    # the default output goes into the first run's plots/
    rc, out, _ = cli(capsys, "plot", cartpole_runs[1], "--metric", "loss")
    assert rc == 0 and (cartpole_runs[1] / "plots" / "loss.png").is_file()
    # several runs: their own file, so the first run's one-run plot is not replaced
    rc, out, _ = cli(capsys, "plot", cartpole_runs[1], *cartpole_runs[:1], "--metric", "loss")
    assert rc == 0 and (cartpole_runs[1] / "plots" / "loss-2-runs.png").is_file()


def test_plot_atari_has_frames_axis_and_unknown_metric_fails(breakout_run: Path, capsys: pytest.CaptureFixture,
                                                             tmp_path: Path) -> None:
    rc, _, _ = cli(capsys, "plot", breakout_run, "--metric", "heldout_q", "--out", tmp_path / "h.png")
    assert rc == 0
    assert json.loads((tmp_path / "h.json").read_text())["frames_per_step"] == 4
    rc, out, err = cli(capsys, "plot", breakout_run, "--metric", "nope")
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "unknown metric 'nope'" in err and "heldout_q" in err
    rc, _, err = cli(capsys, "plot", breakout_run, "--metric", "kstep_error")  # a DQN run: no world model
    assert rc == 2 and "logged no k-step errors (kstep_err_K) yet" in err and "kstep_every model updates" in err


def test_plot_of_a_run_without_evaluations_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "no-eval"
    api.train("dqn", "CartPole-v1", run_dir=run, steps=60, progress=False,
              overrides=["eval_every=0", "final_eval_episodes=0", "learning_starts=30", "heldout_states=0"])
    capsys.readouterr()  # what training printed
    rc, _, err = cli(capsys, "plot", run)
    assert rc == 2 and "logged no evaluation yet" in err and "train_return" in err and err.count("\n") == 1


def test_clear_one_line_errors(cartpole_runs: list[Path], capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    empty = tmp_path / "no-ckpt"
    empty.mkdir()
    shutil.copy(cartpole_runs[0] / "config.yaml", empty / "config.yaml")
    fake = tmp_path / "model.zip"
    fake.write_bytes(b"not a zip")
    cases = [
        (["record", empty], "no checkpoints"),
        (["plot-q", empty], "no checkpoints"),
        (["record", tmp_path / "missing"], "does not exist"),
        (["plot", tmp_path / "missing"], "does not exist"),
        (["record", "sb3:" + str(tmp_path / "missing.zip"), "--env", "Breakout"], "does not exist"),
        (["record", f"sb3:{fake}"], "--env"),
        (["record", f"sb3:{fake}", "--env", "Breakuot"], "unknown env"),
        (["record", f"sb3:{fake}", "--env", "Breakout"], "cannot load"),
        (["record", cartpole_runs[0], "--saliency", "--max-steps", "2"], "image observations"),
    ]
    for args, message in cases:
        rc, out, err = cli(capsys, *args)
        assert rc == 2, args
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rlmorning: error:") and message in lines[0], (args, err)


def test_sb3_dqn_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4)
    model = DQN("CnnPolicy", env, buffer_size=500, learning_starts=100, batch_size=8, train_freq=4,
                device="cpu", seed=0, verbose=0)
    from stable_baselines3.common.logger import configure

    model.set_logger(configure(str(tmp_path / "sb3-log"), []))  # not SB3's default folder under /tmp
    model.learn(200)
    model.save(tmp_path / "dqn_breakout.zip")
    env.close()

    rc, out, _ = cli(capsys, "record", f"sb3:{tmp_path / 'dqn_breakout.zip'}", "--env", "Breakout",
                     "--episodes", 1, "--max-steps", 15)
    assert rc == 0
    video = only(tmp_path / "videos", "*.mp4")
    side = json.loads(video.with_suffix(".json").read_text())
    _, frames = decode(video)
    assert len(frames) == 16 and side["agent"] == "sb3-dqn" and side["source"].startswith("sb3:")

    # the recorded Q-values are SB3's own network on the same (channels-first) stacks, and SB3's
    # predict() on the channels-last layout of make_atari_env picks the same greedy actions
    loaded = DQN.load(tmp_path / "dqn_breakout.zip", device="cpu")
    eval_env = envs_mod.make_eval(envs_mod.resolve("Breakout"), side["seed"], render_rgb=True)
    obs, _ = eval_env.reset(seed=side["seed"])
    for i, action in enumerate(side["per_step"]["action"]):
        with torch.no_grad():
            q = loaded.policy.q_net(torch.as_tensor(obs[None]))[0].numpy()
        np.testing.assert_allclose(q, side["per_step"]["q_values"][i], rtol=1e-6, atol=1e-7)
        sb3_action, _ = loaded.predict(np.transpose(obs, (1, 2, 0)), deterministic=True)
        assert int(sb3_action) == side["per_step"]["greedy_action"][i]
        obs, *_ = eval_env.step(action)
    eval_env.close()


# ----------------------------------------------------------------------------- text-rendering (ansi) envs
COPY = ["torch_threads=1", "num_envs=4", "n_steps=5", "lstm_size=16", "eval_every=300", "eval_episodes=1",
        "eval_epsilon=0.3", "checkpoint_every=300", "log_every=300", "heldout_states=0"]


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("viz") / "copy"
    api.train("a2c", "rlmorning/Copy-v0", run_dir=run, steps=300, progress=False, overrides=COPY)
    return run


def test_record_algorithmic_env_writes_a_text_log(copy_run: Path, capsys: pytest.CaptureFixture) -> None:
    from rlmorning.envs.algorithmic import CopyEnv
    from rlmorning.viz.panel import fmt_score

    rc, out, _ = cli(capsys, "record", copy_run, "--episodes", 2, "--seed", 7)
    assert rc == 0
    logs = sorted((copy_run / "videos").glob("*-text.txt"))
    assert len(logs) == 2 and all(str(p) in out for p in logs) and not list((copy_run / "videos").glob("*.mp4"))
    text = logs[0].read_text()
    side = json.loads(logs[0].with_suffix(".json").read_text())
    s = side["per_step"]
    assert side["seed"] == 7 and side["text"] == logs[0].name and side["epsilon"] == 0.3
    assert "\x1b" not in text and text.startswith("rlmorning record: rlmorning/Copy-v0 | a2c")
    assert "reset (seed 7)" in text and text.count("Observation Tape") == side["steps"] + 1
    assert "Targets" in text and "\n                        ^" in text  # the read head's marker at the tape start
    # one block per step, holding the sidecar's action, reward, score and policy outputs
    for t in range(side["steps"]):
        block = text.split(f"\nstep {t + 1}\n")[1]
        move, write, symbol = s["action"][t]
        tag = "random" if s["random_action"][t] else "greedy"
        action = f"move={('left', 'right')[move]} write={('no', 'yes')[write]} symbol={'ABCDE'[symbol]}  ({tag})"
        assert block.splitlines()[1] == f"action   {action}"
        assert block.splitlines()[2].startswith(f"reward   {s['reward'][t]:+g}")
        probs = s["policy"][t]["action_probs"]
        assert [len(p) for p in probs] == [2, 2, 5] and abs(sum(probs[2]) - 1) < 1e-5
        assert block.splitlines()[0].startswith(f"policy   value {s['policy'][t]['value']:+.3f} | move: left")
    assert s["score"][-1] == side["score"] == sum(s["reward"])
    n = side["steps"]
    assert text.rstrip().splitlines()[-1] == (f"episode  terminated after {n} step{'s' * (n != 1)}, "
                                              f"score {fmt_score(side['score'])}")
    # the greedy actions are the agent's from the episode's states (replayed from the sidecar)
    agent, _ = api.load_agent(copy_run, "best")
    env = CopyEnv()
    obs, _ = env.reset(seed=7)
    state = agent.initial_state(1)
    for t, action in enumerate(s["action"]):
        greedy, state = agent.act(np.array([obs]), state, explore=False)
        assert [int(p[0]) for p in greedy] == s["greedy_action"][t]
        obs, r, *_ = env.step(tuple(action))
        assert r == s["reward"][t]


def test_record_algorithmic_env_as_video(copy_run: Path, tmp_path: Path) -> None:
    args = ["record", str(copy_run), "--episodes", "1", "--format", "mp4", "--max-steps", "3", "--out", str(tmp_path)]
    assert main(args + ["--gif"]) == 0
    video = only(tmp_path, "*.mp4")
    side = json.loads(video.with_suffix(".json").read_text())
    meta, frames = decode(video)
    assert meta["codec"] == "h264" and meta["fps"] == 4  # the env's render_fps
    assert len(frames) == side["frames"] == side["steps"] + 1 and tuple(meta["size"]) == tuple(side["frame_size"])
    assert only(tmp_path, "*.gif").read_bytes()[:4] == b"GIF8"
    # the read head's cell is drawn on a green background
    green = (frames[0][..., 1].astype(int) - frames[0][..., 0].astype(int) > 60).sum()
    assert green > 50
    assert main(args[:-1] + [str(tmp_path / "plain"), "--no-overlay", "--fps", "2"]) == 0
    meta_plain, plain = decode(only(tmp_path / "plain", "*-plain.mp4"))
    assert meta_plain["fps"] == 2 and plain[0].shape[1] < frames[0].shape[1]


def test_text_record_errors_are_one_line(copy_run: Path, cartpole_runs: list[Path],
                                         capsys: pytest.CaptureFixture) -> None:
    cases = [
        ([cartpole_runs[0], "--format", "text"], "renders text"),
        ([copy_run, "--gif"], "--format mp4"),
        ([copy_run, "--fps", 5], "--format mp4"),
        ([copy_run, "--format", "mp4", "--saliency"], "image observations"),
    ]
    for args, message in cases:
        rc, out, err = cli(capsys, "record", *args, "--max-steps", 2)
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1 and message in lines[0], (args, err)


def test_ansi_parsing_marks_and_draws_coloured_cells() -> None:
    from rlmorning.viz.ansi import parse_ansi, plain_text, text_image

    lines = parse_ansi("tape: a\x1b[42mb\x1b[0mc\nout:  \x1b[41mx\x1b[0m\nplain")
    assert plain_text(lines) == "tape: abc\n       ^\nout:  x\n      x\nplain"
    img = text_image(lines, rows=5, cols=20)
    assert img.dtype == np.uint8 and img.shape[0] > 5 * 12 and img.shape[1] > 20 * 8
    assert img.shape == text_image(parse_ansi("short"), rows=5, cols=20).shape  # same grid, same frame size


def test_nature_preset_run_evaluates_and_records_in_little_memory(breakout_run: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose config holds the Nature preset's 1M-transition buffer acts without building it: eval and
    record work with under 2 GiB of RAM available, while rebuilding the training agent is refused."""
    import shutil

    import yaml

    import rlmorning.replay as replay_mod
    from rlmorning.errors import RlmError
    from rlmorning.viz.video import record

    run = tmp_path / "nature"
    shutil.copytree(breakout_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["buffer_size"] = 1_000_000  # dqn_atari: ~6.6 GiB of replay
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(replay_mod, "available_memory_bytes", lambda: int(1.5 * 2**30))
    with pytest.raises(RlmError, match="replay buffer needs"):
        api.load_agent(run, "latest")
    result = api.evaluate_run(run, episodes=1, checkpoint="latest")
    assert len(result["returns"]) == 1
    paths = record(str(run), episodes=1, checkpoint="latest", out=tmp_path / "video", max_steps=30, progress=False)
    assert paths and paths[0]["video"].stat().st_size > 0
