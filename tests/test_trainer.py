"""The training loop: determinism, exact resume, and next-step autoreset handling."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rlmorning import api
from rlmorning.agents.dqn import DQNAgent
from rlmorning.replay import START, TERMINATED, TRANSITION
from rlmorning.run import MetricsCSV, load_checkpoint
from rlmorning.trainer import Trainer

SMALL = [
    "learning_starts=100", "train_freq=2", "gradient_steps=1", "target_update_period=50", "batch_size=16",
    "encoder_kwargs.hidden=[32]", "eval_every=200", "eval_episodes=2", "checkpoint_every=200",
    "log_every=100", "heldout_states=20", "buffer_size=2000", "eps_decay_steps=300",
]
TIME_COLUMNS = {"wall_time", "sps"}


def run_cartpole(tmp: Path, steps: int, extra: list[str] | None = None, seed: int = 0) -> Path:
    api.train("dqn", "CartPole-v1", overrides=SMALL + (extra or []), run_dir=tmp, steps=steps, seed=seed,
              progress=False)
    return tmp


def metrics_without_time(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in MetricsCSV.read(run / "metrics.csv")]


def params(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "checkpoints" / "latest.pt")["agent"]["online"]


def test_same_seed_same_result(tmp_path: Path) -> None:
    a = run_cartpole(tmp_path / "a", 600)
    b = run_cartpole(tmp_path / "b", 600)
    assert metrics_without_time(a) == metrics_without_time(b)
    for k, v in params(a).items():
        assert torch.equal(v, params(b)[k])
    c = run_cartpole(tmp_path / "c", 600, seed=1)
    assert metrics_without_time(a) != metrics_without_time(c)


def test_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    full = run_cartpole(tmp_path / "full", 800)
    part = run_cartpole(tmp_path / "part", 400)
    api.resume(part, steps=800, progress=False)
    assert metrics_without_time(full) == metrics_without_time(part)
    for k, v in params(full).items():
        assert torch.equal(v, params(part)[k]), k


def test_a_run_that_predates_flush_subnormals_resumes_as_it_trained(tmp_path: Path) -> None:
    """Its config.yaml has no ``flush_subnormals``: it resumes with the CPU's exact subnormal arithmetic."""
    from rlmorning.run import read_config

    full = run_cartpole(tmp_path / "full", 800, ["flush_subnormals=false"])
    part = run_cartpole(tmp_path / "part", 400, ["flush_subnormals=false"])
    config = part / "config.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith("flush_subnormals:")))
    api.resume(part, steps=800, progress=False)
    assert read_config(part)["flush_subnormals"] is False
    assert metrics_without_time(full) == metrics_without_time(part)
    for k, v in params(full).items():
        assert torch.equal(v, params(part)[k]), k
    assert read_config(run_cartpole(tmp_path / "new", 10))["flush_subnormals"] is True  # a new run's default


