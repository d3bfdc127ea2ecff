"""bench/subnormals.py: times a copy of a real run's gradient steps per flushing variant, the run untouched."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "subnormals.py"


def test_times_each_variant_on_a_copy(checkpointed_cartpole_run: tuple[Path, Any]) -> None:
    run, untouched = checkpointed_cartpole_run
    out = subprocess.run([sys.executable, str(SCRIPT), str(run), "--threads", "1", "--reps", "2"],
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"subnormal share of the optimizer's state: \d\.\d{3}", out)
    rows = re.findall(r"^(flush_subnormals=false|false, optimizer step on 1 thread|flush_subnormals=true "
                      r"\(default\))\s+update\s+([\d.]+) ms, optimizer step\s+([\d.]+) ms", out, re.M)
    assert [r[0] for r in rows] == ["flush_subnormals=false", "false, optimizer step on 1 thread",
                                    "flush_subnormals=true (default)"]
    assert all(float(update) >= float(step) > 0 for _, update, step in rows)
    assert untouched()


def test_refuses_a_folder_without_a_checkpoint(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode != 0 and "has no checkpoints/latest.pt" in out.stderr
