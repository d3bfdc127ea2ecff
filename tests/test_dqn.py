"""DQN: TD targets, schedules, replay ratio, target syncs, heads and checkpoints."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlmorning.agents.base import AgentSetting, linear_schedule
from rlmorning.agents.dqn import DQNAgent, DQNConfig, QNetwork, td_target
from rlmorning.agents.nets.encoders import MLPEncoder
from rlmorning.errors import RlmError


def make_agent(**overrides: object) -> DQNAgent:
    values: dict = dict(encoder="mlp", encoder_kwargs={"hidden": [16]}, buffer_size=1000, batch_size=8,
                        learning_starts=20, train_freq=4, target_update_period=10)
    values.update(overrides)
    cfg = DQNConfig(**values)
    obs_space = gym.spaces.Box(-1, 1, (3,), np.float32)
    torch.manual_seed(0)
    return DQNAgent(cfg, AgentSetting(obs_space, gym.spaces.Discrete(2), total_steps=1000))


def feed(agent: DQNAgent, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((1, 3)).astype(np.float32)
    for t in range(steps):
        nxt = rng.standard_normal((1, 3)).astype(np.float32)
        agent.observe(obs, rng.integers(0, 2, 1), rng.standard_normal(1), np.array([t % 13 == 12]),
                      np.array([False]), nxt)
        obs = nxt


def test_td_target_dqn_and_double_against_hand_values() -> None:
    returns = torch.tensor([1.0, 0.5])
    discounts = torch.tensor([0.9, 0.0])
    q_target = torch.tensor([[2.0, 5.0, 1.0], [3.0, 4.0, 7.0]])
    q_online = torch.tensor([[9.0, 0.0, 1.0], [0.0, 8.0, 1.0]])
    # DQN: max over the target net: 1 + 0.9*5 = 5.5; terminal row: 0.5
    assert torch.allclose(td_target(returns, discounts, q_target), torch.tensor([5.5, 0.5]))
    # Double: online argmax picks action 0 -> target value 2.0: 1 + 0.9*2 = 2.8
    assert torch.allclose(td_target(returns, discounts, q_target, q_online), torch.tensor([2.8, 0.5]))


def test_linear_schedule() -> None:
    assert linear_schedule(1.0, 0.1, 100, 0) == 1.0
    assert linear_schedule(1.0, 0.1, 100, 50) == pytest.approx(0.55)
    assert linear_schedule(1.0, 0.1, 100, 500) == pytest.approx(0.1)
    assert linear_schedule(1.0, 0.1, 0, 5) == 0.1


def test_epsilon_follows_observed_steps() -> None:
    agent = make_agent(eps_start=1.0, eps_end=0.0, eps_fraction=0.1)  # decays over 100 of 1000 steps
    assert agent.epsilon == 1.0
    feed(agent, 50)
    assert agent.epsilon == pytest.approx(0.5)
    feed(agent, 100)
    assert agent.epsilon == 0.0


def test_replay_ratio_and_learning_starts() -> None:
    agent = make_agent(gradient_steps=2)
    feed(agent, 19)
    assert agent.update(19) == {} and agent.updates == 0  # before learning_starts
    feed(agent, 41)  # 60 transitions, 40 after learning starts (20) + the one at the gate
    metrics = agent.update(60)
    assert agent.updates == 2 * (41 // 4)
    assert set(metrics) >= {"loss", "q_mean", "grad_norm", "epsilon"}


def test_hard_target_sync_period() -> None:
    agent = make_agent(target_update_period=10)
    feed(agent, 30)
    agent.update(30)  # trains and syncs (30 steps past the period)
    for p_t, p_o in zip(agent.target.parameters(), agent.online.parameters(), strict=True):
        assert torch.equal(p_t, p_o)
    feed(agent, 4)
    agent.update(34)  # trains again but no sync until step 40
    assert any(not torch.equal(t, o) for t, o in zip(agent.target.parameters(), agent.online.parameters(),
                                                     strict=True))


def test_polyak_target_update() -> None:
    agent = make_agent(tau=0.5)
    before = [p.clone() for p in agent.target.parameters()]
    with torch.no_grad():
        for p in agent.online.parameters():
            p.add_(1.0)
    agent._sync_target()
    for b, t, o in zip(before, agent.target.parameters(), agent.online.parameters(), strict=True):
        assert torch.allclose(t, 0.5 * b + 0.5 * o)


def test_dueling_head_is_invariant_to_advantage_shift() -> None:
    torch.manual_seed(0)
    net = QNetwork(MLPEncoder((3,), hidden=[8]), 4, dueling=True)
    x = torch.randn(5, 3)
    q1 = net(x)
    with torch.no_grad():
        net.advantage.bias.add_(3.0)
    assert torch.allclose(q1, net(x), atol=1e-6)
    assert q1.shape == (5, 4)


def test_greedy_act_matches_q_values_and_explore_is_random() -> None:
    agent = make_agent()
    obs = np.random.default_rng(1).standard_normal((64, 3)).astype(np.float32)
    greedy, _ = agent.act(obs, None, explore=False)
    assert np.array_equal(greedy, agent.q_values(obs).argmax(1).numpy())
    explored, _ = agent.act(obs, None, explore=True)  # epsilon 1 at step 0
    assert not np.array_equal(explored, greedy)


def trained_state(agent: DQNAgent) -> dict:
    """``agent``'s state after 60 observed steps and one update round, through bytes as in a checkpoint."""
    feed(agent, 60)
    agent.update(60)
    buf = io.BytesIO()
    torch.save(agent.state_dict(), buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def test_checkpoint_round_trip_with_weights_only() -> None:
    agent = make_agent()
    state = trained_state(agent)
    other = make_agent()
    other.load_state_dict(state)
    obs = np.random.default_rng(2).standard_normal((8, 3)).astype(np.float32)
    assert torch.equal(agent.q_values(obs), other.q_values(obs))
    assert other.env_steps == agent.env_steps and other.updates == agent.updates
    # identical futures: the same next samples and gradient steps
    m1 = agent._gradient_step()
    m2 = other._gradient_step()
    assert m1 == m2


def test_bf16_precision_trains() -> None:
    agent = make_agent(precision="bf16")
    feed(agent, 60)
    metrics = agent.update(60)
    assert np.isfinite(metrics["loss"])
    assert agent.q_values(np.zeros((2, 3), np.float32)).dtype == torch.float32


# ------------------------------------------------------------------ target == online (DrQ(eps), period 1)
def test_shared_target_only_when_target_always_equals_online() -> None:
    assert make_agent(target_update_period=1, train_freq=1).shared_target
    assert make_agent(target_update_period=1, train_freq=4).shared_target  # synced before every step
    assert not make_agent(target_update_period=10, train_freq=1).shared_target
    assert not make_agent(target_update_period=1, train_freq=1, gradient_steps=2).shared_target
    assert not make_agent(target_update_period=1, train_freq=1, tau=0.5).shared_target
    cfg = DQNConfig(encoder="mlp", buffer_size=100, target_update_period=1, train_freq=1)
    two_envs = DQNAgent(cfg, AgentSetting(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2), num_envs=2,
                                          total_steps=100))
    assert not two_envs.shared_target  # two gradient steps per vector step: the second needs the old target


