"""World-model parts: MDN-GRU dynamics, PatchGAN discriminator, SRCNN super-resolution, strided conv codec."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import distributions as D

from rlmorning.agents.nets.adversarial import PatchDiscriminator, discriminator_loss, generator_loss
from rlmorning.agents.nets.mdn import LOG_SIGMA_MIN, MDNGRUDynamics
from rlmorning.agents.nets.srcnn import SRCNN, bicubic, fit_srcnn, psnr
from rlmorning.agents.nets.strided_codec import StridedDecoder, StridedEncoder, strided_body
from rlmorning.agents.nets.world_model_nets import DYNAMICS, make_codec, make_dynamics
from rlmorning.errors import RlmError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------------- MDN
def set_head(m: MDNGRUDynamics, logits: list[float], mu: list[list[float]], log_sigma: list[list[float]]) -> None:
    """Make the mixture independent of the state: zero weights, the given parameters as biases."""
    last = m.mdn[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor(logits + sum(mu, []) + sum(log_sigma, [])))


def step(m: MDNGRUDynamics, b: int, seed_h: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed_h)
    z = torch.randn(b, m.latent_dim, generator=g)
    a = torch.randint(0, m.num_actions, (b,), generator=g)
    return z, a, m.initial(z)


def test_mdn_registered_and_shapes():
    assert "mdn-gru" in DYNAMICS
    m = make_dynamics("mdn-gru", 6, 3, hidden=16, mixtures=4)
    assert isinstance(m, MDNGRUDynamics)
    z, a, h = step(m, 5)
    assert h.shape == (5, 16)
    for mode in (True, False):
        m.train(mode)
        h2, zn, r, t = m(z, a, h)
        assert h2.shape == (5, 16) and zn.shape == (5, 6) and r.shape == (5,) and t.shape == (5,)
    logits, mu, ls = m.mixture(h2)
    assert logits.shape == (5, 4) and mu.shape == ls.shape == (5, 4, 6)
    assert m.latent_loss(h2, zn).shape == (5,)
    with pytest.raises(RlmError):
        m.latent_loss(h2, zn[:, :3])
    with pytest.raises(RlmError):
        MDNGRUDynamics(4, 2, mixtures=0)
    with pytest.raises(RlmError):
        MDNGRUDynamics(4, 2, temperature=-0.5)


def test_mdn_nll_one_component_by_hand():
    m = MDNGRUDynamics(1, 2, hidden=8, mixtures=1)
    set_head(m, [0.7], [[0.3]], [[-0.5]])
    _, _, h = step(m, 3)
    nll = m.latent_loss(h, torch.full((3, 1), 1.0))
    sigma = math.exp(-0.5)
    expected = 0.5 * ((1.0 - 0.3) / sigma) ** 2 + math.log(sigma) + 0.5 * math.log(2 * math.pi)
    assert torch.allclose(nll, torch.full((3,), expected), atol=1e-5)


def test_mdn_nll_matches_torch_distributions_and_clamps():
    torch.manual_seed(0)
    m = MDNGRUDynamics(4, 2, hidden=16, mixtures=3)
    _, _, h = step(m, 7)
    target = torch.randn(7, 4)
    logits, mu, ls = m.mixture(h)
    ref = D.MixtureSameFamily(D.Categorical(logits=logits), D.Independent(D.Normal(mu, ls.exp()), 1))
    assert torch.allclose(m.latent_loss(h, target), -ref.log_prob(target), atol=1e-4)
    set_head(m, [0.0, 0.0, 0.0], [[0.0] * 4] * 3, [[-100.0] * 4] * 3)
    assert torch.all(m.mixture(h)[2] == LOG_SIGMA_MIN)
    assert torch.isfinite(m.latent_loss(h, target)).all()


def fit_bimodal(mixtures: int, steps: int = 300, batch: int = 64) -> MDNGRUDynamics:
    """Next latent is +1 or -1 with equal chance, whatever the input."""
    torch.manual_seed(0)
    m = MDNGRUDynamics(1, 1, hidden=16, mixtures=mixtures)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    z, a = torch.zeros(batch, 1), torch.zeros(batch, dtype=torch.long)
    for _ in range(steps):
        h, _, _, _ = m(z, a, m.initial(z))
        y = torch.randint(0, 2, (batch, 1)).float() * 2 - 1
        loss = m.latent_loss(h, y).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return m.eval()


def test_mdn_fits_bimodal_target_and_temperature_controls_modes():
    mdn, uni = fit_bimodal(5), fit_bimodal(1)
    n = 1000
    z, a = torch.zeros(n, 1), torch.zeros(n, dtype=torch.long)
    y = torch.randint(0, 2, (n, 1), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
    with torch.no_grad():
        h_mdn, s, _, _ = mdn(z, a, mdn.initial(z))
        h_uni, _, _, _ = uni(z, a, uni.initial(z))
        nll_mdn = float(mdn.latent_loss(h_mdn, y).mean())
        nll_uni = float(uni.latent_loss(h_uni, y).mean())
        # the best single Gaussian has mean 0, variance 1: NLL 0.5 log(2 pi e) = 1.42
        assert nll_uni > 1.3
        assert nll_mdn < nll_uni - 2.0, (nll_mdn, nll_uni)
        # tau = 1: both modes, samples near +-1
        assert 0.35 < float((s > 0).float().mean()) < 0.65
        assert float(((s.abs() - 1).abs() < 0.3).float().mean()) > 0.95
        # tau = 0: one mode for everyone
        mdn.temperature = 0.0
        _, s0, _, _ = mdn(z, a, mdn.initial(z))
        assert torch.all(s0 == s0[0]) and abs(abs(float(s0[0, 0])) - 1) < 0.3


def test_mdn_temperature_scales_weights_and_sigmas():
    m = MDNGRUDynamics(1, 1, hidden=8, mixtures=2).eval()
    set_head(m, [0.0, math.log(3.0)], [[-5.0], [5.0]], [[math.log(0.5)], [math.log(0.5)]])
    z, a = torch.zeros(4000, 1), torch.zeros(4000, dtype=torch.long)
    torch.manual_seed(0)
    with torch.no_grad():
        h, s1, _, _ = m(z, a, m.initial(z))
        s_half = m.sample(h, temperature=0.5)
        s0 = m.sample(h, temperature=0.0)
    assert abs(float((s1 > 0).float().mean()) - 0.75) < 0.03  # pi = (1/4, 3/4)
    assert abs(float((s_half > 0).float().mean()) - 0.9) < 0.02  # (pi ** 2) renormalised = (1/10, 9/10)
    assert abs(float(s1[s1 > 0].std()) - 0.5) < 0.03
    assert abs(float(s_half[s_half > 0].std()) - 0.5 * math.sqrt(0.5)) < 0.03
    assert torch.all(s0 == 5.0)


def test_mdn_train_mode_is_mixture_mean_eval_mode_samples():
    torch.manual_seed(0)
    m = MDNGRUDynamics(3, 2, hidden=16, mixtures=4)
    z, a, h = step(m, 6)
    m.train()
    h2, z1, _, _ = m(z, a, h)
    _, z2, _, _ = m(z, a, h)
    logits, mu, _ = m.mixture(h2)
    assert torch.equal(z1, z2)
    assert torch.allclose(z1, (logits.softmax(1).unsqueeze(2) * mu).sum(1), atol=1e-6)
    z1.sum().backward()
    assert m.mdn[-1].weight.grad is not None and m.mdn[-1].weight.grad.abs().sum() > 0
    m.eval()
    with torch.no_grad():
        _, e1, _, _ = m(z, a, h)
        _, e2, _, _ = m(z, a, h)
        assert not torch.equal(e1, e2)
        m.temperature = 0.0
        _, e0, _, _ = m(z, a, h)
        assert torch.allclose(e0, mu[torch.arange(6), logits.argmax(1)])


def test_mdn_sampling_is_deterministic_under_seed():
    def rollout(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        m = MDNGRUDynamics(4, 3, hidden=16, mixtures=3).eval()
        z, a, h = step(m, 8)
        out = []
        with torch.no_grad():
            for _ in range(5):
                h, z, _, _ = m(z, a, h)
                out.append(z)
        return torch.stack(out)

    assert torch.equal(rollout(3), rollout(3))
    assert not torch.equal(rollout(3), rollout(4))


# ---------------------------------------------------------------------------------------------- discriminator
@pytest.mark.parametrize(("shape", "downsample", "out"), [
    ((1, 10, 10), 1, (5, 5)), ((4, 10, 10), 0, (10, 10)), ((3, 64, 64), 1, (32, 32)), ((1, 64, 64), 3, (8, 8)),
])
def test_discriminator_shapes(shape, downsample, out):
    layers = max(2, downsample)
    for sn in (True, False):
        d = PatchDiscriminator(shape[0], channels=8, layers=layers, downsample=downsample, spectral_norm=sn)
        assert d(torch.rand(2, *shape)).shape == (2, 1, *out)


def test_discriminator_errors():
    with pytest.raises(RlmError):
        PatchDiscriminator(1, layers=0)
    with pytest.raises(RlmError):
        PatchDiscriminator(1, layers=2, downsample=3)
    with pytest.raises(RlmError):
        PatchDiscriminator(1, downsample=2)(torch.rand(1, 1, 6, 6))
    d = PatchDiscriminator(1, channels=4)
    with pytest.raises(RlmError):
        discriminator_loss(d, torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), kind="wasserstein")


def bars(n: int, g: torch.Generator) -> torch.Tensor:
    """10x10 0/1 frames with two full rows or columns lit: structured 'real' frames."""
    x = torch.zeros(n, 1, 10, 10)
    for i in range(n):
        for _ in range(2):
            j = int(torch.randint(0, 10, (1,), generator=g))
            if torch.rand(1, generator=g) < 0.5:
                x[i, 0, j, :] = 1
            else:
                x[i, 0, :, j] = 1
    return x


@pytest.mark.parametrize(("kind", "steps"), [("hinge", 100), ("bce", 150)])  # spectral norm bounds BCE's logits
def test_discriminator_separates_structure_from_noise(kind, steps):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    d = PatchDiscriminator(1, channels=16)
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(steps):
        real = bars(32, g)
        fake = (torch.rand(real.shape, generator=g) < real.mean()).float()  # same density, no structure
        loss = discriminator_loss(d, real, fake, kind=kind)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5
    with torch.no_grad():
        real = bars(256, g)
        fake = (torch.rand(real.shape, generator=g) < real.mean()).float()
        acc = 0.5 * (float((d(real).mean((1, 2, 3)) > 0).float().mean())
                     + float((d(fake).mean((1, 2, 3)) < 0).float().mean()))
    assert acc > 0.9


@pytest.mark.parametrize("kind", ["hinge", "bce"])
def test_generator_gradients_reach_fake_frames_and_d_loss_detaches(kind):
    torch.manual_seed(0)
    d = PatchDiscriminator(2, channels=8)
    fake = torch.rand(3, 2, 10, 10, requires_grad=True)
    loss = generator_loss(d, fake, kind=kind)
    assert loss.dim() == 0
    loss.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    fake.grad = None
    d.zero_grad()
    dl = discriminator_loss(d, torch.rand(3, 2, 10, 10), fake, kind=kind)
    assert dl.dim() == 0
    dl.backward()
    assert fake.grad is None
    assert all(p.grad is not None for p in d.parameters())


# ---------------------------------------------------------------------------------------------------- SRCNN
def shapes(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Grey images ``[n, 1, size, size]`` in [0, 1]: a flat background with 3 sharp rectangles or discs."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size).float(), torch.arange(size).float(), indexing="ij")
    out = torch.zeros(n, 1, size, size)
    for i in range(n):
        img = torch.full((size, size), float(torch.rand(1, generator=g)) * 0.3)
        for _ in range(3):
            v = float(torch.rand(1, generator=g)) * 0.7 + 0.3
            cx, cy = (torch.rand(2, generator=g) * size).tolist()
            r = float(torch.rand(1, generator=g)) * 6 + 3
            if torch.rand(1, generator=g) < 0.5:
                mask = ((xx - cx).abs() < r) & ((yy - cy).abs() < r * 0.6)
            else:
                mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            img[mask] = v
        out[i, 0] = img
    return out


def test_srcnn_shapes_and_untrained_is_bicubic():
    torch.manual_seed(0)
    for c in (1, 3):
        m = SRCNN(c, n1=8, n2=4)
        assert m(torch.rand(2, c, 20, 18)).shape == (2, c, 20, 18)
        low = torch.rand(2, c, 10, 9)
        up = m.upsample(low, (25, 17))
        assert up.shape == (2, c, 25, 17)
        assert torch.allclose(up, bicubic(low, (25, 17)))  # zero-initialised residual
    with pytest.raises(RlmError):
        SRCNN(1, f1=4)
    with pytest.raises(RlmError):
        SRCNN(1).upsample(torch.rand(1, 3, 8, 8), (16, 16))


def test_psnr():
    a = torch.zeros(1, 1, 4, 4)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)


def test_fit_srcnn_beats_bicubic_on_held_out_shapes():
    train, test = shapes(64, seed=0), shapes(16, seed=1)
    torch.manual_seed(0)
    m = SRCNN(1, n1=16, n2=16, f2=1)
    hist = fit_srcnn(m, train, (16, 16), steps=200, batch_size=8, lr=2e-3)
    assert len(hist) == 200 and all(math.isfinite(v) for v in hist)
    assert sum(hist[-20:]) / 20 < 0.8 * sum(hist[:5]) / 5
    low = F.interpolate(test, size=(16, 16), mode="area")
    with torch.no_grad():
        up = m.upsample(low, (32, 32))
    assert up.shape == test.shape and float(up.min()) >= 0.0 and float(up.max()) <= 1.0
    gain = psnr(up, test) - psnr(bicubic(low, (32, 32)), test)
    assert gain > 1.0, gain


def test_fit_srcnn_is_seeded_and_checks_inputs():
    frames = shapes(8, size=16)

    def run(seed: int) -> list[float]:
        torch.manual_seed(0)
        return fit_srcnn(SRCNN(1, n1=4, n2=4, f2=1), frames, (8, 8), steps=4, batch_size=2, seed=seed)

    assert run(0) == run(0) and run(0) != run(1)
    with pytest.raises(RlmError):
        fit_srcnn(SRCNN(1), frames, (32, 32), steps=1)
    with pytest.raises(RlmError):
        fit_srcnn(SRCNN(3), frames, (8, 8), steps=1)


# ------------------------------------------------------------------------------------------- strided codec
@pytest.mark.parametrize("shape", [(1, 64, 64), (4, 64, 64), (1, 84, 84), (4, 84, 84), (3, 32, 32), (1, 72, 96)])
def test_strided_codec_shapes(shape):
    torch.manual_seed(0)
    enc, dec = strided_body(shape, latent_out=2 * 16, latent_dim=16, channels=8)
    x = torch.rand(2, *shape)
    assert enc(x).shape == (2, 32)
    assert dec(torch.randn(2, 16)).shape == (2, *shape)


def test_strided_codec_widths_and_errors():
    enc = StridedEncoder(3, channels=32, out_dim=10)
    assert [m.out_channels for m in enc.conv if isinstance(m, torch.nn.Conv2d)] == [32, 64, 128, 256]
    dec = StridedDecoder(10, 3, (64, 64), channels=32)
    assert [m.out_channels for m in dec.deconv if isinstance(m, torch.nn.ConvTranspose2d)] == [128, 64, 32, 3]
    with pytest.raises(RlmError):
        strided_body((1, 10, 10), 8, 4, 8)
    with pytest.raises(RlmError):
        strided_body((64, 64), 8, 4, 8)
    with pytest.raises(RlmError):
        enc(torch.rand(1, 3, 16, 16))


def test_strided_codec_autoencodes_84px_frames():
    """The cropped 84x84 decoder can reproduce frames (a wrong crop or geometry would not fit the border)."""
    torch.manual_seed(0)
    frames = torch.zeros(2, 1, 84, 84)
    frames[0, :, :10, :] = 1.0  # a band along the top border
    frames[1, :, :, 70:] = 1.0  # a band along the right border
    enc, dec = strided_body((1, 84, 84), 8, 8, 8)
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=3e-3)
    for _ in range(120):
        loss = F.binary_cross_entropy_with_logits(dec(enc(frames)), frames)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        acc = float(((dec(enc(frames)) > 0).float() == frames).float().mean())
    assert acc > 0.97


# ---------------------------------------------------------------------------------- grid-ae + conv-gru
@pytest.mark.parametrize(("shape", "grid"), [((4, 10, 10), (10, 10)), ((3, 64, 64), (16, 16)),
                                             ((1, 84, 84), (11, 11)), ((2, 7, 40), (2, 10))])
def test_grid_ae_keeps_the_layout_and_decodes_to_the_frame_size(shape, grid):
    codec = make_codec("grid-ae", shape, channels=8, latent_channels=3)
    assert codec.latent_grid == (3, *grid) and codec.latent_size == 3 * grid[0] * grid[1]
    x = torch.randint(0, 2, (2, *shape), dtype=torch.uint8)
    z, mu, reg = codec.encode(x)
    assert z.shape == (2, codec.latent_size) and torch.equal(z, mu) and torch.equal(reg, torch.zeros(2))
    assert codec.decode(z).shape == (2, *shape)
    with pytest.raises(RlmError, match="grid-ae expects frames"):
        codec.encode(torch.zeros(2, *shape[:-1], shape[-1] + 1))


def test_conv_gru_is_local_and_needs_a_latent_grid():
    """The next latent of a cell depends only on cells within the convolutions' reach, never on the far
    corner; the heads see the whole grid."""
    torch.manual_seed(0)
    codec = make_codec("grid-ae", (4, 10, 10), channels=8, latent_channels=3)
    dyn = make_dynamics("conv-gru", codec.latent_size, 3, codec=codec, hidden=16, channels=5)
    assert dyn.grid == (3, 10, 10) and dyn.hidden == 5 * 100
    z = torch.randn(2, codec.latent_size)
    a = torch.tensor([0, 2])
    h = dyn.initial(z)
    h1, z1, r1, t1 = dyn(z, a, h)
    assert h1.shape == (2, 500) and z1.shape == (2, 300) and r1.shape == t1.shape == (2,)
    far = z.view(2, 3, 10, 10).clone()
    far[:, :, 0, 0] += 5.0  # change the top-left cell of the start latent
    h0 = dyn.initial(far.flatten(1))
    h2, z2, r2, _ = dyn(far.flatten(1), a, h0)
    diff = (z2 - z1).view(2, 3, 10, 10).abs().amax(dim=(0, 1))
    # 3x3 convs, one cell each: init (1) + reset gate then candidate (2) + the two output convs (2) = 5 cells
    assert diff[5, 5] > 0 and diff[6:, :].max() == 0 and diff[:, 6:].max() == 0
    assert not torch.equal(r1, r2)
    with pytest.raises(RlmError, match="acts on a latent grid: use codec grid-ae or vqvae"):
        make_dynamics("conv-gru", 32, 3, codec=make_codec("vae", (4, 10, 10)))
    with pytest.raises(RlmError, match="does not match the latent size"):
        make_dynamics("conv-gru", 31, 3, codec=codec)


# ------------------------------------------------------------------------------------------ observed context
def moving_dots(batch: int, length: int, gen: torch.Generator, size: int = 8) -> dict:
    """Windows of a dot moving one cell per step left or right (wrapping): one frame cannot tell the
    direction, two frames can."""
    row = torch.randint(0, size, (batch,), generator=gen)
    col = torch.randint(0, size, (batch,), generator=gen)
    vel = torch.randint(0, 2, (batch,), generator=gen) * 2 - 1
    frames = torch.zeros(length + 1, batch, 1, size, size, dtype=torch.uint8)
    for t in range(length + 1):
        frames[t, torch.arange(batch), 0, row, (col + vel * t) % size] = 1
    zeros = torch.zeros(length, batch)
    return {"frames": frames, "actions": zeros.long(), "rewards": zeros, "terminated": zeros, "mask": zeros + 1}


def test_observed_context_lets_the_model_infer_what_one_frame_cannot_show():
    """With context=2 the dynamics read two real frames and learn the dot's direction: the prediction after
    the last observed frame is exact, where copy-last-frame (and a context-1 model) cannot be."""
    from rlmorning.agents.world_model import WorldModel  # noqa: PLC0415

    first = {}
    for context in (1, 2):
        torch.manual_seed(0)
        gen = torch.Generator().manual_seed(0)
        model = WorldModel((1, 8, 8), 2, codec="grid-ae", dynamics="conv-gru", codec_channels=8, hidden=16,
                           codec_kwargs={"latent_channels": 4}, dynamics_kwargs={"channels": 8}, context=context,
                           lr=3e-3)
        for _ in range(400):
            model.update(moving_dots(16, 4, gen))
        res = model.kstep_metrics(moving_dots(128, 4, gen))  # observes frames 0..context-1, predicts the rest
        assert len(res["acc"]) == 5 - context
        assert res["copy_acc"][0] == pytest.approx(62 / 64)  # the dot moved: two cells differ
        first[context] = float(res["acc"][0])
    assert first[2] > 0.995 > 0.99 > first[1]  # one frame: the direction is a coin flip
    # start() with a history: the state after reading both frames (as the training context does)
    batch = moving_dots(3, 1, gen)
    z, h = model.start(batch["frames"], batch["actions"])
    _, mu, _ = model.codec.encode(batch["frames"].flatten(0, 1).float(), sample=False)
    mu = mu.view(2, 3, -1)
    h_manual, _, _, _ = model.dyn(mu[0], batch["actions"][0], model.dyn.initial(mu[0]))
    torch.testing.assert_close(z, mu[1])
    torch.testing.assert_close(h, h_manual)
    with pytest.raises(RlmError, match="need the 1 actions taken between them"):
        model.start(batch["frames"])
    with pytest.raises(RlmError, match=r"past_actions must be \[1, 3\]"):
        model.start(batch["frames"], torch.zeros(2, 3))
    with pytest.raises(RlmError, match="too short for context 2"):
        model.kstep_metrics(moving_dots(4, 1, gen))
    with pytest.raises(RlmError, match="'context' must be an integer >= 1"):
        WorldModel((1, 8, 8), 2, context=0)


def test_conv_gru_reward_map_head_sums_local_scores():
    torch.manual_seed(0)
    codec = make_codec("grid-ae", (4, 10, 10), channels=8, latent_channels=3)
    dyn = make_dynamics("conv-gru", codec.latent_size, 3, codec=codec, hidden=8, channels=5, reward_head="map")
    z = torch.randn(2, codec.latent_size)
    a = torch.tensor([0, 1])
    _, _, r0, _ = dyn(z, a, dyn.initial(z))
    assert torch.equal(r0, torch.zeros(2))  # zero-initialised scores: a fresh head predicts no reward
    with torch.no_grad():
        dyn.reward[-1].bias.fill_(0.01)
    _, _, r1, _ = dyn(z, a, dyn.initial(z))
    torch.testing.assert_close(r1, torch.full((2,), 0.01 * 100))  # one score per cell of the 10x10 grid, summed
    with pytest.raises(RlmError, match="'reward_head' must be pooled or map"):
        make_dynamics("conv-gru", codec.latent_size, 3, codec=codec, reward_head="mlp")
