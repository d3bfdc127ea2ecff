"""NTM addressing against hand-computed values, the memory cores, and the supervised ntm agent end to end."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlmorning import api, cli
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.nets.ntm import (
    NTM,
    LSTMCore,
    circular_shift,
    content_addressing,
    cosine_similarity,
    erase_add_write,
    interpolate,
    read,
    reset_rows,
    sharpen,
)
from rlmorning.agents.ntm import NTMAgent, NTMConfig, step_info
from rlmorning.envs.algorithmic.ntm_tasks import NTMCopyEnv, NTMTaskEnv
from rlmorning.errors import RlmError
from rlmorning.run import MetricsCSV, load_checkpoint

T = torch.tensor


# --------------------------------------------------------------------------------------- addressing
def test_content_addressing_hand_values_and_one_hot_focus() -> None:
    memory = T([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    key = T([[[2.0, 0.0]]])  # cosine ignores the key's norm
    cos = cosine_similarity(key, memory)
    assert torch.allclose(cos, T([[[1.0, 0.0, 1 / math.sqrt(2)]]]), atol=1e-6)
    e = [math.exp(2 * c) for c in (1.0, 0.0, 1 / math.sqrt(2))]
    expected = T([[[x / sum(e) for x in e]]])
    assert torch.allclose(content_addressing(memory, key, T([[2.0]])), expected, atol=1e-6)
    # a large key strength focuses on the single best match
    rows = torch.eye(6)[None]
    w = content_addressing(rows, rows[:, 4:5] * 3.0, T([[100.0]]))
    assert torch.allclose(w, torch.eye(6)[4][None, None], atol=1e-6)
    # beta = 0: uniform
    assert torch.allclose(content_addressing(rows, rows[:, :1], T([[0.0]])), torch.full((1, 1, 6), 1 / 6))


def test_cosine_is_safe_at_zero() -> None:
    key = torch.zeros(1, 1, 3, requires_grad=True)
    w = content_addressing(torch.zeros(1, 4, 3), key, T([[5.0]]))
    w.sum().backward()
    assert torch.isfinite(w).all() and torch.isfinite(key.grad).all()


def test_interpolation_gate() -> None:
    w = interpolate(T([[[1.0, 0.0, 0.0]]]), T([[[0.0, 1.0, 0.0]]]), T([[0.25]]))
    assert torch.allclose(w, T([[[0.25, 0.75, 0.0]]]))


def test_shift_moves_the_focus_one_slot_circularly() -> None:
    n = 5
    plus, minus, stay = T([[[0.0, 0.0, 1.0]]]), T([[[1.0, 0.0, 0.0]]]), T([[[0.0, 1.0, 0.0]]])
    for i in range(n):
        w = torch.eye(n)[i][None, None]
        assert torch.equal(circular_shift(w, plus), torch.eye(n)[(i + 1) % n][None, None])
        assert torch.equal(circular_shift(w, minus), torch.eye(n)[(i - 1) % n][None, None])
        assert torch.equal(circular_shift(w, stay), w)
    # a split shift spreads the focus both ways; mass is kept
    w = circular_shift(torch.eye(n)[2][None, None], T([[[0.5, 0.0, 0.5]]]))
    assert torch.allclose(w, T([[[0.0, 0.5, 0.0, 0.5, 0.0]]]))
    # wider shifts (k = 2) by hand: +2 from slot 4 lands on slot 1 of 5
    assert torch.allclose(circular_shift(torch.eye(n)[4][None, None], T([[[0.0, 0.0, 0.0, 0.0, 1.0]]])),
                          torch.eye(n)[1][None, None])


def test_sharpening() -> None:
    w = T([[[0.5, 0.25, 0.25]]])
    assert torch.allclose(sharpen(w, T([[2.0]])), T([[[2 / 3, 1 / 6, 1 / 6]]]), atol=1e-6)
    assert torch.allclose(sharpen(w, T([[1.0]])), w, atol=1e-6)
    assert sharpen(w, T([[50.0]]))[0, 0, 0] > 0.999


def test_erase_then_add_writes_exactly() -> None:
    memory = torch.ones(1, 3, 2)
    w = T([[[0.0, 1.0, 0.0]]])
    out = erase_add_write(memory, w, erase=T([[[1.0, 0.0]]]), add=T([[[0.5, 2.0]]]))
    assert torch.equal(out, T([[[1.0, 1.0], [0.5, 3.0], [1.0, 1.0]]]))
    # partial weights erase and add proportionally
    out = erase_add_write(memory, T([[[0.5, 0.5, 0.0]]]), erase=T([[[1.0, 1.0]]]), add=T([[[0.0, 0.0]]]))
    assert torch.equal(out, T([[[0.5, 0.5], [0.5, 0.5], [1.0, 1.0]]]))
    # two heads: erases multiply, adds sum (order-free)
    two = erase_add_write(memory, T([[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]]), erase=T([[[0.5, 0.0], [0.5, 0.0]]]),
                          add=T([[[1.0, 0.0], [0.0, 1.0]]]))
    assert torch.allclose(two[0, 0], T([1.0 * 0.25 + 1.0, 1.0 + 1.0]))
    assert torch.allclose(read(out, T([[[0.0, 0.0, 1.0]], ])), T([[[1.0, 1.0]]]))


# --------------------------------------------------------------------------------------- cores
def test_ntm_core_state_is_batch_first_and_numerically_safe() -> None:
    torch.manual_seed(0)
    core = NTM(5, memory_size=12, memory_width=6, controller_size=16, read_heads=2, write_heads=1, beta_max=30.0)
    state = core.initial_state(3)
    assert state["memory"].shape == (3, 12, 6) and state["read_w"].shape == (3, 2, 12)
    assert state["h"].shape == (3, 1, 16) and torch.all(state["memory"] == 1e-6)
    xs = torch.randn(7, 3, 5, requires_grad=True) * 1e4  # absurd inputs: clipping keeps everything finite
    feats, final, states = core.forward_sequence(xs, state, record=True)
    assert feats.shape == (7, 3, core.out_dim) and len(states) == 7
    for s in states:
        assert torch.allclose(s["read_w"].sum(-1), torch.ones(3, 2), atol=1e-5)
    feats.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in core.parameters() if p.grad is not None)
    params = core._head_params(torch.full((1, core.heads.out_features), 1e4))
    assert float(params["beta"].max()) <= 30.0 and float(params["gamma"].min()) >= 1.0
    # resetting rows restores them to the initial state and leaves the others alone
    fresh = core.initial_state(3)
    mixed = reset_rows(final, fresh, torch.tensor([True, False, True]))
    assert torch.equal(mixed["memory"][0], fresh["memory"][0]) and torch.equal(mixed["memory"][1], final["memory"][1])


def test_feed_forward_controller_and_lstm_core() -> None:
    torch.manual_seed(0)
    ff = NTM(4, controller="ff", controller_size=8, memory_size=6, memory_width=3)
    assert "h" not in ff.initial_state(2)
    feats, _ = ff(torch.randn(2, 4), ff.initial_state(2))
    assert feats.shape == (2, 8 + 3)
    lstm = LSTMCore(4, hidden=8, layers=2)
    xs = torch.randn(5, 2, 4)
    fused, state_fused, _ = lstm.forward_sequence(xs, lstm.initial_state(2))
    stepped, state_stepped, _ = lstm.forward_sequence(xs, lstm.initial_state(2), record=True)
    assert torch.allclose(fused, stepped, atol=1e-6) and torch.allclose(state_fused["h"], state_stepped["h"], atol=1e-6)
    with pytest.raises(RlmError, match="controller"):
        NTM(4, controller="gru")


# --------------------------------------------------------------------------------------- the agent
SMALL = [
    "torch_threads=1", "num_envs=8", "memory_size=16", "memory_width=8", "controller_size=32", "batch_size=4",
    "lr=0.01", "env_kwargs.bits=4", "env_kwargs.max_length=3", "eval_episodes=2", "log_every=200",
]


def train(run: Path, steps: int, *extra: str, seed: int = 0) -> Path:
    api.train("ntm", "rlmorning/NTMCopy-v0", overrides=SMALL + list(extra), run_dir=run, steps=steps, seed=seed,
              progress=False)
    return run


@pytest.fixture(scope="module")
def copy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short NTM run on Copy (4 bits, lengths 1-3): ~700 sequences."""
    return train(tmp_path_factory.mktemp("ntm") / "copy", 2800, "eval_every=1400", "checkpoint_every=1400")


