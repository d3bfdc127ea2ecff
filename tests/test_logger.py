"""The run logger: metrics.csv rows and, where stderr is not a terminal, one plain line per row."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmorning.logger import Logger
from rlmorning.run import MetricsCSV


def test_plain_lines_show_each_rows_own_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = Logger(tmp_path)
    log.start_progress(total=300, completed=0)  # captured stderr is no terminal: plain lines
    log.log(150, 1.0, {"sps": 400.0, "train_return": 12.0, "loss": 0.5})
    log.log(150, 1.1, {"eval_return_mean": 13.5, "eval_return_std": 1.0}, eval_protocol="p")
    log.log(300, 2.0, {"sps": 390.0, "train_return": 12.25})  # the earlier eval is not repeated here
    log.log(300, 2.1, {"eval_return_mean": 12.0}, eval_protocol="p")
    log.close()
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["step 150: sps 400  ret 12  loss 0.5", "step 150: eval 13.5",
                     "step 300: sps 390  ret 12.2", "step 300: eval 12"]
    rows = MetricsCSV.read(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows] == ["150", "150", "300", "300"] and rows[1]["eval_protocol"] == "p"
