"""DrQ augmentation: shift range, identities, per-sample independence, seeding, and where it is applied."""

from __future__ import annotations

import io

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlmorning.agents.augment import augment_batch, intensity_factors, random_shift
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.dqn import DQNAgent, DQNConfig
from rlmorning.errors import RlmError


def frames(batch: int = 8, c: int = 4, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, c, h, w), generator=g, dtype=torch.uint8)


def offsets_of(x: torch.Tensor, out: torch.Tensor, pad: int) -> list[tuple[int, int]]:
    """For each sample, every (dy, dx) in [-pad, pad]^2 whose replicate-pad crop equals ``out``."""
    padded = F.pad(x.float(), (pad, pad, pad, pad), mode="replicate")
    h, w = x.shape[-2:]
    found = []
    for i in range(x.shape[0]):
        hits = [(dy, dx) for dy in range(-pad, pad + 1) for dx in range(-pad, pad + 1)
                if torch.equal(padded[i, :, pad + dy:pad + dy + h, pad + dx:pad + dx + w], out[i].float())]
        assert hits, f"sample {i} is no replicate-pad crop within +-{pad}"
        found.append(hits[0])
    return found


def test_shift_is_a_replicate_pad_crop_within_pad() -> None:
    x = frames(batch=64)
    out = random_shift(x, 4, torch.Generator().manual_seed(1))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    shifts = offsets_of(x, out, 4)
    assert all(abs(dy) <= 4 and abs(dx) <= 4 for dy, dx in shifts)
    # both extremes of the range occur over 64 samples x 2 axes (uniform on 9 values)
    values = {v for s in shifts for v in s}
    assert {-4, 4} <= values


def test_shift_same_offset_for_all_stacked_frames() -> None:
    x = frames(batch=16)
    x[:, 1:] = x[:, :1]  # all four channels equal: the shifted channels must stay equal
    out = random_shift(x, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(out[:, 0], out[:, k]) for k in range(1, 4))


def test_identity_at_pad_zero_and_scale_zero() -> None:
    x = frames()
    assert torch.equal(random_shift(x, 0), x)
    out = augment_batch(x, "shift+intensity", 0, 0.0, torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32 and torch.equal(out, x.float())
    assert augment_batch(x, "none", 4, 0.05) is x


def test_intensity_factor_range_and_formula() -> None:
    g = torch.Generator().manual_seed(3)
    f = intensity_factors(10_000, 0.05, torch.device("cpu"), g).flatten()
    assert f.min() >= 0.9 - 1e-6 and f.max() <= 1.1 + 1e-6
    assert abs(float(f.mean()) - 1.0) < 0.002
    g2 = torch.Generator().manual_seed(3)
    expected = 1 + 0.05 * torch.randn(10_000, 1, 1, 1, generator=g2).clamp(-2, 2)
    assert torch.allclose(f, expected.flatten())


def test_intensity_is_one_factor_per_sample() -> None:
    x = frames(batch=32).clamp(min=1)
    out = augment_batch(x, "intensity", 0, 0.05, torch.Generator().manual_seed(0))
    ratio = out / x.float()
    per_sample = ratio.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-6)
    assert per_sample[:, 0].unique().numel() == 32  # independent across samples


def test_per_sample_independence_of_shifts() -> None:
    x = frames(batch=1).expand(64, -1, -1, -1).contiguous()  # 64 copies of one sample
    out = random_shift(x, 4, torch.Generator().manual_seed(5))
    distinct = {tuple(s) for s in offsets_of(x, out, 4)}
    assert len(distinct) > 20  # 81 possible offsets: copies get different shifts


