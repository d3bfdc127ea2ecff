"""Conv encoders: shapes, gradients, deformable == plain at init, determinism, state dicts, the
``encoders`` and ``plot-offsets`` commands, and the Stable-Baselines3 features extractor."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torchvision.ops import deform_conv2d

from rlmorning import api
from rlmorning.agents.base import AgentSetting
from rlmorning.agents.dqn import DQNAgent, DQNConfig
from rlmorning.agents.nets.deformable import DeformConv2d, deform_conv2d_gather
from rlmorning.agents.nets.encoders import ENCODERS, NatureEncoder, make_encoder
from rlmorning.cli import main
from rlmorning.errors import RlmError

NEW = ["impala", "densenet", "inception", "deformable"]
SHAPES = [(4, 84, 84), (4, 64, 64), (7, 10, 10)]


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Two shared cores: one torch thread is faster than two fighting over them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def frames(shape: tuple[int, ...], batch: int = 2, seed: int = 0) -> torch.Tensor:
    high = 256 if shape[1] >= 36 else 2
    return torch.randint(0, high, (batch, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def build(name: str, shape: tuple[int, ...], seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    return make_encoder(name, shape, input_scale=1 / 255 if shape[1] >= 36 else 1.0, **kwargs)


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", NEW + ["nature"])
def test_output_shapes(name: str, shape: tuple[int, ...]) -> None:
    if name == "nature" and shape[1] < 36:
        with pytest.raises(RlmError, match="at least 36x36"):
            build(name, shape)
        return
    enc = build(name, shape)
    assert isinstance(enc.out_dim, int) and enc.out_dim > 0
    out = enc(frames(shape, batch=3))
    assert out.shape == (3, enc.out_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    direct = ENCODERS.get(name)(shape, input_scale=1.0)  # the registered factory, called directly
    assert direct.out_dim == enc.out_dim


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_dqn_agent_builds_every_encoder(shape: tuple[int, ...]) -> None:
    space = gym.spaces.Box(0, 255 if shape[1] >= 36 else 1, shape, np.uint8)
    for name in NEW:
        cfg = DQNConfig(encoder=name, buffer_size=64, batch_size=4)
        agent = DQNAgent(cfg, AgentSetting(space, gym.spaces.Discrete(3), total_steps=100))
        assert isinstance(agent.online.encoder, ENCODERS.get(name))
        q = agent.q_values(frames(shape).numpy())
        assert q.shape == (2, 3)


def test_options_reach_the_encoder_and_bad_options_are_one_line_errors() -> None:
    enc = build("impala", (4, 64, 64), channels=[8, 16], hidden=64)
    assert len(enc.stages) == 2 and enc.out_dim == 64
    assert enc.stages[1].conv.out_channels == 16
    for name, kwargs, match in [
        ("impala", {"channels": "wide"}, "channels"),
        ("impala", {"pool": "sometimes"}, "pool"),
        ("densenet", {"norm": "layer"}, "norm"),
        ("densenet", {"compression": 2}, "compression"),
        ("inception", {"widths": [0]}, "widths"),
        ("deformable", {"deformable_layers": [3]}, "deformable_layers"),
        ("deformable", {"channels": [8, 8]}, "channels"),
        ("impala", {"colour": True}, "encoder 'impala' has no option 'colour'; its encoder_kwargs: channels"),
        ("nature", {"hidden": 0}, "'hidden' expects a positive integer"),
        ("minatar", {"channels": -1}, "'channels' expects a positive integer"),
    ]:
        with pytest.raises(RlmError, match=match) as info:
            make_encoder(name, (4, 84, 84), **kwargs)
        assert "\n" not in str(info.value)
    with pytest.raises(RlmError, match=r"\[C, H, W\]"):
        make_encoder("impala", (8,))


@pytest.mark.parametrize("name", ["nature", "minatar", "auto"])
def test_conv_encoders_on_vector_observations_are_one_line_errors(name: str) -> None:
    """``auto`` picks the MLP for vectors; the others say what they need instead of failing inside torch."""
    if name == "auto":
        assert make_encoder(name, (4,)).out_dim == 84
        return
    with pytest.raises(RlmError, match=rf"encoder '{name}' needs image observations \[C, H, W\], got shape \(4,\)"):
        make_encoder(name, (4,))


@pytest.mark.parametrize(("hidden", "ok"), [([-5], False), ("abc", False), ([64, 0], False), ([], True), ([32], True)])
def test_mlp_hidden_sizes_are_checked(hidden: object, ok: bool) -> None:
    if ok:
        assert make_encoder("mlp", (4,), hidden=hidden).out_dim == (hidden[-1] if hidden else 4)  # type: ignore[index]
    else:
        with pytest.raises(RlmError, match="option 'hidden' expects a list of positive integers"):
            make_encoder("mlp", (4,), hidden=hidden)


def test_unknown_encoder_name_lists_the_valid_ones() -> None:
    cfg = api.resolve_run_config("dqn", "MinAtar/Breakout", overrides=["encoder=foo"])
    space = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    with pytest.raises(RlmError) as info:
        DQNAgent(cfg.agent_config, AgentSetting(space, gym.spaces.Discrete(3), total_steps=10))
    msg = str(info.value)
    assert "unknown encoder 'foo'" in msg and "\n" not in msg
    for name in NEW + ["nature", "minatar", "mlp"]:
        assert name in msg


# --------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("shape", [(4, 84, 84), (7, 10, 10)], ids=["84", "10"])
@pytest.mark.parametrize("name", NEW + ["deformable-modulated"])
def test_gradients_reach_every_parameter(name: str, shape: tuple[int, ...]) -> None:
    kwargs = {"modulated": True} if name == "deformable-modulated" else {}
    enc = build(name.split("-")[0], shape, **kwargs)
    enc(frames(shape, batch=4)).pow(2).sum().backward()
    for pname, p in enc.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        # zero-initialised offset/mask branches still get a non-zero gradient from bilinear sampling
        assert p.grad.abs().sum() > 0, pname


# -------------------------------------------------------------------------------------- deformable
@pytest.mark.parametrize("modulated", [False, True])
def test_deform_conv_with_zero_offsets_equals_plain_conv(modulated: bool) -> None:
    torch.manual_seed(0)
    layer = DeformConv2d(6, 5, 3, stride=2, padding=1, modulated=modulated)
    conv = nn.Conv2d(6, 5, 3, stride=2, padding=1)
    with torch.no_grad():
        conv.weight.copy_(layer.weight)
        conv.bias.copy_(layer.bias)
    x = torch.randn(3, 6, 11, 11)
    offset, mask = layer.sampling(x)
    assert offset.abs().max() == 0  # zero-initialised offset branch
    if modulated:
        assert torch.equal(mask, torch.ones_like(mask))  # 2 * sigmoid(0) = 1
    torch.testing.assert_close(layer(x), conv(x), rtol=1e-5, atol=1e-5)
    # the torchvision op itself, with explicit zero offsets and the conv's weights
    zero = torch.zeros(3, 2 * 9, 6, 6)
    torch.testing.assert_close(deform_conv2d(x, zero, conv.weight, conv.bias, stride=2, padding=1), conv(x),
                               rtol=1e-5, atol=1e-5)


def test_deformable_offsets_move_the_samples() -> None:
    """A constant offset of +1 row on a 1x1 kernel reads the next row (torchvision's dy, dx layout)."""
    torch.manual_seed(0)
    layer = DeformConv2d(1, 1, 1)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
        layer.offset.bias.copy_(torch.tensor([1.0, 0.0]))  # dy = 1, dx = 0
    x = torch.arange(25.0).reshape(1, 1, 5, 5)
    y = layer(x)
    torch.testing.assert_close(y[0, 0, :4], x[0, 0, 1:])
    assert y[0, 0, 4].abs().max() == 0  # sampled below the frame: zero padding


@pytest.mark.parametrize(("shape", "out_c", "k", "stride", "padding"), [
    ((2, 5, 20, 20), 7, 4, 2, 0), ((3, 4, 9, 7), 6, 3, 1, 1), ((2, 3, 1, 6), 4, 1, 1, 0), ((2, 2, 12, 12), 3, 8, 4, 2),
])
@pytest.mark.parametrize("modulated", [False, True])
def test_gather_deform_conv_matches_torchvision_values_and_gradients(
        shape: tuple[int, ...], out_c: int, k: int, stride: int, padding: int, modulated: bool) -> None:
    """Random offsets of a few pixels, many samples falling off the frame: same outputs and gradients for the
    input, offsets, mask, weight and bias."""
    gen = torch.Generator().manual_seed(3)
    b, c, h, w = shape
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    x = torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_()
    offset = (3 * torch.randn(b, 2 * k * k, ho, wo, generator=gen, dtype=torch.float64)).requires_grad_()
    mask = torch.rand(b, k * k, ho, wo, generator=gen, dtype=torch.float64).requires_grad_() if modulated else None
    weight = torch.randn(out_c, c, k, k, generator=gen, dtype=torch.float64).requires_grad_()
    bias = torch.randn(out_c, generator=gen, dtype=torch.float64).requires_grad_()
    inputs = [t for t in (x, offset, mask, weight, bias) if t is not None]
    ref = deform_conv2d(x, offset, weight, bias, stride=stride, padding=padding, mask=mask)
    got = deform_conv2d_gather(x, offset, weight, bias, stride=stride, padding=padding, mask=mask)
    torch.testing.assert_close(got, ref)
    grad_out = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    for g_ref, g_got in zip(torch.autograd.grad(ref, inputs, grad_out), torch.autograd.grad(got, inputs, grad_out),
                            strict=True):
        torch.testing.assert_close(g_got, g_ref)


def test_deformable_backends_agree_and_bad_backend_is_named() -> None:
    torch.manual_seed(0)
    enc = make_encoder("deformable", (4, 84, 84), input_scale=1 / 255, modulated=True, backend="gather")
    ref = make_encoder("deformable", (4, 84, 84), input_scale=1 / 255, modulated=True, backend="torchvision")
    ref.load_state_dict(enc.state_dict())
    for layer in enc.convs[1:]:  # non-zero offsets and masks
        nn.init.normal_(layer.offset.weight, std=0.05)
        nn.init.normal_(layer.mask.weight, std=0.05)
    ref.load_state_dict(enc.state_dict())
    x = frames((4, 84, 84), batch=2)
    torch.testing.assert_close(enc(x), ref(x), rtol=1e-4, atol=1e-5)
    assert "backend=gather" in repr(enc)
    with pytest.raises(RlmError, match="backend.*auto, torchvision, gather"):
        make_encoder("deformable", (4, 84, 84), backend="cuda")


@pytest.mark.parametrize("layers", [[1, 2], [0, 1, 2], [0]])
@pytest.mark.parametrize("modulated", [False, True])
def test_fresh_deformable_encoder_equals_nature_with_the_same_weights(layers: list[int], modulated: bool) -> None:
    shape = (4, 84, 84)
    torch.manual_seed(1)
    nature = NatureEncoder(shape, input_scale=1 / 255)
    deform = make_encoder("deformable", shape, input_scale=1 / 255, deformable_layers=layers, modulated=modulated)
    missing, unexpected = deform.load_state_dict(nature.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(".offset." in k or ".mask." in k for k in missing)
    assert sum(isinstance(m, DeformConv2d) for m in deform.modules()) == len(layers)
    x = frames(shape, batch=3)
    torch.testing.assert_close(deform(x), nature(x), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------- determinism, state dict
@pytest.mark.parametrize("name", NEW)
def test_same_seed_same_params_and_outputs(name: str) -> None:
    shape = (4, 64, 64)
    a, b, c = build(name, shape, seed=3), build(name, shape, seed=3), build(name, shape, seed=4)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    x = frames(shape)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), c(x))


@pytest.mark.parametrize("name", NEW)
def test_state_dict_round_trip(name: str, tmp_path: Path) -> None:
    shape = (4, 84, 84)
    a = build(name, shape, seed=0)
    a(frames(shape, batch=4)).sum().backward()  # a training-mode pass updates BatchNorm's running stats
    torch.save(a.state_dict(), tmp_path / "enc.pt")
    b = build(name, shape, seed=1)
    b.load_state_dict(torch.load(tmp_path / "enc.pt", weights_only=True))
    x = frames(shape, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


def test_batchnorm_acting_does_not_depend_on_the_rest_of_the_batch() -> None:
    enc = build("densenet", (4, 84, 84))
    x = frames((4, 84, 84), batch=4)
    with torch.inference_mode():
        alone = enc(x[:1])
        together = enc(x)[:1]
    torch.testing.assert_close(alone, together, rtol=1e-5, atol=1e-5)


def test_nature_parameter_count_by_hand() -> None:
    # conv1: 4 in, 32 out, 8x8 kernel:  4*32*8*8 + 32  =     8,224
    # conv2: 32 in, 64 out, 4x4:       32*64*4*4 + 64  =    32,832
    # conv3: 64 in, 64 out, 3x3:       64*64*3*3 + 64  =    36,928
    # spatial size 84 -> (84-8)/4+1 = 20 -> (20-4)/2+1 = 9 -> 9-3+1 = 7, so 64*7*7 = 3,136 features
    # fc:    3,136 in, 512 out:       3136*512 + 512   = 1,606,144
    # total                                              1,684,128
    expected = (4 * 32 * 8 * 8 + 32) + (32 * 64 * 4 * 4 + 64) + (64 * 64 * 3 * 3 + 64) + (3136 * 512 + 512)
    assert expected == 1_684_128
    enc = make_encoder("nature", (4, 84, 84))
    assert sum(p.numel() for p in enc.parameters()) == expected
    # the deformable encoder adds only its offset branches (conv2: 32->2*16 4x4, conv3: 64->2*9 3x3)
    offsets = (32 * 32 * 4 * 4 + 32) + (64 * 18 * 3 * 3 + 18)
    deform = make_encoder("deformable", (4, 84, 84))
    assert sum(p.numel() for p in deform.parameters()) == expected + offsets


def test_multiply_add_counting_rule() -> None:
    from rlmorning.agents.nets.profiling import count_macs, layer_costs

    nature = make_encoder("nature", (4, 84, 84))
    # conv: C_out*H_out*W_out*C_in*kh*kw; linear: in*out
    expected = 32 * 20 * 20 * 4 * 64 + 64 * 9 * 9 * 32 * 16 + 64 * 7 * 7 * 64 * 9 + 3136 * 512
    assert count_macs(nature, (4, 84, 84)) == expected
    deform = make_encoder("deformable", (4, 84, 84), deformable_layers=[2])
    by_name = {c.name: c for c in layer_costs(deform, (4, 84, 84))}
    sampled = 64 * 9 * 7 * 7
    assert by_name["conv.4"].macs == 64 * 7 * 7 * 64 * 9 + 4 * sampled
    assert by_name["conv.4.offset"].macs == 18 * 7 * 7 * 64 * 9


# ------------------------------------------------------------------------------------------ commands
def test_encoders_command_lists_every_encoder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encoders", "--obs", "4x84x84", "--batch", "4", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    for name in ENCODERS.names():
        assert name in out
    assert "1,684,128" in out  # nature's parameters


def test_encoders_command_small_frames_and_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encoders", "--obs", "4x10x10", "-v", "--batch", "2", "--iters", "1",
                 "--encoder", "nature", "--encoder", "deformable"]) == 0
    out = capsys.readouterr().out
    assert "36x36" in out  # nature: n/a for 10x10 frames
    assert "conv.2.offset" in out  # per-layer rows of the deformable encoder