@pytest.mark.parametrize("double", [False, True])
def test_shared_target_gives_bit_identical_training(double: bool) -> None:
    """One Q(s') forward with the online net == the target-net path with a copy every step."""
    runs = []
    for shared in (True, False):
        agent = make_agent(target_update_period=1, train_freq=1, double=double, n_step=3)
        agent.shared_target = shared
        feed(agent, 20)
        agent.update(0)  # nothing owed yet beyond learning_starts; syncs the target
        rng = np.random.default_rng(1)
        obs = rng.standard_normal((1, 3)).astype(np.float32)
        for _ in range(40):
            nxt = rng.standard_normal((1, 3)).astype(np.float32)
            agent.observe(obs, rng.integers(0, 2, 1), rng.standard_normal(1), np.array([False]),
                          np.array([False]), nxt)
            agent.update(0)
            obs = nxt
        assert agent.updates > 30
        runs.append(torch.cat([p.detach().flatten() for p in agent.online.parameters()]))
    assert torch.equal(runs[0], runs[1])


def test_inference_agent_holds_no_replay_or_optimizer_and_loads_weights() -> None:
    trained = make_agent()
    state = trained_state(trained)
    cfg = trained.config
    policy = DQNAgent(cfg, AgentSetting(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2),
                                        total_steps=1000, inference=True))
    assert policy.replay is None and policy.optimizer is None
    policy.load_state_dict(state)
    obs = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    assert torch.equal(policy.q_values(obs), trained.q_values(obs))
    with pytest.raises(RlmError, match="inference"):
        policy.update(0)