def test_seeded_reproducibility() -> None:
    x = frames()
    a = augment_batch(x, "shift+intensity", 4, 0.05, torch.Generator().manual_seed(7))
    b = augment_batch(x, "shift+intensity", 4, 0.05, torch.Generator().manual_seed(7))
    c = augment_batch(x, "shift+intensity", 4, 0.05, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(RlmError, match="augment.*none, shift"):
        image_agent(augment="crop")
    with pytest.raises(RlmError, match="augment_pad"):
        image_agent(augment="shift", augment_pad=-1)
    with pytest.raises(RlmError, match="needs image observations"):
        DQNAgent(DQNConfig(encoder="mlp", augment="shift", buffer_size=10),
                 AgentSetting(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(2), total_steps=10))


# ----------------------------------------------------------------------------------------- in the agent
def image_agent(**overrides: object) -> DQNAgent:
    values: dict = dict(encoder="minatar", buffer_size=200, batch_size=8, learning_starts=16, train_freq=1,
                        target_update_period=1, augment="shift+intensity", augment_pad=2)
    values.update(overrides)
    torch.manual_seed(0)
    space = gym.spaces.Box(0, 255, (4, 10, 10), np.uint8)
    return DQNAgent(DQNConfig(**values), AgentSetting(space, gym.spaces.Discrete(3), total_steps=1000))


def feed_frames(agent: DQNAgent, steps: int) -> None:
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (1, 4, 10, 10), dtype=np.uint8)
    for t in range(steps):
        nxt = rng.integers(0, 256, (1, 4, 10, 10), dtype=np.uint8)
        agent.observe(obs, rng.integers(0, 3, 1), rng.standard_normal(1), np.array([t % 9 == 8]),
                      np.array([False]), nxt)
        obs = nxt


def test_learning_batches_are_augmented_obs_and_next_obs_independently(monkeypatch) -> None:
    agent = image_agent()
    seen: list[torch.Tensor] = []
    forward = agent.online.forward
    monkeypatch.setattr(agent.online, "forward", lambda x: (seen.append(x.clone()), forward(x))[1])
    feed_frames(agent, 20)
    batch = {}
    sample = agent.replay.sample
    monkeypatch.setattr(agent.replay, "sample", lambda n: batch.update(sample(n)) or dict(batch))
    seen.clear()
    agent._gradient_step()
    next_in, obs_in = seen  # shared target: one no-grad forward on next_obs, then the online forward
    for raw, aug in ((batch["obs"], obs_in), (batch["next_obs"], next_in)):
        assert aug.dtype == torch.float32 and not torch.equal(aug, torch.as_tensor(raw).float())
    # the two sides draw their own shifts/intensities: augmenting equal inputs gives different outputs
    a = agent._train_obs(batch["obs"])[0]
    b = agent._train_obs(batch["obs"])[0]
    assert not torch.equal(a, b)


def test_acting_and_evaluation_are_not_augmented() -> None:
    agent = image_agent()
    plain = image_agent(augment="none")
    obs = np.random.default_rng(1).integers(0, 256, (5, 4, 10, 10), dtype=np.uint8)
    state = agent._aug_generator.get_state()
    assert torch.equal(agent.q_values(obs), plain.q_values(obs))
    assert np.array_equal(agent.act(obs, None, explore=False)[0], plain.act(obs, None, explore=False)[0])
    assert torch.equal(agent._aug_generator.get_state(), state)  # acting never draws augmentation noise


def test_augmentation_rng_resumes_exactly() -> None:
    a = image_agent()
    feed_frames(a, 30)
    for _ in range(3):
        a._gradient_step()
    buf = io.BytesIO()  # through bytes, as a checkpoint is (state_dict() holds live tensors)
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = image_agent()
    b.load_state_dict(torch.load(buf, weights_only=True))
    for _ in range(3):
        a._gradient_step()
        b._gradient_step()
    for pa, pb in zip(a.online.parameters(), b.online.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_shift_offsets_say_where_each_sample_moved() -> None:
    """Output pixel (r, c) is input pixel (r + dr, c + dc): a lone bright pixel moves by (-dr, -dc)."""
    from rlmorning.agents.augment import augment_batch_with_offsets, random_shift_with_offsets

    x = torch.zeros(6, 2, 20, 20, dtype=torch.uint8)
    x[:, :, 10, 8] = 255
    g = torch.Generator().manual_seed(3)
    out, shift = random_shift_with_offsets(x, 4, g)
    assert shift.shape == (6, 2) and int(shift.abs().max()) <= 4 and len({tuple(s) for s in shift.tolist()}) > 1
    for i, (dr, dc) in enumerate(shift.tolist()):
        assert out[i, 0, 10 - dr, 8 - dc] == 255 and int(out[i].sum()) == 2 * 255
    same, again = random_shift(x, 4, torch.Generator().manual_seed(3)), out
    assert torch.equal(same, again)  # returning the offsets draws nothing more
    _, none = augment_batch_with_offsets(x, "intensity", 4, 0.05, g)
    assert not none.any()
