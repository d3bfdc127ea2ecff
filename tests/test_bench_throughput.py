"""bench/throughput.py --rounds: pairs timed in alternating order, the median of the per-round ratios."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "throughput.py"


@pytest.fixture()
def throughput(monkeypatch: pytest.MonkeyPatch):
    spec = importlib.util.spec_from_file_location("bench_throughput", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rounds_alternate_the_order_and_report_the_median_ratio(throughput, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[str] = []
    rlm_sps, sb3_sps = iter([200.0, 210.0, 190.0]), iter([100.0, 150.0, 50.0])

    def fake_rlm(args):
        calls.append("rlmorning")
        return {"sps": next(rlm_sps), "updates": 1, "ms_per_step_update": 1.0}

    def fake_sb3(args):
        calls.append("sb3")
        return {"sps": next(sb3_sps)}

    monkeypatch.setattr(throughput, "bench_rlmorning", fake_rlm)
    monkeypatch.setattr(throughput, "bench_sb3", fake_sb3)
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--rounds", "3"])
    throughput.main()
    assert calls == ["rlmorning", "sb3", "sb3", "rlmorning", "rlmorning", "sb3"]
    out = capsys.readouterr().out
    assert "round 2 of 3 (SB3 first)" in out
    # ratios 2.00, 1.40, 3.80 -> median 2.00
    assert "ratio over 3 rounds: median 2.00x (min 1.40x, max 3.80x)" in out


def test_rounds_must_be_positive(throughput, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "argv", ["throughput.py", "--rounds", "0"])
    with pytest.raises(SystemExit):
        throughput.main()
