"""Optimizer steps without the CPU's slow cases: square roots of zero and subnormal floats.

RMSprop whose square root never sees a zero: torch's multi-tensor RMSprop, bit-identical, faster on CPU.

On CPU, torch's ``sqrt`` of a float tensor takes about 5 ns per element that is exactly zero on this
project's development host (AMD EPYC, AVX2; contiguous and strided tensors alike) against 0.1-0.4 ns for an
ordinary number. RMSprop takes the root of its running averages every step, and in a Q-network with sparse
inputs (MinAtar's binary planes, dead ReLU units) a large share of those averages are exactly zero: the
weights of inputs that are zero on every recent state never get a gradient.

:class:`FlooredRMSprop` runs the same operations in the same order as ``torch.optim.RMSprop``'s multi-tensor
path, with one more: before the root, the averages are raised to a floor ``c = (eps * 2**-26) ** 2``. That
changes no result: for every ``v`` in ``[0, c]``, ``sqrt(v) <= eps * 2**-26`` is below half a unit in the last
place of ``eps`` (at least ``eps * 2**-25`` in float32), so ``sqrt(v) + eps`` rounds to ``eps`` either way,
and above ``c`` nothing is touched. (The one difference: a centered average that rounding makes slightly
negative gives ``eps`` instead of NaN.) Other cases (not float32, weight decay, ``maximize``, complex or
sparse tensors, an ``eps`` whose floor is not a normal float32) take torch's own step unchanged.

Subnormal floats (below ~1.2e-38): the running averages of weights that stop getting gradients (dead ReLU
units) decay into that range (Adam's first moment by 0.9 a step), where x86 CPUs compute each operation
through a slow microcode assist. :func:`flushing_subnormals` runs a block (DQN's optimizer step) with them
flushed to zero, on one thread. Unlike the floor above this can change a result, but only where the change is itself
negligible: Adam's step for a weight whose first moment is subnormal is below about ``lr * 1.2e-38 / eps``
(once bias correction is ~1), which moves a weight only when the weight is itself tiny (for lr 2.3e-3 and
eps 1e-8, smaller than about 1e-25); RMSprop's root of a subnormal average vanishes beside its ``eps``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

FLOOR_SCALE = 2.0**-26
"""``sqrt(floor) = eps * FLOOR_SCALE``: half of the least half-unit in the last place of a float32 ``eps``
(more than ``eps * 2**-25``), so adding it to ``eps`` rounds back to ``eps``."""


def sqrt_floor(eps: float) -> float:
    """The floor for RMSprop's averages under which ``sqrt(v) + eps`` is ``eps`` in float32 (0: none applies)."""
    floor = (eps * FLOOR_SCALE) ** 2
    return floor if floor >= torch.finfo(torch.float32).tiny else 0.0


class FlooredRMSprop(torch.optim.RMSprop):
    """``torch.optim.RMSprop`` (same arguments, state and ``state_dict``) with the zero-free root above.

    The fast path is the multi-tensor (``foreach``) step for float32 parameters without weight decay or
    ``maximize``; anything else runs ``torch.optim.RMSprop.step`` itself."""

    def __init__(self, params: Iterable[Any], **kwargs: Any) -> None:
        kwargs.setdefault("foreach", True)
        super().__init__(params, **kwargs)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One optimisation step (``closure`` re-evaluates the loss, as in torch)."""
        if not all(self._floored_group(group) for group in self.param_groups):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._group_step(group)
        return loss

    def _floored_group(self, group: dict[str, Any]) -> bool:
        plain = (group["foreach"] and not group["maximize"] and not group["differentiable"]
                 and not group["capturable"] and group["weight_decay"] == 0 and not torch.is_tensor(group["lr"])
                 and sqrt_floor(group["eps"]) > 0)
        return plain and all(p.dtype == torch.float32 and not (p.grad is not None and p.grad.is_sparse)
                             for p in group["params"])

    def _state(self, p: torch.Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = self.state[p]
        if not state:  # as torch initialises it, so checkpoints move freely between the two classes
            state["step"] = torch.zeros((), dtype=torch.float64 if torch.get_default_dtype() == torch.float64
                                        else torch.float32)
            state["square_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["momentum"] > 0:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if group["centered"]:
                state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _group_step(self, group: dict[str, Any]) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        states = [self._state(p, group) for p in params]
        alpha, eps, lr, momentum = group["alpha"], group["eps"], group["lr"], group["momentum"]
        torch._foreach_add_([s["step"] for s in states], torch.tensor(1.0), alpha=1.0)
        square_avgs = [s["square_avg"] for s in states]
        torch._foreach_mul_(square_avgs, alpha)
        torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)
        if group["centered"]:
            grad_avgs = [s["grad_avg"] for s in states]
            torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)
            avg = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)
            torch._foreach_clamp_min_(avg, sqrt_floor(eps))
        else:
            avg = torch._foreach_clamp_min(square_avgs, sqrt_floor(eps))
        torch._foreach_sqrt_(avg)
        torch._foreach_add_(avg, eps)
        if momentum > 0:
            buffers = [s["momentum_buffer"] for s in states]
            torch._foreach_mul_(buffers, momentum)
            torch._foreach_addcdiv_(buffers, grads, avg)
            torch._foreach_add_(params, buffers, alpha=-lr)
        else:
            torch._foreach_addcdiv_(params, grads, avg, value=-lr)


_SUBNORMAL = torch.tensor([torch.finfo(torch.float32).tiny / 2])


def subnormals_flushed() -> bool:
    """Whether this thread flushes subnormal floats to zero now (torch has no getter: one probe multiply)."""
    return bool(_SUBNORMAL.mul(1.0)[0] == 0)


@contextlib.contextmanager
def flushing_subnormals(enabled: bool = True) -> Iterator[None]:
    """Inside the block, subnormal floats are flushed to zero (``torch.set_flush_denormal``: x86's FTZ/DAZ) and
    the block runs on this thread alone; both settings found on entry are restored on exit.

    The flush is a per-thread setting that torch's other intra-op threads do not share, so with more than one
    torch thread the block runs single-threaded (``torch.set_num_threads(1)``): for the fused Adam step of an
    ``atari100k`` run with subnormal state that took 5.2 ms against 19.8 ms on two threads unflushed
    (``bench/subnormals.py``). A caller that already flushes is left as it is."""
    if not enabled or subnormals_flushed() or not torch.set_flush_denormal(True):
        yield
        return
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads > 1:
            torch.set_num_threads(threads)
        torch.set_flush_denormal(False)
