"""Ctrl-C during training saves a checkpoint and exits cleanly (status 130, no traceback); the run resumes
exactly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlmorning import api
from rlmorning.agents.a2c import A2CAgent
from rlmorning.run import MetricsCSV, load_checkpoint


@pytest.mark.parametrize(("sig", "status", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                     (signal.SIGTERM, 143, "terminated")])
def test_sigint_and_sigterm_save_latest_checkpoint(tmp_path: Path, sig: int, status: int, word: str) -> None:
    """Ctrl-C and ``kill`` (a scheduler's preemption) both end a run with a checkpoint to resume from."""
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlmorning.cli", "train", "dqn", "--env", "CartPole-v1", "--steps", "1000000",
           "--run-dir", str(run), "--no-progress", "--set", "learning_starts=200", "--set", "eval_every=0",
           "--set", "checkpoint_every=1000000", "--set", "heldout_states=10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 60
        while not (run / "metrics.csv").exists() and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:  # a failed test must not leave a million-step run behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert "saved" in err and f"rlmorning: {word}" in err
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["train"]["step"] > 0


def test_ctrl_c_in_the_middle_of_a_step_resumes_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGINT between ``env.step`` and ``observe`` waits for the step (and its log row) to complete: the
    checkpoint written on interrupt holds the envs, the recurrent state and the half-accumulated log row."""
    overrides = ["torch_threads=1", "num_envs=4", "n_steps=5", "lstm_size=16", "eval_every=0", "log_every=200",
                 "checkpoint_every=100000", "heldout_states=0"]

    def train(run: Path) -> None:
        api.train("a2c", "rlmorning/Copy-v0", overrides=overrides, run_dir=run, steps=1000, seed=1, progress=False)

    train(tmp_path / "full")
    real = A2CAgent.observe
    fired: list[int] = []

    def observe(self: A2CAgent, *args: object, **kwargs: object) -> None:
        if self.env_steps >= 500 and not fired:  # the envs have stepped, the agent has not seen it yet
            fired.append(self.env_steps)
            signal.raise_signal(signal.SIGINT)
        real(self, *args, **kwargs)

    monkeypatch.setattr(A2CAgent, "observe", observe)
    with pytest.raises(KeyboardInterrupt):
        train(tmp_path / "part")
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ckpt = load_checkpoint(tmp_path / "part" / "checkpoints" / "latest.pt")
    assert ckpt["train"]["step"] == fired[0] + 4 and ckpt["train"]["metric_counts"]  # mid-row, after the step
    api.resume(tmp_path / "part", steps=1000, progress=False)

    def rows(run: Path) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k not in ("wall_time", "sps")}
                for r in MetricsCSV.read(run / "metrics.csv")]

    assert rows(tmp_path / "full") == rows(tmp_path / "part")
    p_full = load_checkpoint(tmp_path / "full" / "checkpoints" / "latest.pt")["agent"]["net"]
    p_part = load_checkpoint(tmp_path / "part" / "checkpoints" / "latest.pt")["agent"]["net"]
    for k, v in p_full.items():
        assert torch.equal(v, p_part[k]), k