def test_encoders_command_on_vectors_marks_the_conv_encoders(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encoders", "--obs", "4", "--batch", "2", "--iters", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("n/a") >= 2 and "minatar" in out  # nature and minatar among the n/a rows, no traceback


@pytest.mark.parametrize("obs", ["4x84", "axbxc", "4x0x84", ""])
def test_encoders_command_bad_obs(obs: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encoders", "--obs", obs]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlmorning: error: --obs") and err.count("\n") == 1


@pytest.fixture(scope="module")
def deformable_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "deform"
    api.train("dqn", "Breakout", run_dir=run, steps=160, progress=False,
              overrides=["encoder=deformable", "learning_starts=120", "buffer_size=1000", "eval_every=0",
                         "heldout_states=10", "checkpoint_every=160", "batch_size=8", "torch_threads=1"])
    return run


def test_plot_offsets_writes_a_png(deformable_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plot-offsets", str(deformable_run), "--units", "2", "--frames", "2"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.parent == deformable_run / "plots" and path.suffix == ".png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert 400 <= width <= 2000 and 400 <= height <= 2000


def test_plot_offsets_sampling_geometry(deformable_run: Path) -> None:
    from rlmorning.viz.offsets import sampling_locations

    agent, _ = api.load_agent(deformable_run, "latest")
    enc = agent.online.encoder
    with torch.no_grad():  # zero offsets: the points are the plain receptive-field geometry
        for layer in enc.convs:
            if isinstance(layer, DeformConv2d):
                layer.offset.weight.zero_()
                layer.offset.bias.zero_()
    trace = enc.trace(frames((4, 84, 84), batch=1))
    pts = sampling_locations(trace, (3, 2))
    # unit (3, 2) of conv3 -> conv2 centre (4, 3) -> conv1 centre (9.5, 7.5) -> pixel (41.5, 33.5)
    np.testing.assert_allclose(pts["unit"], [[41.5, 33.5]])
    assert pts["top"].shape == (9, 2) and pts["all"].shape == (9 * 16, 2)
    np.testing.assert_allclose(pts["top"], pts["regular"])
    np.testing.assert_allclose(pts["top"].mean(axis=0), pts["unit"][0])


def test_plot_offsets_refuses_a_non_deformable_run(deformable_run: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "nature-run"
    shutil.copytree(deformable_run, other)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["encoder"] = "nature"
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["plot-offsets", str(other)]) == 2
    err = capsys.readouterr().err
    assert "encoder 'nature'" in err and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------ SB3
class TinyImageEnv(gym.Env):
    """uint8 0..255 frames [4, 36, 36]; reward for action 1."""

    observation_space = gym.spaces.Box(0, 255, (4, 36, 36), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.integers(0, 256, (4, 36, 36), dtype=np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        obs = self.np_random.integers(0, 256, (4, 36, 36), dtype=np.uint8)
        return obs, float(action == 1), self.t >= 20, False, {}


def test_sb3_extractor_scaling_and_features_dim() -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import DQN

    from rlmorning.agents.nets.sb3 import RlmorningExtractor, encoder_input_scale, features_extractor, policy_kwargs

    image = TinyImageEnv.observation_space
    planes = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    assert encoder_input_scale(image) == 1.0  # SB3 already divides by 255
    assert encoder_input_scale(image, normalize_images=False) == pytest.approx(1 / 255)
    assert encoder_input_scale(planes) == 1.0
    ext = features_extractor("impala", image, features_dim=64)
    assert isinstance(ext, RlmorningExtractor) and ext.features_dim == 64 and ext.encoder.out_dim == 64
    ext = features_extractor("mlp", planes, features_dim=16)  # no integer 'hidden': a projection is added
    assert ext.features_dim == 16 and ext(torch.zeros(2, 4, 10, 10)).shape == (2, 16)
    # end to end through SB3's preprocessing: the policy sees obs / 255 and the encoder does not rescale
    model = DQN("CnnPolicy", TinyImageEnv(), buffer_size=100, policy_kwargs=policy_kwargs("inception"), seed=0)
    q_net = model.policy.q_net
    obs = TinyImageEnv.observation_space.sample()[None]
    with torch.no_grad():
        feats = q_net.extract_features(torch.as_tensor(obs), q_net.features_extractor)
        torch.testing.assert_close(feats, q_net.features_extractor.encoder(torch.as_tensor(obs).float() / 255))
    with pytest.raises(RlmError, match="unknown encoder"):
        policy_kwargs("resnet50")


def test_sb3_dqn_trains_with_an_rlmorning_encoder(tmp_path: Path) -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import DQN
    from stable_baselines3.common.logger import configure

    from rlmorning.agents.nets.sb3 import RlmorningExtractor
    from rlmorning.envs import make_eval, resolve

    env = make_eval(resolve("MinAtar/Breakout"), 0)
    model = DQN("CnnPolicy", env, learning_starts=100, buffer_size=1000, batch_size=8, train_freq=4, seed=0,
                policy_kwargs=dict(features_extractor_class=RlmorningExtractor,
                                   features_extractor_kwargs=dict(encoder="impala", channels=[8, 16], hidden=32)))
    model.set_logger(configure(str(tmp_path / "sb3-log"), []))  # not SB3's default folder under /tmp
    before = {k: v.clone() for k, v in model.policy.q_net.state_dict().items()}
    model.learn(300)
    ext = model.policy.q_net.features_extractor
    assert ext.features_dim == 32 and ext.encoder.input_scale == 1.0
    obs = torch.as_tensor(env.observation_space.sample()[None]).float()
    assert ext(obs).shape == (1, 32)
    after = model.policy.q_net.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # gradient steps changed the weights
    env.close()


def test_nature_same_padding_matches_tensorflow_same() -> None:
    """``padding='same'`` = TF/Flax SAME (Dopamine's network): 84 -> 21 -> 11 -> 11, the odd pad at the end."""
    from rlmorning.agents.nets.encoders import same_padding

    assert [same_padding(84, 8, 4), same_padding(21, 4, 2), same_padding(11, 3, 1)] == [(2, 2), (1, 2), (1, 1)]
    torch.manual_seed(0)
    enc = NatureEncoder((4, 84, 84), input_scale=1 / 255, padding="same")
    convs = [m for m in enc.conv if isinstance(m, nn.Conv2d)]
    x = frames((4, 84, 84), batch=2).float() / 255
    ref = x
    for conv, pad in zip(convs, [(2, 2, 2, 2), (1, 2, 1, 2), (1, 1, 1, 1)], strict=True):
        ref = torch.relu(torch.nn.functional.conv2d(torch.nn.functional.pad(ref, pad), conv.weight, conv.bias,
                                                    stride=conv.stride))
    assert ref.shape == (2, 64, 11, 11)
    assert enc.fc[0].in_features == 64 * 11 * 11
    torch.testing.assert_close(enc(frames((4, 84, 84), batch=2)), enc.fc(ref.flatten(1)), rtol=1e-5, atol=1e-5)
    assert NatureEncoder((4, 84, 84)).fc[0].in_features == 64 * 7 * 7  # valid: the Nature paper's 7x7
    with pytest.raises(RlmError, match="padding.*'valid' or 'same'"):
        make_encoder("nature", (4, 84, 84), padding="full")
