"""Ctrl-C during training saves a checkpoint and exits cleanly (status 130, no traceback)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import torch


def test_sigint_saves_latest_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "rlmorning.cli", "train", "dqn", "--env", "CartPole-v1", "--steps", "1000000",
           "--run-dir", str(run), "--no-progress", "--set", "learning_starts=200", "--set", "eval_every=0",
           "--set", "checkpoint_every=1000000", "--set", "heldout_states=10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (run / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "saved" in err
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["train"]["step"] > 0
