"""bench/live_step.py: times a copy of a real run's loop per OpenMP variant and leaves the run untouched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "live_step.py"


def test_times_a_copy_of_the_run_alone_and_beside_load(checkpointed_cartpole_run: tuple[Path, Any]) -> None:
    run, untouched = checkpointed_cartpole_run
    out = subprocess.run([sys.executable, str(SCRIPT), str(run), "--steps", "20", "--warmup", "2", "--reps", "1",
                          "--variants", "short spin (default)", "passive"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line for line in out.splitlines() if line.startswith("| short spin") or line.startswith("| passive")]
    assert len(rows) == 2
    for row in rows:  # ms/step (update) alone, steps/s, the same beside load: all measured, all positive
        cells = [c.strip() for c in row.strip("|").split("|")][1:]
        assert all(float(c.split()[0]) > 0 for c in cells)
    assert untouched()


def test_refuses_a_folder_without_a_checkpoint(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and "has no checkpoints/latest.pt" in out.stderr
