"""ReDo: dormant units of the feature layer are found, recycled without changing the Q-values, and training with
recycling stays deterministic and resumes exactly."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from test_dqn import feed, make_agent  # the small DQN agent the DQN tests use
from torch import nn

from rlmorning.agents.dormant import dormancy_scores, feature_layer, recycle_dormant_units
from rlmorning.agents.nets.encoders import make_encoder
from rlmorning.errors import RlmError


def test_dormancy_scores_are_relative_to_the_layer_mean() -> None:
    features = torch.tensor([[0.0, 2.0, 1.0, 0.0], [0.0, 4.0, 1.0, 0.1]])
    scores = dormancy_scores(features)  # means |h|: 0, 3, 1, 0.05 -> over their mean 1.0125
    assert torch.allclose(scores, torch.tensor([0.0, 3.0, 1.0, 0.05]) / 1.0125)
    assert torch.equal(dormancy_scores(torch.zeros(4, 3)), torch.zeros(3))


def test_feature_layer_of_conv_and_mlp_encoders_and_a_clear_error_otherwise() -> None:
    nature = make_encoder("nature", (4, 84, 84))
    assert feature_layer(nature) is nature.fc[0]
    mlp = make_encoder("mlp", (3,), hidden=[16, 8])
    assert feature_layer(mlp) is mlp.net[-2] and feature_layer(mlp).out_features == 8
    with pytest.raises(RlmError, match="redo_every.*Linear \\+ ReLU"):
        feature_layer(make_encoder("mlp", (3,), hidden=[]))


def _dead_layer() -> tuple[nn.Linear, nn.Linear, torch.Tensor]:
    torch.manual_seed(0)
    layer, head = nn.Linear(5, 6), nn.Linear(6, 2)
    with torch.no_grad():
        layer.bias[[1, 4]] = -100.0  # units 1 and 4 are zero on every state
    return layer, head, torch.randn(64, 5)


@pytest.mark.parametrize("init", ["default", "xavier"])
def test_recycling_revives_dead_units_and_keeps_the_outputs(init: str) -> None:
    layer, head, x = _dead_layer()
    optimizer = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=1e-3)
    (head(torch.relu(layer(x))).sum() + layer.weight.sum()).backward()
    optimizer.step()  # every weight now has Adam moments
    before = head(torch.relu(layer(x)))
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    n = recycle_dormant_units(layer, [head], torch.relu(layer(x)), 0.0, optimizer, torch.Generator().manual_seed(1),
                              init)
    assert n == 2
    after_features = torch.relu(layer(x))
    assert (after_features[:, [1, 4]] > 0).any(0).all()  # the recycled units fire again
    assert torch.equal(head(after_features), before)  # their outgoing weights are zero: same outputs
    assert torch.equal(head.weight[:, [1, 4]], torch.zeros(2, 2))
    kept = [0, 2, 3, 5]
    assert torch.equal(layer.weight[kept], weight[kept]) and torch.equal(layer.bias[kept], bias[kept])
    bound = math.sqrt(6 / 11) if init == "xavier" else 1 / math.sqrt(5)
    assert layer.weight[[1, 4]].abs().max() <= bound and not torch.equal(layer.weight[[1, 4]], weight[[1, 4]])
    assert (layer.bias[[1, 4]] == 0).all() if init == "xavier" else layer.bias[[1, 4]].abs().max() <= bound
    for param in (layer.weight, layer.bias):
        state = optimizer.state[param]
        for key in ("exp_avg", "exp_avg_sq"):
            assert (state[key][[1, 4]] == 0).all() and (state[key][kept] != 0).any()
    assert (optimizer.state[head.weight]["exp_avg"][:, [1, 4]] == 0).all()
    assert (optimizer.state[head.weight]["exp_avg"][:, kept] != 0).any()


def test_threshold_picks_low_scoring_units_and_nothing_dormant_changes_nothing() -> None:
    layer, head, x = _dead_layer()
    features = torch.relu(layer(x))
    scores = dormancy_scores(features)
    weight = layer.weight.detach().clone()
    assert recycle_dormant_units(layer, [head], torch.ones(8, 6), 0.0, None, torch.Generator()) == 0
    assert torch.equal(layer.weight, weight)
    threshold = float(scores.detach().sort().values[3])  # the four lowest-scoring units, the two dead ones among them
    assert recycle_dormant_units(layer, [head], features, threshold, None, torch.Generator()) == 4


def test_dqn_recycles_every_redo_every_steps_and_logs_the_fraction() -> None:
    agent = make_agent(train_freq=1, learning_starts=8, redo_every=3, dueling=True)
    with torch.no_grad():
        agent.online.encoder.net[-2].bias[:4] = -100.0  # 4 of 16 units dead from the start
    feed(agent, 40)
    logged = [agent._gradient_step().get("recycled_units") for _ in range(6)]
    assert logged[:2] == [None, None] and logged[3:5] == [None, None]
    assert logged[2] == 4 / 16  # recycled after the third gradient step
    assert logged[5] is not None and logged[5] < 4 / 16
    for reader in agent.online.feature_readers():  # value and advantage heads both read the features
        assert reader.weight.shape[1] == 16


def _run(steps: int, **overrides: object) -> tuple:
    agent = make_agent(train_freq=1, learning_starts=8, redo_every=2, redo_threshold=0.5, **overrides)
    feed(agent, 40)
    metrics = [agent._gradient_step() for _ in range(steps)]
    return agent, metrics


def test_training_with_recycling_is_deterministic_and_resumes_exactly() -> None:
    a, ma = _run(8)
    b, mb = _run(8)
    assert ma == mb and any(m.get("recycled_units", 0) > 0 for m in ma)
    for x, y in zip(a.online.state_dict().values(), b.online.state_dict().values(), strict=True):
        assert torch.equal(x, y)
    half, _ = _run(4)
    buf = io.BytesIO()
    torch.save(half.state_dict(), buf)
    buf.seek(0)
    resumed = make_agent(train_freq=1, learning_starts=8, redo_every=2, redo_threshold=0.5)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    assert [resumed._gradient_step() for _ in range(4)] == ma[4:]
    obs = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    assert torch.equal(resumed.q_values(obs), a.q_values(obs))


@pytest.mark.parametrize(("key", "value", "message"), [
    ("redo_every", -1, "redo_every.*>= 0"), ("redo_threshold", -0.1, "redo_threshold.*>= 0"),
    ("redo_batch", 0, "redo_batch.*>= 1")])
def test_bad_redo_keys_are_named(key: str, value: float, message: str) -> None:
    with pytest.raises(RlmError, match=message):
        make_agent(**{key: value})


def test_feature_inputs_and_their_heldout_cosine() -> None:
    """``feature_inputs`` is what the feature layer reads; the held-out cosine is the mean over distinct pairs
    (1.0 when every state gives the feature layer the same direction), the norm the mean input norm, both the
    same in one batch or many."""
    from rlmorning.evaluation import heldout_feature_inputs

    agent = make_agent(encoder_kwargs={"hidden": [16, 8]})
    states = np.random.default_rng(0).standard_normal((50, 3)).astype(np.float32)
    inputs = agent.feature_inputs(states)
    with torch.no_grad():
        expected_inputs = agent.online.encoder.net[:3](torch.as_tensor(states))  # Flatten, Linear 3->16, ReLU
    assert inputs.shape == (50, 16) and torch.allclose(inputs, expected_inputs)
    unit = torch.nn.functional.normalize(inputs.double(), dim=1)
    pairs = unit @ unit.T
    expected = float((pairs.sum() - pairs.diagonal().sum()) / (50 * 49))
    norm = float(inputs.double().norm(dim=1).mean())
    assert heldout_feature_inputs(agent, states, batch=7) == pytest.approx((expected, norm), abs=1e-6)
    assert heldout_feature_inputs(agent, states, batch=64) == pytest.approx((expected, norm), abs=1e-6)
    one_layer = make_agent()  # its feature layer reads the observation itself
    same_direction = np.repeat(states[:1], 10, axis=0) * np.linspace(1, 3, 10, dtype=np.float32)[:, None]
    assert heldout_feature_inputs(one_layer, same_direction)[0] == pytest.approx(1.0)
    assert heldout_feature_inputs(one_layer, np.concatenate([same_direction, -same_direction]))[0] < 0
    assert heldout_feature_inputs(agent, states[:1]) is None
