"""Size and cost of a network: parameters per layer, multiply-adds per layer, CPU forward+backward time.

Multiply-add counting rule (per sample, i.e. batch 1), measured with forward hooks on the layers that
do the arithmetic:

* ``nn.Conv2d``: ``C_out * H_out * W_out * (C_in / groups) * kh * kw``;
* ``nn.Linear``: ``in_features * out_features``;
* :class:`~rlmorning.agents.nets.deformable.DeformConv2d`: the same count as a conv of its shape, plus
  bilinear sampling at 4 multiply-adds per sampled value (``4 * C_in * kh * kw * H_out * W_out``), plus
  ``C_in * kh * kw * H_out * W_out`` for DCNv2 modulation; its offset/mask branches are ``nn.Conv2d``
  and are counted as such.

Biases, normalisation, activations, pooling, additions and concatenations are not counted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from rlmorning.agents.nets.deformable import DeformConv2d


@dataclass
class LayerCost:
    """One module with parameters of its own, or one counted layer."""

    name: str
    kind: str
    params: int
    macs: int
    out_shape: tuple[int, ...]


def _conv_macs(out: torch.Tensor, in_channels: int, groups: int, kh: int, kw: int) -> int:
    _, c_out, h, w = out.shape
    return int(c_out * h * w * (in_channels // groups) * kh * kw)


def layer_costs(model: nn.Module, obs_shape: Sequence[int], dtype: torch.dtype = torch.uint8) -> list[LayerCost]:
    """Parameters and multiply-adds of every module of ``model`` that has parameters of its own or does
    counted arithmetic, in forward order, for one observation of ``obs_shape`` (see the module doc)."""
    records: dict[str, LayerCost] = {}
    order: list[str] = []
    hooks = []

    def hook(name: str, module: nn.Module):
        def fn(mod: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            macs = 0
            if isinstance(mod, nn.Conv2d):
                macs = _conv_macs(output, mod.in_channels, mod.groups, *mod.kernel_size)
            elif isinstance(mod, nn.Linear):
                macs = int(output.numel() // output.shape[0] * mod.in_features)
            elif isinstance(mod, DeformConv2d):
                k = mod.kernel_size
                macs = _conv_macs(output, mod.in_channels, 1, k, k)
                sampled = mod.in_channels * k * k * output.shape[2] * output.shape[3]
                macs += 4 * sampled + (sampled if mod.mask is not None else 0)
            own = sum(p.numel() for p in mod.parameters(recurse=False))
            shape = tuple(output.shape[1:]) if isinstance(output, torch.Tensor) else ()
            records[name] = LayerCost(name, type(mod).__name__, own, macs, shape)
        return fn

    def pre_hook(name: str):
        def fn(mod: nn.Module, inputs: tuple) -> None:
            if name not in order:  # listed when entered, so a layer comes before its offset branch
                order.append(name)
        return fn

    for name, module in model.named_modules():
        counted = isinstance(module, nn.Conv2d | nn.Linear | DeformConv2d)
        if counted or any(True for _ in module.parameters(recurse=False)):
            label = name or type(module).__name__
            hooks.append(module.register_forward_pre_hook(pre_hook(label)))
            hooks.append(module.register_forward_hook(hook(label, module)))
    try:
        with torch.no_grad():
            obs = torch.zeros(1, *obs_shape, dtype=dtype)
            model(obs)
    finally:
        for h in hooks:
            h.remove()
    return [records[n] for n in order if n in records]


def count_params(model: nn.Module) -> int:
    """Number of parameters (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, obs_shape: Sequence[int], dtype: torch.dtype = torch.uint8) -> int:
    """Multiply-adds of one forward pass for one observation (counting rule in the module doc)."""
    return sum(c.macs for c in layer_costs(model, obs_shape, dtype))


def time_forward_backward(model: nn.Module, obs_shape: Sequence[int], batch: int = 32, iters: int = 3,
                          dtype: torch.dtype = torch.uint8, seed: int = 0) -> float:
    """Mean milliseconds of ``model(obs).sum().backward()`` on a random batch (after one warm-up pass)."""
    gen = torch.Generator().manual_seed(seed)
    if dtype == torch.uint8:
        obs = torch.randint(0, 256, (batch, *obs_shape), dtype=torch.uint8, generator=gen)
    else:
        obs = torch.rand((batch, *obs_shape), generator=gen).to(dtype)
    model.zero_grad(set_to_none=True)
    model(obs).sum().backward()
    start = time.perf_counter()
    for _ in range(iters):
        model.zero_grad(set_to_none=True)
        model(obs).sum().backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return 1000.0 * elapsed / max(iters, 1)