@pytest.mark.parametrize(("fmt", "shape", "expect_nhwc"), [
    ("auto", (4, 84, 84), True), ("auto", (4, 10, 10), False), ("contiguous", (4, 84, 84), False),
    ("channels_last", (4, 10, 10), True),
])
def test_memory_format_layout_and_same_q_values(fmt: str, shape: tuple, expect_nhwc: bool) -> None:
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    encoder = "nature" if shape[1] == 84 else "minatar"

    def build(memory_format: str) -> DQNAgent:
        torch.manual_seed(0)
        cfg = DQNConfig(encoder=encoder, buffer_size=10, memory_format=memory_format)
        return DQNAgent(cfg, AgentSetting(space, gym.spaces.Discrete(3), total_steps=10, inference=True))

    agent = build(fmt)
    conv = next(m for m in agent.online.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) == expect_nhwc
    obs = np.random.default_rng(0).integers(0, 256, (2, *shape), dtype=np.uint8)
    other = build("contiguous" if expect_nhwc else "channels_last")
    assert torch.allclose(agent.q_values(obs), other.q_values(obs), atol=1e-5)


def test_xavier_init_zero_biases_and_glorot_bounds() -> None:
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    torch.manual_seed(0)
    agent = DQNAgent(DQNConfig(encoder="nature", buffer_size=10, init="xavier", dueling=True),
                     AgentSetting(space, gym.spaces.Discrete(4), total_steps=10, inference=True))
    layers = [m for m in agent.online.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == 6  # 3 convs, FC 512, value and advantage heads
    for m in layers:
        fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert float(m.bias.detach().abs().max()) == 0.0
        assert float(m.weight.detach().abs().max()) <= bound
        assert float(m.weight.detach().abs().max()) > 0.9 * bound  # uniform over the whole range, not PyTorch's default
    fc = agent.online.encoder.fc[0]
    assert fc.weight.std().item() > 2 * (1 / 3 / fc.in_features) ** 0.5  # wider than PyTorch's 1/sqrt(fan_in) bound
    with pytest.raises(RlmError, match="config key 'init' must be one of default, xavier"):
        DQNAgent(DQNConfig(encoder="nature", init="he"),
                 AgentSetting(space, gym.spaces.Discrete(4), total_steps=10, inference=True))


def test_dead_unit_fraction_counts_units_zero_on_every_state() -> None:
    from rlmorning.agents.dqn import dead_unit_fraction

    features = torch.tensor([[0.0, 1.0, 0.0, -2.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 0.0, -1.0]])
    assert dead_unit_fraction(features) == 0.5  # columns 0 and 3: zero or below on all three states
    assert dead_unit_fraction(torch.ones(5, 8)) == 0.0
    assert dead_unit_fraction(torch.zeros(5, 8)) == 1.0


def test_dead_units_are_measured_without_changing_training(monkeypatch: pytest.MonkeyPatch) -> None:
    """``dead_units`` comes every DEAD_UNITS_EVERY gradient steps, reads 1.0 for an encoder whose ReLU outputs
    are all zero (and then no gradient reaches it), and leaves the weights as an unmeasured run's."""
    import rlmorning.agents.dqn as dqn_module

    runs = {}
    for every in (2, 10**9):
        monkeypatch.setattr(dqn_module, "DEAD_UNITS_EVERY", every)
        agent = make_agent(train_freq=1, learning_starts=8)
        feed(agent, 40)
        runs[every] = (agent, [agent._gradient_step().get("dead_units") for _ in range(5)])
    agent, dead = runs[2]
    assert [d is not None for d in dead] == [True, False, True, False, True]
    assert all(0.0 <= d < 1.0 for d in dead if d is not None)
    assert runs[10**9][1][1:] == [None] * 4  # the first gradient step is always measured
    for (name, a), b in zip(agent.online.state_dict().items(), runs[10**9][0].online.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name

    monkeypatch.setattr(dqn_module, "DEAD_UNITS_EVERY", 1)
    dead_agent = make_agent(train_freq=1, learning_starts=8)
    last = dead_agent.online.encoder.net[-2]  # the Linear before the encoder's last ReLU
    with torch.no_grad():
        last.bias.fill_(-100.0)
    feed(dead_agent, 40)
    before = last.weight.detach().clone()
    assert dead_agent._gradient_step()["dead_units"] == 1.0
    assert torch.equal(last.weight, before)  # the TD loss no longer reaches the encoder


def test_heldout_dead_units_over_all_states() -> None:
    """A unit counts as dead only when it is zero on every held-out state, across batches."""
    from rlmorning.evaluation import heldout_dead_units

    agent = make_agent()
    states = np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32)
    fraction, units = heldout_dead_units(agent, states, batch=64)
    per_state = agent.features(states) > 0
    assert units == 16 and fraction == float((~per_state.any(0)).float().mean())
    with torch.no_grad():
        agent.online.encoder.net[-2].bias.fill_(-100.0)
    assert heldout_dead_units(agent, states, batch=64) == (1.0, 16)
