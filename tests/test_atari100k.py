"""The atari100k preset (DrQ(eps)) on Breakout for a few hundred steps: it trains with augmentation, ends with the
final evaluation, and resumes exactly (one env: the Python Atari backend, whose state the checkpoint holds, with
the agent, its replay and its RNGs). The 100k-step runs live in bench/atari100k.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlmorning import api
from rlmorning.run import MetricsCSV, load_checkpoint

SHORT = ["learning_starts=100", "eps_decay_start=100", "eps_decay_steps=100", "buffer_size=1000",
         "eval_every=240", "eval_episodes=1", "final_eval_episodes=2", "eval_max_frames=2000", "heldout_states=10",
         "checkpoint_every=120", "log_every=60", "torch_threads=1"]


def train(run: Path, steps: int) -> Path:
    api.train("dqn", "Breakout", config="atari100k", overrides=SHORT, run_dir=run, steps=steps, seed=0,
              device="cpu", progress=False)
    return run


def rows(run: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if v not in (None, "") and k not in ("wall_time", "sps")}
            for r in MetricsCSV.read(run / "metrics.csv")]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train(tmp_path_factory.mktemp("a100k") / "full", 240)


def test_preset_trains_with_augmentation_and_final_evaluation(full_run: Path) -> None:
    ckpt = load_checkpoint(full_run / "checkpoints" / "latest.pt")
    assert ckpt["config"]["augment"] == "shift+intensity" and ckpt["config"]["n_step"] == 10
    # Dopamine's network: SAME-padded convs (11x11x64 features into the FC layer), Glorot weights, zero biases
    assert ckpt["config"]["encoder_kwargs"] == {"padding": "same"} and ckpt["config"]["init"] == "xavier"
    assert ckpt["agent"]["online"]["encoder.fc.0.weight"].shape == (512, 64 * 11 * 11)
    assert "augment_rng" in ckpt["agent"]
    assert ckpt["agent"]["updates"] == 240 - 100 + 1  # one update per agent step once 100 are stored
    evals = [r for r in MetricsCSV.read(full_run / "metrics.csv") if r.get("eval_return_mean")]
    assert [float(r["eval_episodes"]) for r in evals] == [2]  # the final evaluation uses final_eval_episodes
    assert "epsilon=0.001" in evals[-1]["eval_protocol"]


def test_preset_resumes_to_the_end(full_run: Path, tmp_path: Path) -> None:
    part = train(tmp_path / "part", 120)
    api.resume(part, steps=240, progress=False)
    before = rows(part)
    own_end = [r for r in before if r["step"] == "120" and r.get("eval_return_mean")]  # the first piece's last eval
    assert len(own_end) == 1
    assert [r for r in before if r not in own_end] == rows(full_run)  # then the same run, step for step
    ckpt = load_checkpoint(part / "checkpoints" / "latest.pt")
    assert ckpt["train"]["step"] == 240 and ckpt["agent"]["updates"] == 240 - 100 + 1
    full = load_checkpoint(full_run / "checkpoints" / "latest.pt")
    for key, value in full["agent"]["online"].items():
        assert torch.equal(ckpt["agent"]["online"][key], value), key
    assert [(r["step"], r["eval_episodes"]) for r in before if r.get("eval_return_mean")][-1] == ("240", "2")


def _bench_module() -> object:
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_a100k", Path(__file__).parents[1] / "bench" / "atari100k.py")
    bench = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    return bench


def test_bench_set_is_repeatable() -> None:
    """``--set A --set B`` keeps both (it kept only the last), as does ``--set A B``."""
    import argparse

    bench = _bench_module()
    p = argparse.ArgumentParser()
    bench.add_run_arguments(p, ["Breakout"], Path("runs/x"))
    assert p.parse_args(["--set", "a=1", "--set", "b=2", "c=3"]).set == ["a=1", "b=2", "c=3"]
    assert p.parse_args([]).set == []


def test_bench_stop_signal_reaches_the_training_child(tmp_path: Path) -> None:
    """SIGTERM to bench/atari100k.py is passed on to the training it runs (which then saves and exits) and no
    further run starts; before, the child kept training, orphaned."""
    import signal
    import subprocess
    import sys
    import time

    bench = _bench_module()
    children = bench._Children()
    marker = tmp_path / "saved"
    child = ("import signal, sys, time, pathlib\n"
             f"def save(*_):\n    pathlib.Path({str(marker)!r}).write_text('ok'); sys.exit(143)\n"
             "signal.signal(signal.SIGTERM, save)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    proc = children.start([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    children.stop(signal.SIGTERM, None)
    assert children.wait(proc) == 143 and time.perf_counter() - t0 < 30
    assert marker.read_text() == "ok" and not children.procs
    assert children.start([sys.executable, "-c", "pass"]) is None  # no new run after a stop


def test_bench_summary_counts_finished_runs_only(full_run: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """bench/atari100k.py --summarize: a finished run gets a row and enters the report and the published agents'
    IQM; a run still training (no final evaluation yet) enters none of them."""
    import argparse
    import shutil

    bench = _bench_module()
    root = tmp_path / "root"
    shutil.copytree(full_run, root / "Breakout" / "seed0", ignore=shutil.ignore_patterns("checkpoints"))
    unfinished = root / "Pong" / "seed0"
    shutil.copytree(full_run, unfinished, ignore=shutil.ignore_patterns("checkpoints"))
    lines = (unfinished / "metrics.csv").read_text().splitlines()
    (unfinished / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")  # header and the first log row
    bench.summarize(argparse.Namespace(root=root, reps=20))
    out = capsys.readouterr().out
    assert "| Breakout | 1 |" in out and "| Pong |" not in out
    assert "| Breakout | 0 | " in out and "(2 ep.) |" in out  # its per-run row (the short preset evaluates twice)
    assert "DrQ(eps): IQM" in out and "over 1 game(s)" in out and "over 2 game(s)" not in out
    assert (root / "report.md").is_file()


def test_bench_leaves_a_run_of_other_settings_alone(full_run: Path, tmp_path: Path) -> None:
    """A folder holding a run of other settings is named and skipped (never resumed, nor counted as this batch's
    finished run); the same settings (threads aside) match."""
    import argparse
    import shutil

    bench = _bench_module()
    root = tmp_path / "root"
    shutil.copytree(full_run, root / "Breakout" / "seed0", ignore=shutil.ignore_patterns("checkpoints"))
    same = argparse.Namespace(root=root, set=[*SHORT[:-1], "torch_threads=2"], steps=240)
    assert bench.settings_mismatch(root / "Breakout" / "seed0", "Breakout", 0, same) == []
    assert bench.train_one("Breakout", 0, same, None) == "Breakout seed 0: done already"
    other = argparse.Namespace(root=root, set=[*SHORT, "augment=none"], steps=300)
    status = bench.train_one("Breakout", 0, other, None)
    assert status.startswith("Breakout seed 0: skipped: ") and "use another --root" in status
    assert "augment: 'shift+intensity' there, 'none' asked" in status and "steps: 240 there, 300 asked" in status
    assert not (root / "Breakout-seed0.log").exists()  # nothing was started


def test_bench_run_trace_reads_a_runs_metrics(tmp_path: Path) -> None:
    """The per-run row of bench/atari100k.py's and bench/side_information.py's summaries: the final and the
    half-run evaluation, the training return at each quarter (the last logged at or before it), and the spread
    of the auxiliary metrics the run logged."""
    bench = _bench_module()
    metrics = MetricsCSV(tmp_path / "metrics.csv")
    for step in range(100, 1001, 100):
        row: dict[str, object] = {"step": step, "train_return": step / 100, "aux_grad_ratio": step / 1000}
        if step in (400, 1000):
            row |= {"eval_return_mean": -step / 100, "eval_return_std": 1.5,
                    "eval_episodes": 10 if step < 1000 else 100}
        metrics.write(row)
    trace = bench.run_trace(tmp_path, 1000)
    assert trace["final"] == (-10.0, 1.5, 100) and trace["mid_eval"] == (-4.0, 1.5, 10)
    assert trace["train_return"] == [2.0, 5.0, 7.0, 10.0]  # 250 -> the row at 200, 750 -> 700
    median, low, high = trace["aux_grad_ratio"]
    assert median == pytest.approx(0.55) and low == pytest.approx(0.145) and high == pytest.approx(0.955)
    assert "hallucination_cos" not in trace
    cells = bench.trace_cells(trace)
    assert cells[0] == "-10.00 ± 1.50 (100 ep.)" and cells[2] == "2.00 / 5.00 / 7.00 / 10.00"
    assert cells[3] == "-" and cells[4].startswith("aux_grad_ratio 0.55 [")  # no checkpoint: no dead-unit count

    (tmp_path / "early").mkdir()
    # nothing logged before the first quarter, no evaluation
    MetricsCSV(tmp_path / "early" / "metrics.csv").write({"step": 600, "train_return": 1.0})
    trace = bench.run_trace(tmp_path / "early", 1000)
    assert trace["final"] is None and trace["mid_eval"] is None and trace["train_return"] == [None, None, 1.0, 1.0]
    assert bench.trace_cells(trace) == ["-", "-", "- / - / 1.00 / 1.00", "-", "-"]


def test_bench_counts_the_final_agents_dead_units(full_run: Path) -> None:
    """The per-run row's dead units at the end: the final agent's feature units zero on all held-out states."""
    bench = _bench_module()
    fraction, units, (cosine, norm) = bench.final_dead_units(full_run)
    assert units == 512 and 0.0 <= fraction < 1.0 and -1.0 <= cosine <= 1.0 and norm > 0
    assert bench.trace_cells(bench.run_trace(full_run))[3] == \
        f"{fraction:.3f} of 512; input cos {cosine:.3f}, norm {norm:.3g}"


def test_bench_lines_from_runs_side_by_side_stay_whole(capsys: pytest.CaptureFixture[str]) -> None:
    """Two runs that report at the same moment print two whole lines, never one glued to the other."""
    import threading

    bench = _bench_module()
    expected = {f"run {t}: line {i} " + "x" * 200 for t in range(4) for i in range(300)}

    def report(t: int) -> None:
        for i in range(300):
            bench.say(f"run {t}: line {i} " + "x" * 200)

    threads = [threading.Thread(target=report, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(expected) and set(lines) == expected