def test_supervised_loss_and_bit_errors_drop(copy_run: Path) -> None:
    rows = [r for r in MetricsCSV.read(copy_run / "metrics.csv") if r.get("loss")]
    first, last = rows[0], rows[-1]
    assert float(last["sequences"]) > 500
    assert float(last["loss"]) < 0.85 * float(first["loss"]), (first["loss"], last["loss"])
    assert float(last["bits_error_per_seq"]) < 0.7 * float(first["bits_error_per_seq"])
    evals = [r for r in MetricsCSV.read(copy_run / "metrics.csv") if r.get("eval_return_mean")]
    assert len(evals) == 2 and (copy_run / "checkpoints" / "best.pt").is_file()


def params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "latest.pt")["agent"]["net"]


def metrics(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in MetricsCSV.read(run / "metrics.csv")]


def test_same_seed_same_run_and_resume_is_exact(tmp_path: Path) -> None:
    extra = ("eval_every=150", "checkpoint_every=150", "log_every=50")
    full = train(tmp_path / "full", 300, *extra)
    part = train(tmp_path / "part", 150, *extra)
    twin = train(tmp_path / "twin", 150, *extra)
    for k, v in params(part).items():
        assert torch.equal(v, params(twin)[k]), k
    assert metrics(part) == metrics(twin)
    # episodes in flight, pending sequences and the recurrent state all survive the checkpoint
    ckpt = load_checkpoint(part / "checkpoints" / "latest.pt")
    assert "env" in ckpt and "live_state" in ckpt["agent"] and ckpt["agent"]["partial"]
    api.resume(part, steps=300, progress=False)
    assert metrics(part) == metrics(full)
    for k, v in params(full).items():
        assert torch.equal(v, params(part)[k]), k
    other = train(tmp_path / "other", 150, *extra, seed=1)
    assert any(not torch.equal(v, params(other)[k]) for k, v in params(part).items())


