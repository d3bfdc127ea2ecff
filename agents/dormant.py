"""ReDo (Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep Reinforcement Learning"): find the dormant
units of a Q-network's feature layer and recycle them.

A unit's score is its mean absolute activation over a batch of states divided by the layer's mean score; a unit
scoring at most ``threshold`` is dormant (0: exactly zero on every state, a dead ReLU). Recycling gives it fresh
incoming weights (the layer's initial distribution), zeroes its outgoing weights (so the Q-values do not change
at the moment of recycling) and clears the optimizer's running statistics of every weight it touched.

Only the encoder's feature layer (the Linear + ReLU the Q head reads) is recycled: that is the layer measured
dying in rlmorning's runs (``dead_units``), and its outgoing weights all belong to the Q head, whereas the conv
channels below it also feed the side-information heads.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rlmorning.errors import RlmError


def feature_layer(encoder: nn.Module) -> nn.Linear:
    """The Linear layer whose ReLU output is ``encoder``'s features (``fc`` or ``net`` ending Linear, ReLU)."""
    for name in ("fc", "net"):
        seq = getattr(encoder, name, None)
        if isinstance(seq, nn.Sequential) and len(seq) >= 2 and isinstance(seq[-2], nn.Linear) \
                and isinstance(seq[-1], nn.ReLU):
            return seq[-2]
    raise RlmError(f"config key 'redo_every' needs an encoder whose features come from a Linear + ReLU layer "
                   f"(nature, minatar, mlp, impala, densenet, deformable, ...); '{type(encoder).__name__}' has none")


def dormancy_scores(features: torch.Tensor) -> torch.Tensor:
    """Each unit's mean ``|activation|`` over the batch ``features [B, D]``, over the layer's mean (``[D]``; all
    zeros when the whole layer is silent)."""
    score = features.float().abs().mean(dim=0)
    return score / (score.mean() + 1e-9)


@torch.no_grad()
def recycle_dormant_units(layer: nn.Linear, readers: list[nn.Linear], features: torch.Tensor, threshold: float,
                          optimizer: torch.optim.Optimizer | None, generator: torch.Generator,
                          init: str = "default") -> int:
    """Recycle the units of ``layer`` whose :func:`dormancy_scores` on ``features`` (its ReLU output) are at most
    ``threshold``: fresh incoming weights and bias drawn with ``generator`` (``init``: ``default`` = PyTorch's
    Linear init, ``xavier`` = Glorot uniform and zero bias), zero outgoing weights in every layer of ``readers``,
    and zeroed optimizer state (Adam's moments, RMSprop's averages) for all of them. Returns how many units."""
    dormant = dormancy_scores(features) <= threshold
    count = int(dormant.sum())
    if count == 0:
        return 0
    fan_in, fan_out = layer.in_features, layer.out_features
    if init == "xavier":
        w_bound, b_bound = math.sqrt(6.0 / (fan_in + fan_out)), 0.0
    else:
        w_bound = b_bound = 1.0 / math.sqrt(fan_in)
    idx = dormant.nonzero().squeeze(1).to(layer.weight.device)
    fresh = torch.rand((count, fan_in), generator=generator, device=generator.device) * 2 - 1
    layer.weight[idx] = (fresh * w_bound).to(layer.weight)
    if layer.bias is not None:
        fresh_bias = torch.rand(count, generator=generator, device=generator.device) * 2 - 1
        layer.bias[idx] = (fresh_bias * b_bound).to(layer.bias)
    for reader in readers:
        reader.weight[:, idx] = 0
    if optimizer is not None:
        _clear_state(optimizer, layer.weight, (idx, slice(None)))
        if layer.bias is not None:
            _clear_state(optimizer, layer.bias, (idx,))
        for reader in readers:
            _clear_state(optimizer, reader.weight, (slice(None), idx))
    return count


def _clear_state(optimizer: torch.optim.Optimizer, param: nn.Parameter, where: tuple) -> None:
    """Zero ``where`` in every per-element state tensor the optimizer keeps for ``param`` (not its step count)."""
    for value in optimizer.state.get(param, {}).values():
        if isinstance(value, torch.Tensor) and value.shape == param.shape:
            value[where] = 0
