"""``compile: true``: the TD loss and optimizer step through torch.compile, and the eager fallback."""

from __future__ import annotations

import csv
import io
import logging
import warnings

import numpy as np
import pytest
import torch
from test_dqn import feed, make_agent  # the small DQN agent the DQN tests use

import rlmorning.compiled
from rlmorning.cli import main
from rlmorning.compiled import CompiledOrEager
from rlmorning.errors import RlmError


def flat_params(agent: object) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in agent.online.parameters()])


def train(**overrides: object) -> tuple[object, dict[str, float]]:
    agent = make_agent(**overrides)
    feed(agent, 120)
    return agent, agent.update(120)  # 25 gradient steps


def test_compiled_training_matches_eager_and_reports_compile_time() -> None:
    eager, m_eager = train()
    compiled, m_compiled = train(compile=True)
    assert "compile_s" not in m_eager and m_compiled["compile_s"] > 0
    assert m_compiled["loss"] == pytest.approx(m_eager["loss"], rel=1e-5)
    torch.testing.assert_close(flat_params(compiled), flat_params(eager), rtol=1e-5, atol=1e-6)
    assert len(compiled.compiled_parts) == 2
    assert all(f.compiled for f in compiled.compiled_parts)  # both parts ran compiled code, no silent fallback
    feed(compiled, 40, seed=1)
    assert "compile_s" not in compiled.update(160)  # reported once, at the compiling update


def test_compiled_training_is_deterministic_and_resumes_exactly() -> None:
    a, _ = train(compile=True, optimizer="rmsprop", double=True)
    b, _ = train(compile=True, optimizer="rmsprop", double=True)
    assert torch.equal(flat_params(a), flat_params(b))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    resumed = make_agent(compile=True, optimizer="rmsprop", double=True)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert a._gradient_step() == {k: v for k, v in resumed._gradient_step().items() if k != "compile_s"}
    assert torch.equal(flat_params(a), flat_params(resumed))


def test_failed_compile_warns_once_and_trains_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_compile(fn: object, **_: object) -> object:
        def run(*args: object) -> object:
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(rlmorning.compiled.torch, "compile", broken_compile)
    eager, m_eager = train()
    with pytest.warns(RuntimeWarning, match="running it eagerly") as caught:
        fallback, m_fallback = train(compile=True)
    assert len(caught) == 2  # the loss and the optimizer step, each once
    assert "No working C++ compiler found" in str(caught[0].message) and "more detail" not in str(caught[0].message)
    assert m_fallback == m_eager  # bit-identical to eager: the failed calls changed nothing
    assert torch.equal(flat_params(fallback), flat_params(eager))
    assert len(fallback.compiled_parts) == 2
    assert not any(f.compiled for f in fallback.compiled_parts)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        feed(fallback, 20, seed=1)
        fallback.update(140)


def test_compiled_or_eager_runs_after_in_both_paths(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    f = CompiledOrEager(lambda x: x * 2, "double it", after=lambda out: seen.append(int(out.sum())))
    assert int(f(torch.ones(3)).sum()) == 6 and f.compiled and f.compile_seconds is not None
    monkeypatch.setattr(rlmorning.compiled.torch, "compile", lambda fn, **_: lambda *a: 1 / 0)
    g = CompiledOrEager(lambda x: x + 1, "add one", after=lambda out: seen.append(int(out.sum())))
    with pytest.warns(RuntimeWarning, match="add one failed.*ZeroDivisionError"):
        g(torch.zeros(2))
    assert seen == [6, 2] and not g.compiled and g.failed.startswith("ZeroDivisionError")


def test_compile_with_aux_is_a_clear_error() -> None:
    with pytest.raises(RlmError, match="'compile' does not support aux: hallucination"):
        make_agent(compile=True, aux="hallucination")


def test_train_with_compile_logs_compile_time(tmp_path: object, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    sets = [a for kv in ("compile=true", "learning_starts=100", "eval_every=0", "log_every=200") for a in ("--set", kv)]
    rc = main(["train", "dqn", "--env", "CartPole-v1", "--steps", "400", "--run-dir", str(run), "--no-progress", *sets])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    compile_s = [float(r["compile_s"]) for r in rows if r.get("compile_s")]
    assert len(compile_s) == 1 and compile_s[0] > 0
    assert np.isfinite(float(rows[-1]["loss"]))


def test_expected_cpu_compile_warnings_are_dropped_and_others_kept() -> None:
    rlmorning.compiled.quiet_cpu_compile_warnings()
    rlmorning.compiled.quiet_cpu_compile_warnings()  # idempotent: one filter per logger
    cpp = logging.getLogger("torch.utils.cpp_extension")
    dynamo = logging.getLogger("torch._dynamo.variables.ctx_manager")
    assert sum(isinstance(f, rlmorning.compiled._DropMessage) for f in cpp.filters) == 1
    seen: list[str] = []

    class Collect(logging.Handler):  # on the loggers themselves: torch's loggers do not propagate to the root
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect(logging.WARNING)
    for logger in (cpp, dynamo):
        logger.addHandler(handler)
    try:
        cpp.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local")
        cpp.warning("Error building extension")
        dynamo.warning("Profiler record function %s will be ignored", 1)
    finally:
        for logger in (cpp, dynamo):
            logger.removeHandler(handler)
    assert seen == ["Error building extension"]
