"""``rlmorning report``: the numbers are rliable's (same seed, same IQM and CI), scores are normalised
with the reference table, and runs are grouped by config and env."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlmorning.cli import main
from rlmorning.errors import RlmError

pytest.importorskip("rliable")

PROTOCOL = "true game score: unclipped, all lives, <= 108000 frames, 30 no-op starts, epsilon=0.05"
REPS = 500


def _make_run(root: Path, name: str, env: str, seed: int, lr: float, final: float, evals: bool = True) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    cfg = {"agent": "dqn", "env": env, "steps": 1000, "seed": seed, "device": "cpu", "lr": lr, "gamma": 0.99}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cols = ["step", "wall_time", "loss", "eval_return_mean", "eval_episodes", "eval_protocol"]
    with (run / "metrics.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerow({"step": 500, "wall_time": 1.0, "loss": 0.5})
        if evals:
            w.writerow({"step": 500, "wall_time": 1.1, "eval_return_mean": final - 5, "eval_episodes": 10,
                        "eval_protocol": PROTOCOL})
        w.writerow({"step": 1000, "wall_time": 2.0, "loss": 0.4})
        if evals:
            w.writerow({"step": 1000, "wall_time": 2.1, "eval_return_mean": final, "eval_episodes": 10,
                        "eval_protocol": PROTOCOL})
    return run


@pytest.fixture
def atari_runs(tmp_path: Path) -> tuple[Path, dict[tuple[float, str], list[float]]]:
    """2 configs (lr) x 2 games x 5 seeds, plus one run that never evaluated."""
    rng = np.random.default_rng(0)
    finals: dict[tuple[float, str], list[float]] = {}
    for lr in (1e-4, 3e-4):
        for env, base in (("Breakout", 20.0), ("Pong", -5.0)):
            for seed in range(5):
                final = round(base + 10 * float(rng.random()), 3)
                finals.setdefault((lr, env), []).append(final)
                _make_run(tmp_path / "runs", f"{env}-dqn-{seed}-lr{lr}", env, seed, lr, final)
    _make_run(tmp_path / "runs", "Pong-dqn-9-early", "Pong", 9, 1e-4, 0.0, evals=False)
    return tmp_path / "runs", finals


def _expected_matrix(finals, lr: float, baseline: str | None) -> np.ndarray:
    from rlmorning.reference_scores import ATARI57

    cols = []
    for env, rom in (("Breakout", "breakout"), ("Pong", "pong")):
        s = np.array(finals[(lr, env)])
        if baseline == "human":
            random, human = ATARI57.scores[rom]
            s = (s - random) / (human - random)
        cols.append(s)
    return np.stack(cols, axis=1)


def test_iqm_and_ci_equal_a_direct_rliable_call(atari_runs, tmp_path):
    from rliable import library as rly
    from rliable import metrics

    from rlmorning.report import write_report

    runs, finals = atari_runs
    rep = write_report([str(runs / "*")], out=tmp_path / "out" / "report.md", baseline="human", reps=REPS, seed=7)
    labels = [g.label for g in rep.groups]
    assert labels == ["dqn lr=0.0001", "dqn lr=0.0003"]
    score_dict = {f"dqn lr={lr}": _expected_matrix(finals, lr, "human") for lr in (0.0001, 0.0003)}
    for g in rep.groups:
        np.testing.assert_allclose(g.matrix, score_dict[g.label])
        assert g.tasks == ["Breakout", "Pong"]

    def func(x):
        return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x), metrics.aggregate_mean(x)])

    np.random.seed(7)  # rliable 1.2.0 bootstraps with NumPy's global RNG
    points, intervals = rly.get_interval_estimates(score_dict, func, reps=REPS)
    for label in labels:
        for i, name in enumerate(("IQM", "Median", "Mean")):
            p, lo, hi = rep.aggregate(label, name)
            assert p == pytest.approx(points[label][i], abs=1e-12)
            assert (lo, hi) == pytest.approx((intervals[label][0, i], intervals[label][1, i]), abs=1e-12)
            assert lo <= p <= hi
    iqm, lo, hi = rep.aggregate("dqn lr=0.0001", "IQM")
    text = rep.markdown
    assert f"| dqn lr=0.0001 | 2 | 5 | {iqm:.3f} [{lo:.3f}, {hi:.3f}]" in text
    assert f"{REPS} bootstrap resamples, bootstrap seed 7" in text
    assert PROTOCOL in text and "human-normalised" in text and "DQN Zoo" in text
    assert "Skipped (no evaluation)" in text and "Pong-dqn-9-early" in text
    for png in rep.plots:
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.parent == tmp_path / "out"
    # Reproducible: same seed, same numbers; the caller's global RNG state is left alone.
    state = np.random.get_state()[1].copy()
    again = write_report([str(runs)], out=tmp_path / "again.md", baseline="human", reps=REPS, seed=7)
    assert np.array_equal(np.random.get_state()[1], state)
    for label in labels:
        np.testing.assert_array_equal(again.intervals[label], rep.intervals[label])


def test_normalisation_uses_reference_table(atari_runs, tmp_path):
    from rlmorning.reference_scores import ATARI57, NATURE2015, normalise
    from rlmorning.report import build_report

    runs, finals = atari_runs
    rep, _, _ = build_report([str(runs)], baseline="human", reps=50, reference="nature2015", out=tmp_path / "r.md")
    g = rep.groups[0]
    r_b, h_b = NATURE2015.scores["breakout"]
    np.testing.assert_allclose(g.matrix[:, 0], (np.array(finals[(1e-4, "Breakout")]) - r_b) / (h_b - r_b))
    np.testing.assert_allclose(g.raw[:, 0], finals[(1e-4, "Breakout")])
    rep, _, _ = build_report([str(runs)], baseline="random", reps=50, out=tmp_path / "r.md")
    np.testing.assert_allclose(rep.groups[0].matrix[:, 1],
                               np.array(finals[(1e-4, "Pong")]) - ATARI57.scores["pong"][0])
    assert normalise(30.5, "breakout", "human") == pytest.approx(1.0)
    assert normalise(1.7, "breakout", "human") == pytest.approx(0.0)
    assert normalise(-20.7, "pong", "random") == pytest.approx(0.0)


def test_reference_tables_are_ale_games_with_sources():
    from rlmorning import envs
    from rlmorning.reference_scores import TABLES

    games = set(envs.atari.atari_games())
    assert len(TABLES["atari57"].scores) == 57 and len(TABLES["nature2015"].scores) == 49
    for table in TABLES.values():
        assert table.source
        assert set(table.scores) <= games, set(table.scores) - games
        assert all(human > random for random, human in table.scores.values())
    # Same random scores for the Nature games in both tables (the human columns differ, e.g. Breakout).
    for game, (random, _) in TABLES["nature2015"].scores.items():
        assert TABLES["atari57"].scores[game][0] == random
    assert TABLES["nature2015"].scores["breakout"] == (1.7, 31.8)
    assert TABLES["atari57"].scores["breakout"] == (1.7, 30.5)


def test_non_atari_runs_cannot_be_normalised(tmp_path):
    from rlmorning.report import build_report

    for seed in range(2):
        _make_run(tmp_path / "runs", f"cp-{seed}", "CartPole-v1", seed, 1e-3, 100.0 + seed)
    with pytest.raises(RlmError, match="none for: CartPole-v1"):
        build_report([str(tmp_path / "runs")], baseline="human", reps=10)
    rep, n, _ = build_report([str(tmp_path / "runs")], reps=10)
    assert n == 2 and rep.aggregate("dqn", "Mean")[0] == pytest.approx(100.5)


def test_unequal_runs_per_env_keep_the_first_seeds(tmp_path):
    from rlmorning.report import build_report

    for seed in range(3):
        _make_run(tmp_path / "runs", f"b-{seed}", "Breakout", seed, 1e-4, 10.0 + seed)
    for seed in range(2):
        _make_run(tmp_path / "runs", f"p-{seed}", "Pong", seed, 1e-4, float(seed))
    rep, _, _ = build_report([str(tmp_path / "runs")], reps=10)
    (g,) = rep.groups
    assert g.matrix.shape == (2, 2) and [r.seed for r in g.dropped] == [2]


def test_runs_written_before_a_key_existed_group_with_its_default(tmp_path):
    """A run whose config.yaml predates a key (here ``init``) holds that key's default: same group as a run
    that wrote the default, another group than a run that set another value."""
    from rlmorning.report import build_report

    runs = [_make_run(tmp_path / "runs", f"b-{seed}", "Breakout", seed, 1e-4, 10.0 + seed) for seed in range(3)]
    for run, init in ((runs[1], "default"), (runs[2], "xavier")):
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "init": init}))
    rep, _, _ = build_report([str(tmp_path / "runs")], reps=10)
    assert sorted((g.label, len(g.runs["Breakout"])) for g in rep.groups) == [
        ("dqn init=default", 2), ("dqn init=xavier", 1)]


def test_report_cli_and_errors(atari_runs, tmp_path, capsys):
    runs, _ = atari_runs
    out = tmp_path / "rep" / "r.md"
    assert main(["report", str(runs), "--baseline", "human", "--reps", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "IQM [95% CI]" in printed and str(out) in printed
    assert out.is_file() and (tmp_path / "rep" / "r-aggregates.png").is_file()
    assert (tmp_path / "rep" / "r-profiles.png").is_file()
    assert main(["report", str(tmp_path / "nothing-*")]) == 2
    assert "no run matches" in capsys.readouterr().err
    assert main(["report", str(runs), "--reference", "nope"]) == 2
    assert "unknown reference table 'nope'" in capsys.readouterr().err
    assert main(["report", str(runs), "--metric", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "no run's metrics.csv has a column 'nosuch'" in err and "eval_return_mean" in err and err.count("\n") == 1


def test_missing_rliable_is_one_line(atari_runs, hide_package, capsys):
    runs, _ = atari_runs
    hide_package("rliable")
    assert main(["report", str(runs)]) == 2
    assert capsys.readouterr().err == "rlmorning: error: report needs rliable: pip install 'rlmorning[report]'\n"
