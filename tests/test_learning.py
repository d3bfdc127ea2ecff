"""Learning tests: seeded runs that must reach a score. Slow: run with ``pytest -m slow`` (and bench/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlmorning import api
from rlmorning.run import MetricsCSV


@pytest.mark.slow
def test_dqn_solves_cartpole_within_50k_steps_seed0(tmp_path: Path) -> None:
    api.train("dqn", "CartPole-v1", run_dir=tmp_path, steps=50_000, seed=0, progress=False)
    rows = MetricsCSV.read(tmp_path / "metrics.csv")
    evals = [float(r["eval_return_mean"]) for r in rows if r.get("eval_return_mean")]
    assert max(evals) >= 475, evals
