"""bench/learn_minatar.py: a seeded run per seed, cached results that a second call reuses, and the table."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"

pytest.importorskip("minatar")


@pytest.fixture()
def learn_minatar(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH_DIR))  # the script imports its sibling _resumable.py
    spec = importlib.util.spec_from_file_location("bench_learn_minatar", BENCH_DIR / "learn_minatar.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_runs_are_cached_and_tabled(learn_minatar, tmp_path, capsys):
    args = ["--seeds", "0", "--steps", "400", "--eval-every", "200", "--eval-episodes", "2", "--out", str(tmp_path)]
    learn_minatar.main(args)
    first = capsys.readouterr().out
    result = json.loads((tmp_path / "results" / "Breakout-400-0.json").read_text())
    assert [step for step, _, _ in result["evals"]] == [200, 400]
    assert "| 0 | " in first and "final greedy mean over 1 seed(s)" in first

    metrics = tmp_path / "Breakout-seed0" / "metrics.csv"
    before = metrics.stat().st_mtime_ns
    learn_minatar.main(args)  # finished: nothing is trained again
    assert metrics.stat().st_mtime_ns == before
    assert capsys.readouterr().out.splitlines()[1:] == first.splitlines()[2:]  # the table again, no new result line


def test_summarize_lists_finished_runs_only(learn_minatar, tmp_path, capsys):
    learn_minatar.main(["--seeds", "0", "1", "--out", str(tmp_path), "--summarize"])
    assert capsys.readouterr().out.strip().endswith("no finished runs")
    assert not (tmp_path / "Breakout-seed0").exists()


def test_final_mean_needs_the_last_evaluation(learn_minatar):
    done = {"seed": 0, "steps": 300, "evals": [[100, 1.0, 0.5], [300, 4.0, 1.0]]}
    short = {"seed": 1, "steps": 300, "evals": [[100, 2.0, 0.5]]}  # stopped before its final evaluation
    text = learn_minatar.table([done, short])
    assert "| 1 | 2.00 ± 0.50 | — |" in text
    assert text.endswith("final greedy mean over 1 seed(s): 4.00")