class CountingNTM(NTMAgent):
    """The NTM agent with one more counter, declared in a single place: its name in ``saved``."""

    saved = (*NTMAgent.saved, "batches_trained")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.batches_trained = 0

    def train_batch(self, batch: list[dict[str, np.ndarray]]) -> dict[str, float]:
        self.batches_trained += 1
        return super().train_batch(batch)


def test_a_counter_declared_once_survives_save_load_and_resume(tmp_path: Path,
                                                               counter_survives_resume: Callable[..., Any]) -> None:
    def train_copy(run: Path, steps: int) -> Path:
        return train(run, steps, "eval_every=150", "checkpoint_every=150", "log_every=50")

    full, part = counter_survives_resume("ntm", CountingNTM, "batches_trained", train_copy, tmp_path, 300)
    assert metrics(part) == metrics(full)


def make_agent(**overrides: object) -> tuple[NTMAgent, NTMTaskEnv]:
    env = NTMCopyEnv(bits=3, max_length=3)
    cfg = NTMConfig(**{"memory_size": 8, "memory_width": 4, "controller_size": 12, "batch_size": 2, **overrides})
    torch.manual_seed(0)
    agent = NTMAgent(cfg, AgentSetting(env.observation_space, env.action_space, num_envs=2, total_steps=100))
    return agent, env


