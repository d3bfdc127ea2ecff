"""``torch.compile`` with a clean fallback: compiled where Inductor works, eager where it does not."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

_CPU_NOISE = {  # torch's own warnings while compiling for the CPU that say nothing to act on
    "torch.utils.cpp_extension": "No CUDA runtime is found",  # a CUDA build without a GPU: expected here
    "torch._dynamo.variables.ctx_manager": "Profiler record function",  # the optimizer's profiling hook
}


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def quiet_cpu_compile_warnings() -> None:
    """Drop torch's two compile-time warnings that are expected on a CPU (idempotent; nothing else is hidden).

    The filters stay on those two torch loggers for the rest of the process."""
    for name, prefix in _CPU_NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
            logger.addFilter(_DropMessage(prefix))


class CompiledOrEager:
    """``fn`` run through ``torch.compile`` (Inductor, static shapes).

    The first call compiles; its wall time is kept in :attr:`compile_seconds`. Where compiling fails (no C++
    compiler, an op Dynamo cannot trace, a backend error) it warns once, keeps the reason in :attr:`failed`
    and runs ``fn`` eagerly from then on, starting with the call that failed. So ``fn`` must not change
    anything before the point where compiling can fail: a pure function (a loss) or an optimizer step
    (Dynamo compiles the step's arithmetic before it runs it).

    ``after(out)`` runs on the result inside the same guard, compiled or not: a loss's ``backward``, whose
    graph AOTAutograd compiles at its first call.
    """

    def __init__(self, fn: Callable[..., Any], what: str, fullgraph: bool = True,
                 after: Callable[[Any], None] | None = None) -> None:
        self.fn, self.what, self.after = fn, what, after
        quiet_cpu_compile_warnings()
        self._compiled: Callable[..., Any] | None = torch.compile(fn, fullgraph=fullgraph, dynamic=False)
        self.compile_seconds: float | None = None
        """Wall time of the first (compiling) call; None before it, or when compiling failed."""
        self.failed: str | None = None
        """Why compiling failed (one line); None while compiled code runs."""

    @property
    def compiled(self) -> bool:
        """Whether calls run compiled code (False after a failed compile)."""
        return self._compiled is not None

    def __call__(self, *args: Any) -> Any:
        if self._compiled is None:
            return self._finish(self.fn(*args))
        if self.compile_seconds is not None:
            return self._finish(self._compiled(*args))
        t0 = time.perf_counter()
        try:
            out = self._finish(self._compiled(*args))
        except Exception as exc:  # Dynamo/Inductor raise many types; any of them means: run eagerly
            self._compiled = None
            lines = str(exc).strip().splitlines()
            self.failed = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
            warnings.warn(f"torch.compile of {self.what} failed, running it eagerly ({self.failed})",
                          RuntimeWarning, stacklevel=2)
            return self._finish(self.fn(*args))
        self.compile_seconds = time.perf_counter() - t0
        return out

    def _finish(self, out: Any) -> Any:
        if self.after is not None:
            self.after(out)
        return out
