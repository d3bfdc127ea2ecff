"""bench/dyna.py's summary: the table and the verdict on the agent target (Dyna-DQN ahead of both baselines on
>= 3 of 5 games, 3 seeds each) from the runs' JSON lines."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "dyna.py"


@pytest.fixture(scope="module")
def dyna_bench():
    spec = importlib.util.spec_from_file_location("bench_dyna", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def runs(games: list[str], seeds: int, dyna_wins: set[str]) -> list[dict]:
    out = []
    for game in games:
        for seed in range(seeds):
            for agent, score in (("dqn", 2.0), ("dqn-rr", 3.0), ("dyna", 4.0 if game in dyna_wins else 2.5)):
                out.append({"game": game, "seed": seed, "agent": agent, "final_eval": score + seed,
                            "best_eval": score + seed + 1, "wall_s": 10.0})
    return out


GAMES = ["Breakout", "Asterix", "Freeway", "Seaquest", "SpaceInvaders"]


def test_verdict_counts_games_where_dyna_beats_both(dyna_bench, tmp_path):
    text = dyna_bench.summary(runs(GAMES, 3, {"Breakout", "Asterix", "Freeway"}))
    assert "beats both baselines on 3 of 5 games" in text and text.endswith(": met.")
    assert "| Breakout | dyna | 3 | 5.00 +- 0.82 | 6.00 | 10 |" in text
    assert text.count("**yes**") == 3 and text.count("**no**") == 2
    text = dyna_bench.summary(runs(GAMES, 3, {"Breakout", "Asterix"}))
    assert text.endswith(": not met.")


def test_verdict_needs_five_games_with_three_seeds(dyna_bench, tmp_path):
    assert dyna_bench.summary(runs(GAMES, 2, set(GAMES))).endswith("not measured in full yet.")
    assert dyna_bench.summary(runs(GAMES[:4], 3, set(GAMES))).endswith("not measured in full yet.")


def test_logs_from_several_outputs_are_joined(dyna_bench, tmp_path):
    rows = runs(["Breakout"], 2, {"Breakout"})
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("# header\n" + "\n".join(json.dumps(r) for r in rows[:3]) + "\n| table |\n")
    b.write_text("\n".join(json.dumps(r) for r in rows[3:]) + "\n")
    assert dyna_bench.read_logs([str(a), str(b)]) == rows


def test_named_variants_get_their_own_rows_and_verdict(dyna_bench):
    rows = runs(GAMES, 3, set(GAMES))
    rows += [{**r, "agent": "dyna-mean", "final_eval": 0.0} for r in rows if r["agent"] == "dyna"]
    text = dyna_bench.summary(rows)
    assert "Dyna-DQN beats both baselines on 5 of 5 games; the target (>= 3 of 5 games, 3 seeds each): met." in text
    assert text.endswith("Dyna-DQN (dyna-mean) beats both baselines on 0 of 5 games; the target "
                         "(>= 3 of 5 games, 3 seeds each): not met.")
    assert text.count("| dyna-mean beats both? | | **no** |") == 5


def test_dyna_overrides_and_name_reach_only_the_model_based_agent(dyna_bench):
    args = dyna_bench.parse_args(["--dyna-set", "model.imagined_reward=mean", "--name", "dyna-mean", "--simple"])
    out = dyna_bench.variants(args)
    assert set(out) == {"dqn", "dqn-rr", "dyna-mean", "simple"}
    assert "model.imagined_reward=mean" in out["dyna-mean"] and "model.imagined_reward=mean" in out["simple"]
    assert "model.mode=simple" not in out["dyna-mean"] and not any("model." in o for o in out["dqn-rr"])
    assert {"model.codec=vae", "model.dynamics=gru"} <= set(out["dyna-mean"])
    assert not any(o.startswith("model.imagined_ratio") for o in out["simple"])
    from rlmorning import api  # noqa: PLC0415

    for name in ("dyna-mean", "simple"):  # every override is a valid key of the dqn agent's config
        api.resolve_run_config("dqn", "MinAtar/Breakout", config="dqn_minatar", overrides=out[name])
