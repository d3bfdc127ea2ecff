"""DQN with side information (``aux: hallucination | objects``): RAM in replay aligned with its frame, the
losses fall, boxes move with DrQ's shift, acting ignores RAM and the heads, checkpoints, one-line errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.dqn import DQNAgent, DQNConfig
from rlmorning.agents.nets.side_information import HallucinationBranch, encode_with_map, hallucination_loss
from rlmorning.agents.side_info_heads import SideInformationHeads
from rlmorning.envs import make_vector, resolve
from rlmorning.envs.atari_objects import ram_boxes
from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV

SPACE = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_agent(aux: str, **overrides: object) -> DQNAgent:
    values: dict = dict(encoder="nature", buffer_size=2000, batch_size=8, learning_starts=50, train_freq=1,
                        target_update_period=1, n_step=3, double=True, dueling=True, lr=1e-3,
                        max_grad_norm=0, aux=aux, aux_game="breakout", aux_teacher_hidden=[64, 32])
    values.update(overrides)
    torch.manual_seed(0)
    return DQNAgent(DQNConfig(**values), AgentSetting(SPACE, gym.spaces.Discrete(4), frame_stack=4, total_steps=10_000))


def play(agent: DQNAgent, steps: int, seed: int = 3) -> list[np.ndarray]:
    """Random play in Breakout's RAM env, stored in the agent's replay; returns the RAM read from ALE for
    the newest frame of each observation the agent stored (``ale.getRAM()`` before each step)."""
    env = make_vector(resolve("Breakout"), 1, seed, ram=True)
    obs, _ = env.reset(seed=seed)
    ale = env.unwrapped.games[0].ale if hasattr(env.unwrapped, "games") else None
    assert ale is not None
    rng = np.random.default_rng(seed)
    rams = []
    for _ in range(steps):
        rams.append(ale.getRAM().copy())
        actions = rng.integers(0, 4, 1)
        nxt, rewards, term, trunc, info = env.step(actions)
        target = nxt.copy()
        if term.any() or trunc.any():
            target[0] = info["final_obs"][0] if "final_obs" in info else nxt[0]
        agent.observe(obs, actions, rewards, term, trunc, target, None, info)
        obs = nxt
    return rams


def test_ram_in_replay_is_the_ram_of_each_stored_frame() -> None:
    agent = make_agent("hallucination")
    rams = play(agent, 300)
    replay = agent.replay
    assert replay is not None and replay.side is not None
    assert replay.side.shape == (1, 2000, 128)
    stored = int(replay.count[0])
    assert stored >= 300
    transitions = [i for i in range(stored) if replay.flags[0, i] & 1]  # TRANSITION slots, in order
    assert len(transitions) == 300
    for k, slot in enumerate(transitions):
        np.testing.assert_array_equal(replay.side[0, slot], rams[k], err_msg=f"step {k}")
    assert len({bytes(r) for r in rams}) > 50  # the RAM changes: the check is not trivially true
    batch = replay.sample(16)
    assert batch["side"].shape == (16, 128) and batch["next_side"].shape == (16, 128)
    per_frame = replay.nbytes / (replay.num_envs * replay.stream_capacity)
    assert per_frame == 84 * 84 + 1 + 4 + 1 + 128  # frame, action, reward, flags, RAM


def test_objects_loss_falls_on_a_tiny_run() -> None:
    agent = make_agent("objects")
    play(agent, 120)
    losses = [agent._gradient_step()["objects_loss"] for _ in range(80)]
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10]), (losses[:10], losses[-10:])


def test_hallucination_branch_follows_the_moving_teacher() -> None:
    """The teacher's features move as it learns, so the hallucination loss need not fall; what must hold is
    that the trained branch is much closer to the teacher than a fresh branch is."""
    agent = make_agent("hallucination")
    play(agent, 120)
    teacher_losses = [agent._gradient_step()["teacher_loss"] for _ in range(80)]
    assert np.isfinite(teacher_losses).all()
    heads, replay = agent.aux, agent.replay
    assert heads is not None and replay is not None
    batch = replay.sample(64)
    with torch.no_grad():
        _, fmap = encode_with_map(agent.online.encoder, torch.as_tensor(batch["obs"]))
        features = heads.teacher(torch.as_tensor(batch["side"]))[1]
        trained = hallucination_loss(heads.branch(fmap), features)
        torch.manual_seed(1)
        fresh = HallucinationBranch(tuple(fmap.shape[1:]), features.shape[1])
        untrained = hallucination_loss(fresh(fmap), features)
    assert float(trained) < 0.5 * float(untrained), (float(trained), float(untrained))


@pytest.mark.parametrize("aux", ["hallucination", "objects"])
def test_aux_grad_ratio_is_measured_without_changing_training(aux: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aux_grad_ratio`` (the weighted auxiliary loss's gradient norm on the shared convs over the TD loss's)
    comes every AUX_GRAD_RATIO_EVERY updates, scales with aux_weight, and leaves the weights as they would be."""
    import rlmorning.agents.dqn as dqn_module

    runs = {}
    for every, weight in ((3, 1.0), (10**9, 1.0), (3, 4.0)):
        monkeypatch.setattr(dqn_module, "AUX_GRAD_RATIO_EVERY", every)
        agent = make_agent(aux, aux_weight=weight)
        play(agent, 80)
        runs[(every, weight)] = (agent, [agent._gradient_step().get("aux_grad_ratio") for _ in range(7)])
    agent, ratios = runs[(3, 1.0)]
    assert [r is not None for r in ratios] == [True, False, False, True, False, False, True]
    assert all(np.isfinite(r) and r > 0 for r in ratios if r is not None)
    plain, plain_ratios = runs[(10**9, 1.0)]
    assert plain_ratios[1:] == [None] * 6
    for (name, a), b in zip(agent.online.state_dict().items(), plain.online.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # the first update is measured before any weight moved: weight 4 pulls four times as hard
    assert runs[(3, 4.0)][1][0] == pytest.approx(4 * ratios[0], rel=1e-4)


@pytest.mark.parametrize("aux", ["hallucination", "objects"])
def test_aux_warmup_ramps_the_weight(aux: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``aux_warmup`` ramps the auxiliary weight linearly over that many gradient steps (logged as
    ``aux_weight``); its first update pulls on the convs with weight/warmup; warmup 1 trains as no warmup."""
    import rlmorning.agents.dqn as dqn_module

    monkeypatch.setattr(dqn_module, "AUX_GRAD_RATIO_EVERY", 1)
    ramped = make_agent(aux, aux_weight=2.0, aux_warmup=4)
    play(ramped, 80)
    steps = [ramped._gradient_step() for _ in range(6)]
    assert [m["aux_weight"] for m in steps] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    full = make_agent(aux, aux_weight=2.0)
    play(full, 80)
    first = full._gradient_step()
    assert "aux_weight" not in first
    assert steps[0]["aux_grad_ratio"] == pytest.approx(first["aux_grad_ratio"] / 4, rel=1e-4)
    one = make_agent(aux, aux_weight=2.0, aux_warmup=1)
    play(one, 80)
    for _ in range(3):
        one._gradient_step()
    for _ in range(2):
        full._gradient_step()
    for (name, a), b in zip(one.online.state_dict().items(), full.online.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(RlmError, match="config key 'aux_warmup' must be >= 0"):
        make_agent(aux, aux_warmup=-5)
    with pytest.raises(RlmError, match="'aux_warmup' ramps an auxiliary head's loss: set aux="):
        make_agent("none", aux_warmup=100)


@pytest.mark.parametrize("aux", ["hallucination", "objects"])
def test_zero_weight_leaves_the_q_gradients_of_plain_drq(aux: str) -> None:
    """With ``aux_weight: 0`` the Q-network's gradients equal a plain DrQ(eps) agent's on the same batch and
    augmentation, bit for bit: the auxiliary path (one pass through the convs for both heads) changes nothing else."""
    drq = dict(augment="shift+intensity", encoder_kwargs={"padding": "same"}, init="xavier")
    agent = make_agent(aux, aux_weight=0.0, **drq)
    plain = make_agent("none", **drq)
    plain.online.load_state_dict(agent.online.state_dict())
    play(agent, 120)
    b = agent.replay.sample(8)
    inputs = []
    for a in (agent, plain):
        a._aug_generator.manual_seed(7)
        obs, shift = a._train_obs(b["obs"])
        inputs.append((obs, a._train_obs(b["next_obs"])[0], shift))
        a._set_mode(True)
        a._learner()[1].zero_grad(set_to_none=True)
    batch = (torch.as_tensor(b["actions"].astype(np.int64)), torch.as_tensor(b["returns"]),
             torch.as_tensor(b["discounts"]))
    (obs, nxt, shift), (p_obs, p_nxt, _) = inputs
    assert torch.equal(obs, p_obs) and torch.equal(nxt, p_nxt)
    out = agent._aux_loss_and_grads(b, obs, nxt, *batch, shift)
    loss, _ = plain._loss_and_grads(p_obs, p_nxt, *batch)
    assert out["loss"] == float(loss.detach())
    for (name, p), q in zip(agent.online.named_parameters(), plain.online.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad), name


def test_objectness_prior_sets_the_first_guess_of_every_cell() -> None:
    """With ``aux_objectness_prior`` p the head's first objectness is p on every cell and anchor (for any
    input: its weights are unchanged, only the bias moves), and the other outputs keep the default bias."""
    default, prior = make_agent("objects"), make_agent("objects", aux_objectness_prior=0.01)
    head, prior_head = default.aux.detector, prior.aux.detector
    assert torch.equal(head.conv.weight, prior_head.conv.weight)
    fmap = torch.zeros(2, head.conv.in_channels, 11, 11)
    out, prior_out = head(fmap), prior_head(fmap)
    assert torch.allclose(torch.sigmoid(prior_out[..., 4]), torch.full_like(out[..., 4], 0.01))
    assert torch.equal(prior_out[..., :4], out[..., :4]) and torch.equal(prior_out[..., 5:], out[..., 5:])


def test_input_norm_makes_the_head_blind_to_the_maps_scale() -> None:
    """With ``aux_input_norm`` the object head's output, and so its loss, is the same for a map scaled by any
    positive factor: its gradient cannot ask the shared convs for larger features. Without it the output moves."""
    fmap = torch.rand(2, 64, 11, 11)
    normed, plain = make_agent("objects", aux_input_norm=True).aux.detector, make_agent("objects").aux.detector
    assert torch.allclose(normed(fmap * 30.0), normed(fmap), atol=1e-4)
    assert not torch.allclose(plain(fmap * 30.0), plain(fmap), atol=1e-3)
    scaled = (fmap * 1.0).requires_grad_(True)
    normed(scaled).square().sum().backward()
    radial = float((scaled.grad * fmap).sum() / (scaled.grad.norm() * fmap.norm()))
    assert abs(radial) < 1e-4  # the gradient on the map is orthogonal to the map itself (per sample)


def test_object_boxes_move_with_the_random_shift() -> None:
    agent = make_agent("objects")
    heads = agent.aux
    assert isinstance(heads, SideInformationHeads)
    ram = np.zeros((2, 128), dtype=np.uint8)
    ram[:, 72], ram[:, 99], ram[:, 101] = 100, 120, 100  # paddle and ball on screen
    boxes, _, valid = ram_boxes("breakout", ram)
    assert valid.all()
    seen: list[torch.Tensor] = []
    original = heads._objects.__globals__["build_yolo_targets"]

    def spy(boxes_t: torch.Tensor, *args: object) -> object:
        seen.append(boxes_t.clone())
        return original(boxes_t, *args)

    heads._objects.__globals__["build_yolo_targets"] = spy
    try:
        fmap = torch.zeros(2, 64, 7, 7)
        heads._objects(fmap, ram, torch.tensor([[2, -3], [0, 0]]))
    finally:
        heads._objects.__globals__["build_yolo_targets"] = original
    moved = seen[0].numpy()
    np.testing.assert_allclose(moved[0, :, 0], boxes[0, :, 0] + 3)  # content moves by -dc = +3 columns
    np.testing.assert_allclose(moved[0, :, 1], boxes[0, :, 1] - 2)  # and by -dr = -2 rows
    np.testing.assert_allclose(moved[1], boxes[1])
    np.testing.assert_allclose(moved[..., 2:], boxes[..., 2:])


def test_acting_ignores_ram_and_the_heads() -> None:
    agent = make_agent("hallucination")
    play(agent, 100)
    for _ in range(10):
        agent._gradient_step()
    obs = np.random.default_rng(0).integers(0, 256, (5, 4, 84, 84), dtype=np.uint8)
    q = agent.q_values(obs).clone()
    greedy = agent.act(obs, None, explore=False)[0]
    assert agent.replay is not None and agent.aux is not None
    agent.replay.side[:] = 255  # corrupt every stored RAM byte
    with torch.no_grad():
        for p in agent.aux.parameters():
            p.normal_()
    torch.testing.assert_close(agent.q_values(obs), q)
    np.testing.assert_array_equal(agent.act(obs, None, explore=False)[0], greedy)
    policy = DQNAgent(agent.config, AgentSetting(SPACE, gym.spaces.Discrete(4), frame_stack=4, total_steps=10,
                                                 inference=True))
    assert policy.aux is None
    policy.load_state_dict(agent.state_dict(include_buffers=False))
    torch.testing.assert_close(policy.q_values(obs), q)


def test_checkpoint_holds_heads_and_ram() -> None:
    agent = make_agent("hallucination")
    play(agent, 80)
    for _ in range(3):
        agent._gradient_step()
    state = agent.state_dict()
    assert "aux" in state and any(k.startswith("teacher.") for k in state["aux"])
    other = make_agent("hallucination")
    other.load_state_dict(state)
    assert other.aux is not None and agent.aux is not None and other.replay is not None
    for a, b in zip(agent.aux.parameters(), other.aux.parameters(), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(other.replay.side, agent.replay.side)  # type: ignore[union-attr]
    torch.manual_seed(5)
    m1 = agent._gradient_step()
    torch.manual_seed(5)
    m2 = other._gradient_step()
    assert m1 == m2


def test_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(RlmError, match="config key 'aux' must be one of none, hallucination, objects"):
        make_agent("depth")
    with pytest.raises(RlmError, match="no RAM object table for Atari game 'seaquest'. Supported: boxing"):
        make_agent("objects", aux_game="seaquest")
    with pytest.raises(RlmError, match="aux_weight"):
        make_agent("hallucination", aux_weight=-1.0)
    with pytest.raises(RlmError, match="needs an Atari game; MinAtar/Breakout is not one"):
        api.train("dqn", "MinAtar/Breakout", overrides=["aux=hallucination"], steps=10,
                  run_dir=tmp_path / "m", progress=False)
    with pytest.raises(RlmError, match="does not combine with a world model"):
        api.train("dqn", "Breakout", overrides=["aux=hallucination", "model.codec=vae"], steps=10,
                  run_dir=tmp_path / "d", progress=False)
    with pytest.raises(RlmError, match="aux_objectness_prior' must be in \\[0, 1\\), got 1.0"):
        make_agent("objects", aux_objectness_prior=1.0)
    with pytest.raises(RlmError, match="aux_objectness_prior' initialises the object head: set aux=objects"):
        make_agent("hallucination", aux_objectness_prior=0.01)
    with pytest.raises(RlmError, match="aux_input_norm' normalises the object head's input: set aux=objects"):
        make_agent("hallucination", aux_input_norm=True)
    agent = make_agent("hallucination")
    obs = np.zeros((1, 4, 84, 84), dtype=np.uint8)
    with pytest.raises(RlmError, match="needs the console RAM"):
        agent.observe(obs, np.zeros(1, dtype=np.int64), np.zeros(1), np.array([False]), np.array([False]), obs,
                      None, {})


def test_train_with_aux_writes_the_game_and_resumes(tmp_path: Path) -> None:
    """A short ``atari100k`` + objects run: the game is resolved into config.yaml, the heads, the replay's RAM and
    the RAM env go into the checkpoint, and a resume continues exactly (the same rows as an uninterrupted run)."""
    overrides = ["aux=objects", "learning_starts=40", "batch_size=8", "buffer_size=500", "eval_every=0",
                 "torch_threads=1", "checkpoint_every=60", "log_every=30", "save_replay=true"]
    run = tmp_path / "run"
    api.train("dqn", "Breakout", config="atari100k", overrides=overrides, steps=60, seed=1, run_dir=run,
              progress=False)
    assert "aux_game: auto" in (run / "config.yaml").read_text()  # resolved per run, not written
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    agent_state = state["agent"] if "agent" in state else state
    assert any(k.startswith("detector.") for k in agent_state["aux"])
    api.resume(run, steps=90, progress=False)
    whole = tmp_path / "whole"
    api.train("dqn", "Breakout", config="atari100k", overrides=overrides, steps=90, seed=1, run_dir=whole,
              progress=False)

    def logged(path: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")}
                for r in MetricsCSV.read(path / "metrics.csv")]

    assert logged(run) == logged(whole)
    rows = (run / "metrics.csv").read_text().splitlines()
    col = rows[0].split(",").index("objects_loss")
    assert int(float(rows[-1].split(",")[0])) == 90 and float(rows[-1].split(",")[col]) > 0
    # record --objects: RAM truth (green) and the run's object head (predictions) on the video
    from rlmorning.envs.atari_objects import TRUTH_COLOR
    from rlmorning.viz.objects import object_overlay
    from rlmorning.viz.rollout import load_source
    from rlmorning.viz.video import record

    paths = record(str(run), episodes=1, checkpoint="latest", max_steps=12, progress=False, objects=True)
    sidecar = json.loads(paths[0]["sidecar"].read_text())
    assert sidecar["objects"]["predicted"] is True and sidecar["objects"]["classes"] == ["paddle", "ball"]
    src = load_source(str(run), "latest")
    overlay = object_overlay(src, (4, 84, 84))
    screen = np.zeros((210, 160, 3), np.uint8)
    ram = np.zeros(128, np.uint8)
    ram[72] = 100
    drawn = overlay.draw(screen, np.zeros((4, 84, 84), np.uint8), ram)
    assert (drawn == np.array(TRUTH_COLOR, np.uint8)).all(-1).sum() > 20  # the paddle's box outline
    assert overlay.predicted(np.zeros((4, 84, 84), np.uint8)) is not None
    with pytest.raises(RlmError, match="--objects needs an Atari game"):
        object_overlay(dataclasses.replace(src, info=resolve("MinAtar/Breakout")), (4, 10, 10))


def _bench_side_information() -> Any:
    """bench/side_information.py as a module (a fresh copy per call: its caches start empty)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_side", Path(__file__).parents[1] / "bench" /
                                                  "side_information.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    return bench


def test_bench_detection_quality_of_a_perfect_and_a_blind_head() -> None:
    """bench/side_information.py's held-out measure: a head predicting the RAM boxes exactly hits every object
    (IoU 1); a head that sees nothing hits none."""
    from types import SimpleNamespace

    from rlmorning.agents.nets.yolo import build_yolo_targets, game_anchors

    bench = _bench_side_information()
    obs, ram = bench.heldout_frames("Breakout", steps=60)
    assert obs.shape == (60, 4, 84, 84) and ram.shape == (60, 128)
    boxes, classes, valid = ram_boxes("breakout", ram)
    anchors = torch.as_tensor(game_anchors("breakout"))
    t = build_yolo_targets(torch.as_tensor(boxes), torch.as_tensor(classes), torch.as_tensor(valid), (7, 7),
                           anchors, (84, 84))
    perfect = torch.full((60, len(anchors), 7, 7, 7), -12.0)
    perfect[..., 0:2] = torch.logit(t.xy.clamp(1e-4, 1 - 1e-4))
    perfect[..., 2:4] = t.wh
    perfect[..., 4] = torch.where(t.obj, 12.0, -12.0)
    perfect[..., 5:] = torch.nn.functional.one_hot(t.cls, 2).float() * 24.0 - 12.0

    class Encoder(torch.nn.Module):
        def feature_map(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(x.shape[0], 1, 7, 7)

    def agent(pred: torch.Tensor) -> SimpleNamespace:
        calls = iter([pred[i:i + 100] for i in range(0, len(pred), 100)])
        return SimpleNamespace(online=SimpleNamespace(encoder=Encoder()),
                               aux=SimpleNamespace(detector=_Head(anchors, calls)))

    good = bench.detection_quality(agent(perfect), "Breakout", obs, ram)
    assert good["paddle"]["objects"] == int(valid[:, 0].sum()) > 0
    assert good["paddle"]["hit_rate"] == 1.0 and good["paddle"]["mean_iou"] > 0.99
    blind = bench.detection_quality(agent(torch.full_like(perfect, -12.0)), "Breakout", obs, ram)
    assert blind["paddle"]["hit_rate"] == 0.0 and blind["paddle"]["mean_iou"] == 0.0


class _Head(torch.nn.Module):
    def __init__(self, anchors: torch.Tensor, outputs: Iterator[torch.Tensor]) -> None:
        super().__init__()
        self.anchors, self.outputs = anchors, outputs

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return next(self.outputs)


def test_bench_head_quality_is_kept_in_the_run_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """bench/side_information.py measures a finished run's heads once and keeps the result in the run folder
    (a session may end before --summarize); another held-out size or variant measures again."""
    bench = _bench_side_information()
    calls = []

    def measured(run: Path, variant: str, game: str, frames: object) -> str:
        calls.append((variant, frames))
        return f"{variant} quality #{len(calls)}"

    monkeypatch.setattr(bench, "head_quality", measured)
    monkeypatch.setattr(bench, "_heldout", lambda game, count: count)
    assert bench.cached_head_quality(tmp_path, "objects", "Breakout", 1000) == "objects quality #1"
    assert bench.cached_head_quality(tmp_path, "objects", "Breakout", 1000) == "objects quality #1"
    assert json.loads((tmp_path / bench.QUALITY_FILE).read_text())["heldout"] == 1000
    assert bench.cached_head_quality(tmp_path, "objects", "Breakout", 500) == "objects quality #2"
    assert bench.cached_head_quality(tmp_path, "hallucination", "Breakout", 500) == "hallucination quality #3"
    assert calls == [("objects", 1000), ("objects", 500), ("hallucination", 500)]