def test_state_dict_round_trip_with_sequences_in_flight() -> None:
    a, env = make_agent()
    env.reset(seed=0)
    state = a.initial_state(1)
    for _ in range(3):  # two full episodes and a partial one
        obs, _ = env.reset()
        done = False
        while not done:
            act, state = a.act(obs[None], state, explore=True)
            nxt, r, done, _, info = env.step(act[0])
            vec_info = {k: np.asarray([v]) for k, v in info.items()}
            a.observe(obs[None], act, np.array([r]), np.array([done]), np.array([False]), nxt[None], None, vec_info)
            state = a.reset_state(state, np.array([done]))
            obs = nxt
            if len(a.pending) == 2 and a.partial[0]["mask"]:
                break
    assert a.update(0)["sequences"] == 2.0
    b, _ = make_agent(lr=0.5)
    b.load_state_dict(a.state_dict())
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k])
    assert a.optimizer.state_dict()["state"].keys() == b.optimizer.state_dict()["state"].keys()
    assert b.sequences == a.sequences and len(b.partial[0]["mask"]) == len(a.partial[0]["mask"])
    ep = env.sample_episode(3)
    assert np.array_equal(a.predict(ep.inputs[:, None])[0], b.predict(ep.inputs[:, None])[0])
    # the trainer's recurrent state comes back on the next act, unless initial_state is asked for
    x = np.zeros((1, 4), np.float32)
    out_a, _ = a.act(x, a._live_state, explore=False)
    b.load_state_dict(a.state_dict())
    out_b, _ = b.act(x, b.fresh_state(1), explore=False)
    assert np.array_equal(out_a, out_b)
    b.load_state_dict(a.state_dict(include_buffers=False))
    assert b._resume_state is None
    # without saved sequences, the episodes still running are dropped until they end (they lack a start)
    info = {"target": np.zeros((1, 3), np.int8), "output_mask": np.array([1])}
    z = (np.zeros((1, 4), np.float32), np.zeros((1, 3), np.int8), np.zeros(1))
    for end in (False, True, False):
        b.observe(*z, np.array([end]), np.array([False]), z[0], None, info)
    assert len(b.pending) == 0 and len(b.partial[0]["mask"]) == 1


def test_step_info_reads_final_info_for_finished_rows_and_agent_needs_targets(tmp_path: Path) -> None:
    info = {"target": np.array([[0, 0], [0, 0]]), "final_info": {"target": np.array([[0, 0], [1, 1]]),
                                                                   "_target": np.array([False, True])}}
    assert step_info(info, "target", np.array([False, True])).tolist() == [[0, 0], [1, 1]]
    assert step_info(info, "missing", np.array([False, True])) is None
    a, _ = make_agent()
    with pytest.raises(RlmError, match="targets"):
        a.observe(np.zeros((1, 4)), np.zeros((1, 3)), np.zeros(1), np.zeros(1, bool), np.zeros(1, bool),
                  np.zeros((1, 4)), None, {})
    with pytest.raises(RlmError, match="MultiBinary"):
        api.train("ntm", "CartPole-v1", run_dir=tmp_path / "cartpole", steps=10)


def test_plot_memory_writes_a_png_and_rejects_runs_without_memory(copy_run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plot-memory", str(copy_run), "--length", "3"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == copy_run / "plots" / "memory-latest-L3-s0.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "m.png"
    assert cli.main(["plot-memory", str(copy_run), "--checkpoint", "best", "--out", str(out)]) == 0
    assert out.is_file()
    lstm = train(tmp_path / "lstm", 40, "core=lstm", "lstm_size=8", "lstm_layers=1", "eval_every=0")
    assert cli.main(["plot-memory", str(lstm)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "NTM memory core" in err and "core=lstm" in err


def test_non_finite_gradients_never_reach_the_weights() -> None:
    a, env = make_agent()
    env.reset(seed=0)
    batch = [{"inputs": e.inputs * np.nan, "targets": e.targets, "mask": e.mask}
             for e in (env.sample_episode(2) for _ in range(2))]
    before = {k: v.clone() for k, v in a.net.state_dict().items()}
    a.train_batch(batch)
    assert a.skipped == 1 and all(torch.equal(v, a.net.state_dict()[k]) for k, v in before.items())


def test_lr_anneals_linearly_to_lr_end_over_the_run() -> None:
    a, env = make_agent(lr=1e-2, lr_end=1e-3)  # total_steps=100
    env.reset(seed=0)
    batch = [env.sample_episode(2) for _ in range(2)]
    batch = [{"inputs": e.inputs, "targets": e.targets, "mask": e.mask} for e in batch]
    lrs = []
    for steps in (0, 50, 100, 400):
        a.env_steps = steps
        a.train_batch(batch)
        lrs.append(a.optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, [1e-2, 5.5e-3, 1e-3, 1e-3])
    constant, _ = make_agent(lr=1e-2)
    constant.env_steps = 90
    constant.train_batch(batch)
    assert constant.optimizer.param_groups[0]["lr"] == 1e-2
    with pytest.raises(RlmError, match="lr_end"):
        make_agent(lr_end=-1.0)