def test_without_replay_in_the_checkpoint_resume_starts_fresh_episodes(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``save_replay: false``: the checkpoint holds neither the replay nor the env state (the episodes in flight
    could not go on without their beginnings in replay); resuming says so and trains on from fresh episodes."""
    run = run_cartpole(tmp_path / "r", 400, extra=["save_replay=false"])
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    assert "env" not in ckpt and "loop" not in ckpt
    assert "replay" not in ckpt["agent"]
    with_replay = load_checkpoint(run_cartpole(tmp_path / "w", 400) / "checkpoints" / "latest.pt")
    assert "env" in with_replay and "replay" in with_replay["agent"]
    capsys.readouterr()
    api.resume(run, steps=600, progress=False)
    assert "checkpoint holds no replay (save_replay: false)" in capsys.readouterr().err
    assert int(float(MetricsCSV.read(run / "metrics.csv")[-1]["step"])) == 600


def test_minatar_resume_equals_uninterrupted_run(tmp_path: Path) -> None:
    """MinAtar's game state is in the checkpoint: a resumed run is the same run, sticky actions included."""
    small = ["learning_starts=100", "batch_size=16", "buffer_size=2000", "target_update_period=50",
             "eps_decay_steps=300", "eval_every=200", "eval_episodes=1", "checkpoint_every=200", "log_every=100",
             "heldout_states=10", "torch_threads=1"]

    def run(name: str, steps: int) -> Path:
        api.train("dqn", "MinAtar/Breakout", overrides=small, run_dir=tmp_path / name, steps=steps, seed=0,
                  progress=False)
        return tmp_path / name

    full, part = run("full", 600), run("part", 400)
    api.resume(part, steps=600, progress=False)
    assert metrics_without_time(full) == metrics_without_time(part)
    for k, v in params(full).items():
        assert torch.equal(v, params(part)[k]), k


class CountingDQN(DQNAgent):
    """DQN with one more counter, declared in a single place: its name in ``saved``."""

    saved = (*DQNAgent.saved, "batches_drawn")

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.batches_drawn = 0

    def _batch(self) -> dict[str, np.ndarray]:
        self.batches_drawn += 1
        return super()._batch()


def test_a_counter_declared_once_survives_save_load_and_resume(tmp_path: Path,
                                                               counter_survives_resume: Callable[..., Any]) -> None:
    full, part = counter_survives_resume("dqn", CountingDQN, "batches_drawn", run_cartpole, tmp_path, 800)
    assert metrics_without_time(full) == metrics_without_time(part)


def test_resume_drops_rows_logged_after_the_checkpoint(tmp_path: Path) -> None:
    run = run_cartpole(tmp_path / "r", 400)
    # pretend the run was killed after logging past its last checkpoint
    with (run / "metrics.csv").open("a") as fh:
        fh.write("999999,1.0\n")
    api.resume(run, steps=600, progress=False)
    steps = [int(float(r["step"])) for r in MetricsCSV.read(run / "metrics.csv")]
    assert 999999 not in steps and max(steps) == 600 and steps == sorted(steps)


def test_next_step_autoreset_pseudo_transitions_never_enter_replay(tmp_path: Path) -> None:
    cfg = api.resolve_run_config("dqn", "CartPole-v1", overrides=SMALL + ["env_kwargs.autoreset_mode=next_step"],
                                 steps=700, num_envs=2, progress=False)
    trainer = Trainer(cfg, tmp_path)
    assert not trainer.same_step
    summary = trainer.train()
    replay = trainer.agent.replay
    episodes = summary["episodes"]
    assert episodes > 10
    # every env step is counted except the reset steps that follow each episode end
    assert trainer.agent.env_steps == trainer.state.step
    flags = replay.flags
    stored = int(((flags & TRANSITION) != 0).sum())
    assert stored == trainer.agent.env_steps
    # the slot after a terminal one always starts a new episode: no transition from a terminal obs
    for env in range(replay.num_envs):
        n = int(replay.count[env])
        for slot in range(n - 1):
            if flags[env, slot] & TERMINATED:
                assert flags[env, slot + 1] & START
    trainer.logger.close()


def test_training_reports_episodes_and_evaluations(tmp_path: Path) -> None:
    run = run_cartpole(tmp_path / "r", 400)
    rows = MetricsCSV.read(run / "metrics.csv")
    evals = [r for r in rows if r.get("eval_return_mean")]
    assert len(evals) == 2
    assert all(float(r["eval_episodes"]) == 2 for r in evals)
    assert all("epsilon" in r["eval_protocol"] for r in evals)
    assert np.isfinite(float(evals[-1]["heldout_q"]))
    assert any(r.get("loss") for r in rows)


def test_final_evaluation_uses_final_eval_episodes(tmp_path: Path) -> None:
    run = run_cartpole(tmp_path / "r", 400, extra=["final_eval_episodes=5"])
    evals = [r for r in MetricsCSV.read(run / "metrics.csv") if r.get("eval_return_mean")]
    assert [float(r["eval_episodes"]) for r in evals] == [2, 5]  # step 200: eval_episodes; step 400: final


def test_evaluation_schedule_does_not_change_training(tmp_path: Path) -> None:
    a = run_cartpole(tmp_path / "a", 400, extra=["eval_every=100"])
    b = run_cartpole(tmp_path / "b", 400, extra=["eval_every=400"])
    for k, v in params(a).items():
        assert torch.equal(v, params(b)[k]), k


def test_train_state_round_trips_every_field_without_listing_them() -> None:
    """TrainState is saved and restored from its fields: a new counter needs only its field."""
    import dataclasses

    from rlmorning.trainer import TrainState

    values = {"step": 7, "episodes": 3, "evals": 2, "best_eval": 1.5, "wall_time": 9.0, "recent_returns": [1.0],
              "recent_lengths": [4], "metric_sums": {"loss": 0.5}, "metric_counts": {"loss": 2}, "last_log_step": 6}
    assert set(values) == {f.name for f in dataclasses.fields(TrainState)}, "new field: add a value above"
    state = TrainState(**values)
    assert TrainState.from_dict(state.to_dict()) == state

    @dataclasses.dataclass
    class WithCounter(TrainState):
        new_counter: int = 0

    extended = WithCounter(**values, new_counter=42)
    assert WithCounter.from_dict(extended.to_dict()).new_counter == 42
    assert WithCounter.from_dict(state.to_dict()).new_counter == 0  # older checkpoints: the default


def test_checkpoint_of_another_format_is_refused_in_one_line(tmp_path: Path) -> None:
    import pytest

    from rlmorning.errors import RlmError
    from rlmorning.run import save_checkpoint

    run = run_cartpole(tmp_path / "r", 200)
    ckpt = load_checkpoint(run / "checkpoints" / "latest.pt")
    ckpt["format"] = 99
    save_checkpoint(run / "checkpoints" / "latest.pt", ckpt)
    with pytest.raises(RlmError, match="checkpoint format 99 is not readable"):
        api.resume(run, steps=400, progress=False)
    with pytest.raises(RlmError, match="checkpoint format 99"):
        api.load_policy(run, "latest")


def test_auto_threads_are_resolved_into_config_yaml(tmp_path: Path) -> None:
    import yaml

    run = run_cartpole(tmp_path / "r", 200, extra=["torch_threads=0"])
    assert yaml.safe_load((run / "config.yaml").read_text())["torch_threads"] == 1  # small net: one thread


def test_more_threads_than_cores_is_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    import rlmorning.trainer

    monkeypatch.setattr(rlmorning.trainer, "available_cores", lambda: 1)  # e.g. a run pinned to one core
    run = run_cartpole(tmp_path / "r", 200, extra=["torch_threads=2"])
    assert "torch_threads=2 but this process may use 1 core(s)" in capsys.readouterr().err
    api.resume(run, steps=300, progress=False)
    assert "kept from the run's config.yaml" in capsys.readouterr().err
    monkeypatch.setattr(rlmorning.trainer, "available_cores", lambda: 2)
    api.resume(run, steps=400, progress=False)
    assert "torch_threads" not in capsys.readouterr().err


@pytest.mark.parametrize(("steps", "warned", "learned"), [(354, True, False), (355, False, True)])
def test_a_run_that_ends_before_its_first_update_round_says_so(steps: int, warned: bool, learned: bool,
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """dqn_classic trains in rounds of 256 steps: with learning_starts 100 the first round is due at step 355."""
    api.train("dqn", "CartPole-v1", run_dir=tmp_path / "r", steps=steps, progress=False,
              overrides=["learning_starts=100", "log_every=1000", "eval_every=0", "heldout_states=0"])
    err = capsys.readouterr().err
    assert ("the first gradient steps come at step 355, after the run's" in err) == warned
    assert any(r.get("loss") for r in MetricsCSV.read(tmp_path / "r" / "metrics.csv")) == learned


def test_a_long_final_evaluation_is_announced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api.train("dqn", "CartPole-v1", run_dir=tmp_path / "r", steps=120, progress=True,
              overrides=["learning_starts=50", "eval_every=1000", "eval_episodes=2", "final_eval_episodes=12",
                         "heldout_states=0", "log_every=1000"])
    err = capsys.readouterr().err
    assert "the run ends with 12 evaluation episodes (final_eval_episodes;" in err
    assert "final evaluation: 12 episodes at epsilon 0.0" in err
    assert MetricsCSV.read(tmp_path / "r" / "metrics.csv")[-1]["eval_episodes"] == "12"


def test_dead_feature_units_are_logged_and_a_dead_encoder_is_warned_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``dead_units`` reaches metrics.csv; a log window in which every feature unit was dead warns once."""
    import rlmorning.agents.dqn as dqn_module

    monkeypatch.setattr(dqn_module, "DEAD_UNITS_EVERY", 5)
    run_cartpole(tmp_path / "alive", 400)
    rows = MetricsCSV.read(tmp_path / "alive" / "metrics.csv")
    values = [float(r["dead_units"]) for r in rows if r.get("dead_units")]
    assert len(values) == 3 and all(0.0 <= v < 1.0 for v in values)  # rows at 200, 300, 400 (learning from 100)
    assert "dead_units 1.0" not in capsys.readouterr().err

    monkeypatch.setattr(dqn_module, "dead_unit_fraction", lambda features: 1.0)
    run_cartpole(tmp_path / "dead", 400)
    err = capsys.readouterr().err
    assert err.count("warning: step 200: every feature unit of the Q-network was zero") == 1
    assert "dead_units 1.0" in err
