"""Exact resume on the algorithmic envs: env state (tapes, heads, curriculum, RNG, wrapper counters) and the
trainer's recurrent agent state survive a checkpoint, so ``--resume`` continues bit-identically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning import envs as envs_mod
from rlmorning.agents.ntm import RecurrentStateMixin
from rlmorning.envs.state import capture_env_state, pack_tree, restore_env_state, unpack_tree
from rlmorning.run import MetricsCSV, load_checkpoint, save_checkpoint
from rlmorning.trainer import Trainer


def weights_only_round_trip(obj: object) -> object:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_pack_tree_round_trips_nested_states_through_weights_only_load() -> None:
    state = {"h": (torch.arange(3.0), None), "arr": [np.arange(4, dtype=np.int16), np.float32(2.5)], "n": 3}
    back = unpack_tree(weights_only_round_trip(pack_tree(state)))
    assert isinstance(back["h"], tuple) and back["h"][1] is None and torch.equal(back["h"][0], torch.arange(3.0))
    assert isinstance(back["arr"], list) and back["arr"][0].dtype == np.int16 and back["arr"][1] == 2.5
    assert back["n"] == 3
    with pytest.raises(TypeError, match="object"):
        pack_tree(np.array([object()]))


@pytest.mark.parametrize("env_id", ["rlmorning/Copy-v0", "rlmorning/ReversedAddition3-v0", "rlmorning/Reverse-v0",
                                    "rlmorning/NTMAssociativeRecall-v0"])
def test_env_state_round_trip_continues_identically(env_id: str) -> None:
    info = envs_mod.resolve(env_id)
    env, other = envs_mod.make_vector(info, 2, 0), envs_mod.make_vector(info, 2, 99)
    space = env.action_space
    space.seed(0)
    for _ in range(37):
        env.step(space.sample())
    curriculum = hasattr(env.envs[0].unwrapped, "reward_shortfalls")
    if curriculum:  # a curriculum one good episode away from promotion, different per env
        for i, e in enumerate(env.envs):
            e.unwrapped.min_length = 3 + i
            e.unwrapped.reward_shortfalls = [0.0] * (e.unwrapped.PROMOTION_WINDOW - 1)
    saved = weights_only_round_trip(capture_env_state(env))
    assert restore_env_state(other, saved)
    for e, o in zip(env.envs, other.envs, strict=True):
        assert e.unwrapped.checkpoint_state().keys() == o.unwrapped.checkpoint_state().keys()
        if curriculum:
            assert (o.unwrapped.min_length, o.unwrapped.reward_shortfalls) == (e.unwrapped.min_length,
                                                                                e.unwrapped.reward_shortfalls)
            assert o.unwrapped.render_observation() == e.unwrapped.render_observation()
    for _ in range(300):  # several episodes: the resets draw from the restored RNGs and curricula
        a = space.sample()
        for x, y in zip(env.step(a)[:4], other.step(a)[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    env.close()
    other.close()


SMALL = ["torch_threads=1", "num_envs=4", "n_steps=5", "lstm_size=16", "eval_every=0", "log_every=200",
         "checkpoint_every=600", "heldout_states=0"]


def metrics(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")} for r in MetricsCSV.read(run / "metrics.csv")]


def test_a2c_resume_on_copy_is_bit_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the agents' own copy of the recurrent state is switched off: the trainer's checkpoint must suffice
    monkeypatch.setattr(RecurrentStateMixin, "_take_resumed", lambda self, state, batch: state)

    def train(run: Path, steps: int) -> Path:
        api.train("a2c", "rlmorning/Copy-v0", overrides=SMALL, run_dir=run, steps=steps, seed=3, progress=False)
        return run

    full = train(tmp_path / "full", 1200)
    part = train(tmp_path / "part", 600)
    ckpt = load_checkpoint(part / "checkpoints" / "latest.pt")
    assert "env" in ckpt and ckpt["env"]["envs"][0]["data"] is not None
    h, c = unpack_tree(ckpt["agent_state"])["h"], unpack_tree(ckpt["agent_state"])["c"]
    assert h.shape == (4, 1, 16) and c.abs().sum() > 0  # a live LSTM state, not a fresh one
    api.resume(part, steps=1200, progress=False)
    assert metrics(full) == metrics(part)
    p_full = load_checkpoint(full / "checkpoints" / "latest.pt")["agent"]["net"]
    p_part = load_checkpoint(part / "checkpoints" / "latest.pt")["agent"]["net"]
    for k, v in p_full.items():
        assert torch.equal(v, p_part[k]), k


def test_recurrent_state_is_restored_only_with_the_envs(tmp_path: Path) -> None:
    run = tmp_path / "run"
    api.train("a2c", "rlmorning/Copy-v0", overrides=SMALL, run_dir=run, steps=600, seed=0, progress=False)
    path = run / "checkpoints" / "latest.pt"
    saved = unpack_tree(load_checkpoint(path)["agent_state"])
    cfg = api.resolve_run_config("a2c", "rlmorning/Copy-v0", overrides=SMALL, steps=600, progress=False)
    trainer = Trainer(cfg, run, resume=True)
    assert all(torch.equal(trainer.agent_state[k], v) for k, v in saved.items())
    trainer.logger.close()
    ckpt = load_checkpoint(path)
    del ckpt["env"]  # as if the envs could not be saved: fresh episodes, fresh recurrent state
    save_checkpoint(path, ckpt)
    trainer = Trainer(cfg, run, resume=True)
    fresh = trainer.agent.fresh_state(4)
    assert all(torch.equal(trainer.agent_state[k], v) for k, v in fresh.items())
    assert not all(torch.equal(fresh[k], v) for k, v in saved.items())
    trainer.logger.close()
