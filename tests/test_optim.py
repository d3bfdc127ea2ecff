"""FlooredRMSprop: the same numbers as torch.optim.RMSprop, step after step, with averages that are exactly zero."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rlmorning.agents.optim import FlooredRMSprop, flushing_subnormals, sqrt_floor, subnormals_flushed


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 3))


def _train(net: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 12, generator=gen)
        x[:, :5] = 0  # inputs that are always zero: their first-layer weights never get a gradient
        loss = (net(x) - torch.randn(16, 3, generator=gen)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("kwargs", [
    {"lr": 2.5e-4, "alpha": 0.95, "eps": 0.01, "centered": True},  # dqn_minatar
    {"lr": 1e-3, "alpha": 0.99, "eps": 1e-8},
    {"lr": 1e-4, "alpha": 0.95, "eps": 1e-8, "momentum": 0.9},  # the NTM's
    {"lr": 1e-3, "alpha": 0.9, "eps": 1e-5, "momentum": 0.5, "centered": True},
])
@pytest.mark.parametrize("foreach", [True, False])  # torch's multi-tensor path, and its per-tensor loop
def test_bit_identical_to_torch(kwargs: dict, foreach: bool) -> None:
    ours, theirs = _net(), _net()
    opt_ours = FlooredRMSprop(ours.parameters(), **kwargs)
    opt_theirs = torch.optim.RMSprop(theirs.parameters(), foreach=foreach, **kwargs)
    _train(ours, opt_ours, 60)
    _train(theirs, opt_theirs, 60)
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(a, b)
    sq = opt_ours.state[next(ours.parameters())]["square_avg"]
    assert (sq == 0).any(), "the test must reach averages that are exactly zero (the floored case)"
    for key, value in opt_theirs.state_dict()["state"][0].items():
        assert torch.equal(opt_ours.state_dict()["state"][0][key], value), key


def test_state_dicts_move_between_the_two_classes() -> None:
    kwargs = {"lr": 2.5e-4, "alpha": 0.95, "eps": 0.01, "centered": True}
    net = _net()
    opt = torch.optim.RMSprop(net.parameters(), foreach=True, **kwargs)
    _train(net, opt, 10)
    ours_net, theirs_net = copy.deepcopy(net), copy.deepcopy(net)
    ours = FlooredRMSprop(ours_net.parameters(), **kwargs)
    ours.load_state_dict(copy.deepcopy(opt.state_dict()))  # load_state_dict keeps the tensors
    theirs = torch.optim.RMSprop(theirs_net.parameters(), foreach=True, **kwargs)
    theirs.load_state_dict(copy.deepcopy(opt.state_dict()))
    _train(ours_net, ours, 20, seed=5)
    _train(theirs_net, theirs, 20, seed=5)
    for a, b in zip(ours_net.parameters(), theirs_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_other_cases_take_torchs_step() -> None:
    """Weight decay (not on the fast path) and an eps too small for a float32 floor: still torch's numbers."""
    for kwargs in ({"lr": 1e-3, "weight_decay": 0.1, "centered": True}, {"lr": 1e-3, "eps": 1e-30}):
        ours, theirs = _net(), _net()
        _train(ours, FlooredRMSprop(ours.parameters(), **kwargs), 20)
        _train(theirs, torch.optim.RMSprop(theirs.parameters(), foreach=True, **kwargs), 20)
        for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
            assert torch.equal(a, b)


def test_floor_vanishes_beside_eps() -> None:
    for eps in (0.01, 1.5e-4, 1e-8, 3e-6):
        floor = sqrt_floor(eps)
        eps32 = torch.tensor(eps, dtype=torch.float32)
        assert floor > 0
        assert torch.equal(torch.tensor(floor, dtype=torch.float32).sqrt() + eps32, eps32)
        assert torch.equal(torch.tensor(0.0).sqrt() + eps32, eps32)
    assert sqrt_floor(1e-30) == 0.0  # its floor would not be a normal float32


def _dead_input_adam_state(flush: bool) -> tuple[nn.Module, torch.Tensor]:
    """Adam's first moment after a weight stops getting gradients: 0.9 a step takes it below 1.2e-38."""
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    x = torch.randn(8, 12)
    for step in range(900):
        if step == 5:
            x[:, :5] = 0  # these inputs go quiet: their weights' gradients are exactly zero from now on
        opt.zero_grad(set_to_none=True)
        net(x).pow(2).mean().backward()
        with flushing_subnormals(flush):
            opt.step()
    return net, opt.state[net[0].weight]["exp_avg"][:, :5]


def test_flushing_subnormals_in_the_optimizer_step_only() -> None:
    tiny = torch.finfo(torch.float32).tiny
    exact_net, kept = _dead_input_adam_state(flush=False)
    assert ((kept != 0) & (kept.abs() < tiny)).any(), "without flushing the moments reach the subnormal range"
    assert not subnormals_flushed()  # restored after every block
    flushed_net, flushed = _dead_input_adam_state(flush=True)
    assert not ((flushed != 0) & (flushed.abs() < tiny)).any()
    assert not subnormals_flushed()
    for a, b in zip(exact_net.parameters(), flushed_net.parameters(), strict=True):
        assert torch.equal(a, b)  # the flushed moments moved no weight (none is below ~1e-25)
    with flushing_subnormals():
        assert subnormals_flushed()


def test_flushing_keeps_a_setting_found_on_entry() -> None:
    torch.set_flush_denormal(True)
    try:
        with flushing_subnormals():
            pass
        assert subnormals_flushed()  # the caller's global setting survives the block
    finally:
        torch.set_flush_denormal(False)
    assert not subnormals_flushed()


def test_flushing_runs_the_block_on_one_thread() -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with flushing_subnormals():
            assert torch.get_num_threads() == 1 and subnormals_flushed()
        assert torch.get_num_threads() == 2 and not subnormals_flushed()
        with flushing_subnormals(enabled=False):
            assert torch.get_num_threads() == 2 and not subnormals_flushed()
    finally:
        torch.set_num_threads(threads)
