"""bench/rmsprop.py: times torch's RMSprop against FlooredRMSprop on a trained MinAtar net, same numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "rmsprop.py"


def test_times_both_and_they_agree() -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), "--steps", "1300", "--blocks", "2", "--reps", "3"],
                         capture_output=True, text=True, check=True).stdout
    zero = re.search(r"exactly zero: ([\d.]+)% of", out)
    assert zero and float(zero.group(1)) > 0  # the trained net has averages at zero: the floored case is met
    medians = dict(re.findall(r"^(torch\.optim\.RMSprop|FlooredRMSprop)\S*.*?\s([\d.]+) us per step", out, re.M))
    assert set(medians) == {"torch.optim.RMSprop", "FlooredRMSprop"}
    assert all(float(v) > 0 for v in medians.values())
    assert "same parameters after 4 steps: True" in out
