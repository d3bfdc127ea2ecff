"""VQ-VAE codec (``vqvae``) and the gated PixelCNN prior over its code grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlmorning.agents.nets.pixelcnn import PixelCNNPrior
from rlmorning.agents.nets.vq import VQVAE, default_grid
from rlmorning.agents.nets.world_model_nets import CODECS, make_codec
from rlmorning.agents.world_model import WorldModel
from rlmorning.errors import RlmError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def blocks(n: int, seed: int) -> torch.Tensor:
    """Synthetic 0/1 frames ``[n, 2, 10, 10]``: a 1x3 paddle in the bottom row and a one-pixel ball."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 2, 10, 10, dtype=torch.uint8)
    paddle = torch.randint(0, 8, (n,), generator=g)
    ball = torch.randint(0, 10, (n, 2), generator=g)
    for i in range(n):
        x[i, 0, 9, paddle[i]:paddle[i] + 3] = 1
        x[i, 1, ball[i, 0], ball[i, 1]] = 1
    return x


def recon_loss(codec: VQVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean per-frame Bernoulli loss, mean VQ loss), as the world model scores frames."""
    z, _, reg = codec.encode(x)
    bce = F.binary_cross_entropy_with_logits(codec.decode(z), x.float(), reduction="none").flatten(1).sum(1)
    return bce.mean(), reg.mean()


def shifted_rows(n: int, num_codes: int, grid: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """Code grids whose first row is random and each later row is the row above rolled left by one."""
    h, w = grid
    first = torch.randint(0, num_codes, (n, w), generator=g)
    return torch.stack([first.roll(-i, dims=1) for i in range(h)], dim=1)


def min_dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance of each row of ``a`` to its nearest row of ``b`` (exact, unlike ``torch.cdist``)."""
    return (a[:, None] - b[None]).norm(dim=-1).min(1).values


def is_shifted(codes: torch.Tensor) -> torch.Tensor:
    return (codes[:, 1:] == codes[:, :-1].roll(-1, dims=2)).flatten(1).all(1)


# ------------------------------------------------------------------------------------------------ VQ-VAE
def test_registry_and_make_codec():
    assert "vqvae" in CODECS.names() and CODECS.get("vqvae") is VQVAE
    assert "VQ-VAE" in CODECS.describe("vqvae")
    codec = make_codec("vqvae", (4, 10, 10), latent_dim=32, channels=8)
    assert isinstance(codec, VQVAE) and codec.reg_uses_beta is False
    assert codec.grid == (5, 5) and codec.latent_size == codec.latent_dim == 8 * 25
    assert (codec.obs_shape, codec.num_codes, codec.code_dim) == ((4, 10, 10), 32, 8)


def test_default_grid():
    assert default_grid(10, 10) == (5, 5)
    assert default_grid(64, 64) == (8, 8)
    assert default_grid(84, 84) == (6, 6)
    assert default_grid(8, 6) == (8, 6)
    assert default_grid(210, 160) == (7, 5)


@pytest.mark.parametrize("obs_shape, grid, expect", [
    ((4, 10, 10), None, (5, 5)), ((4, 10, 10), (3, 3), (3, 3)), ((4, 10, 10), (4, 4), (4, 4)),
    ((4, 10, 10), (2, 5), (2, 5)), ((1, 10, 10), (10, 10), (10, 10)), ((3, 7, 9), None, (4, 5)),
    ((3, 8, 6), None, (8, 6)), ((2, 20, 12), None, (5, 3)),
])
def test_grids_and_exact_output_size(obs_shape, grid, expect):
    torch.manual_seed(0)
    codec = VQVAE(obs_shape, channels=8, code_dim=4, num_codes=8, grid=grid)
    assert codec.grid == expect and codec.latent_size == 4 * expect[0] * expect[1]
    x = torch.randint(0, 2, (3, *obs_shape), dtype=torch.uint8)
    z, mean, reg = codec.encode(x)
    assert z.shape == mean.shape == (3, codec.latent_size) and reg.shape == (3,)
    assert codec.decode(z).shape == (3, *obs_shape)
    assert codec.codes(x).shape == (3, *expect)


def test_interface_round_trips():
    torch.manual_seed(0)
    codec = VQVAE((4, 10, 10), channels=8).eval()
    x = torch.randint(0, 2, (6, 4, 10, 10), dtype=torch.uint8)
    z, mean, reg = codec.encode(x)
    assert torch.equal(z, mean) and (reg >= 0).all()
    assert torch.equal(codec.encode(x, sample=False)[0], z)  # deterministic, `sample` ignored
    codes = codec.codes(x)
    assert codes.dtype == torch.long and codes.shape == (6, 5, 5)
    assert int(codes.min()) >= 0 and int(codes.max()) < codec.num_codes
    assert torch.equal(codec.embed_codes(codes), z)
    assert torch.allclose(codec.decode_codes(codes), codec.decode(z), atol=1e-5)
    # snap: every cell becomes a codebook vector; idempotent; quantised latents are fixed points
    noisy = torch.randn(6, codec.latent_size)
    snapped = codec.snap(noisy)
    cells = snapped.view(6, codec.code_dim, 25).permute(0, 2, 1).reshape(-1, codec.code_dim)
    assert min_dist(cells, codec.embeddings().detach()).max() < 1e-6
    assert torch.equal(codec.snap(snapped), snapped)  # exactly the code values
    assert torch.equal(codec.snap(z), z)
    # the flat layout is channel-first: cell (i, j) of code c sits at c * h * w + i * w + j
    one = torch.zeros(1, 5, 5, dtype=torch.long)
    one[0, 2, 3] = 1
    flat = codec.embed_codes(one).view(codec.code_dim, 5, 5)
    assert torch.allclose(flat[:, 2, 3], codec.embeddings()[1]) and torch.allclose(flat[:, 0, 0], codec.embeddings()[0])


def test_bad_inputs_raise_rlm_errors():
    codec = VQVAE((4, 10, 10), channels=8)
    with pytest.raises(RlmError, match="frames"):
        codec.encode(torch.zeros(2, 3, 10, 10))
    with pytest.raises(RlmError, match="latents"):
        codec.decode(torch.zeros(2, 7))
    with pytest.raises(RlmError, match=r"codes must lie in \[0, 32\)"):
        codec.embed_codes(torch.full((1, 5, 5), 32))
    with pytest.raises(RlmError, match="codes must be"):
        codec.decode_codes(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(RlmError, match="grid"):
        VQVAE((4, 10, 10), grid=(11, 5))
    with pytest.raises(RlmError, match=r"\[C, H, W\]"):
        VQVAE((10, 10))
    with pytest.raises(RlmError, match="num_codes"):
        VQVAE((4, 10, 10), num_codes=1)


def test_straight_through_gradients_reach_the_encoder():
    torch.manual_seed(0)
    codec = VQVAE((2, 10, 10), channels=8, restart_dead=False)
    x = blocks(8, seed=1)
    rec, reg = recon_loss(codec, x)
    rec.backward(retain_graph=True)
    first_conv = codec.enc[0].weight.grad
    assert first_conv is not None and first_conv.abs().sum() > 0  # through the quantiser
    assert codec.codebook.grad is None or codec.codebook.grad.abs().sum() == 0  # recon never moves codes
    codec.zero_grad(set_to_none=True)
    reg.backward()
    assert codec.codebook.grad.abs().sum() > 0  # codebook loss
    assert codec.enc[0].weight.grad.abs().sum() > 0  # commitment loss


def test_dead_codes_reseeded_from_encoder_outputs():
    torch.manual_seed(0)
    codec = VQVAE((2, 10, 10), channels=8)
    x = blocks(32, seed=2)
    before = codec.embeddings().detach().clone()
    with torch.no_grad():  # no training step: nothing changes
        codec.encode(x)
    codec.eval()
    codec.encode(x)
    assert torch.equal(codec.embeddings(), before) and codec.usage.sum() == 0
    codec.train()
    with torch.no_grad():
        outputs = codec._encode_cells(x).reshape(-1, codec.code_dim)
    used_before = codec.codes(x).unique().numel()
    codec.encode(x)
    after = codec.embeddings().detach()
    moved = (after - before).norm(dim=1) > 1e-6
    assert moved.sum() >= codec.num_codes // 2  # usage starts at 0: the first batch seeds the codebook
    assert min_dist(after[moved], outputs).max() < 1e-6  # each re-seeded code is an encoder output
    assert len(torch.unique(after[moved].round(decimals=4), dim=0)) == int(moved.sum())  # no copies
    assert codec.codes(x).unique().numel() > used_before
    assert torch.allclose(codec.usage[moved], torch.full((int(moved.sum()),), 1 / codec.num_codes))


def test_training_is_deterministic_under_a_seed():
    x = blocks(16, seed=3)

    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(5)
        codec = VQVAE((2, 10, 10), channels=8)
        opt = torch.optim.Adam(codec.parameters(), 3e-3)
        for _ in range(5):
            rec, reg = recon_loss(codec, x)
            opt.zero_grad()
            (rec + reg).backward()
            opt.step()
        return codec.state_dict()

    a, b = run(), run()
    assert a.keys() == b.keys() and "usage" in a
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def trained_vq():
    """A VQ-VAE after 250 Adam steps on 512 paddle-and-ball frames, with its reconstruction losses."""
    x = blocks(512, seed=0)
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    codec = VQVAE((2, 10, 10), channels=16)
    opt = torch.optim.Adam(codec.parameters(), 5e-3)
    losses = []
    for _ in range(250):
        batch = x[torch.randint(0, len(x), (32,), generator=g)]
        rec, reg = recon_loss(codec, batch)
        opt.zero_grad()
        (rec + reg).backward()
        opt.step()
        losses.append(float(rec.detach()))
    return codec.eval(), x, losses


def test_training_reconstructs_frames(trained_vq):
    codec, x, losses = trained_vq
    first, last = losses[0], float(np.mean(losses[-10:]))
    assert last < 0.05 * first, (first, last)
    with torch.no_grad():
        pred = (codec.decode_codes(codec.codes(x)) > 0).to(torch.uint8)
    acc = (pred == x).float().mean().item()
    on_recall = (pred[x == 1] == 1).float().mean().item()
    assert acc > 0.993 and on_recall > 0.7, (acc, on_recall)  # all-zero frames would score 0.98 and 0
    assert codec.codes(x).unique().numel() >= 16 and codec.perplexity() >= 8  # no codebook collapse


def test_world_model_runs_with_the_vq_codec():
    torch.manual_seed(0)
    model = WorldModel((2, 10, 10), 3, codec="vqvae", latent_dim=200, codec_channels=8, hidden=32)
    assert model.codec.latent_size == 200
    frames = blocks(4 * 3, seed=4).view(4, 3, 2, 10, 10).numpy()
    batch = {"frames": frames, "actions": np.zeros((3, 3), np.int64), "rewards": np.zeros((3, 3), np.float32),
             "terminated": np.zeros((3, 3), bool), "mask": np.ones((3, 3), bool)}
    metrics = model.update(batch)
    assert all(math.isfinite(v) for v in metrics.values())
    out = model.imagine(frames[0], batch["actions"], binary=True)
    assert out["frames"].shape == (3, 3, 2, 10, 10)


# ---------------------------------------------------------------------------------------------- PixelCNN
def test_pixelcnn_shapes_and_errors():
    torch.manual_seed(0)
    prior = PixelCNNPrior(8, (4, 5), channels=16, layers=3)
    codes = torch.randint(0, 8, (3, 4, 5))
    assert prior.logits(codes).shape == (3, 8, 4, 5)
    assert prior.log_prob(codes).shape == (3,)
    assert torch.allclose(prior.loss(codes), -prior.log_prob(codes).mean() / 20, atol=1e-5)
    with pytest.raises(RlmError, match="codes must lie"):
        prior.logits(torch.full((1, 4, 5), 8))
    with pytest.raises(RlmError, match="codes must be"):
        prior.logits(torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(RlmError, match="temperature"):
        prior.sample(2, temperature=0.0)
    with pytest.raises(RlmError, match="kernel"):
        PixelCNNPrior(8, (4, 4), kernel=4)


@pytest.mark.parametrize("grid, layers", [((5, 5), 5), ((3, 6), 5)])
def test_pixelcnn_is_causal_without_blind_spot(grid, layers):
    torch.manual_seed(0)
    prior = PixelCNNPrior(6, grid, channels=16, layers=layers).eval()
    h, w = grid
    codes = torch.randint(0, 6, (1, h, w))
    base = prior.logits(codes)[0].flatten(1)  # [K, h*w], raster order
    for p in range(h * w):
        other = codes.clone().view(1, -1)
        other[0, p] = (other[0, p] + 1) % 6
        changed = (prior.logits(other.view(1, h, w))[0].flatten(1) != base).any(0)
        assert not changed[: p + 1].any(), f"position {p} leaks into positions {changed[: p + 1].nonzero().tolist()}"
        if p < h * w - 1:
            assert changed[-1], f"the last cell never sees position {p} (blind spot)"


def test_pixelcnn_mask_survives_training():
    """The masks multiply the weights in every forward, so optimiser steps cannot open a leak."""
    torch.manual_seed(0)
    prior = PixelCNNPrior(4, (3, 3), channels=8, layers=2)
    opt = torch.optim.SGD(prior.parameters(), lr=1.0)
    codes = torch.randint(0, 4, (4, 3, 3))
    prior.loss(codes).backward()
    opt.step()
    x = torch.randint(0, 4, (1, 3, 3))
    y = x.clone()
    y[0, 1, 1] = (y[0, 1, 1] + 1) % 4
    assert torch.equal(prior.logits(x)[..., :1, :], prior.logits(y)[..., :1, :])
    assert torch.equal(prior.logits(x)[..., 1, :2], prior.logits(y)[..., 1, :2])
    assert torch.equal(prior.logits(x)[..., 1, 1], prior.logits(y)[..., 1, 1])


@pytest.fixture(scope="module")
def trained_prior():
    """A PixelCNN after 200 Adam steps on 4x4 grids of 8 codes with shifted-row structure."""
    grid, k = (4, 4), 8
    g = torch.Generator().manual_seed(0)
    data = shifted_rows(2048, k, grid, g)
    torch.manual_seed(0)
    prior = PixelCNNPrior(k, grid, channels=16, layers=4)
    opt = torch.optim.Adam(prior.parameters(), 1e-2)
    losses = []
    for _ in range(200):
        loss = prior.loss(data[torch.randint(0, len(data), (32,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return prior.eval(), losses


def test_pixelcnn_learns_structure(trained_prior):
    prior, losses = trained_prior
    k, (h, w) = prior.num_codes, prior.grid
    floor = math.log(k) / h  # only the first row is random
    assert losses[0] > 0.9 * math.log(k)
    with torch.no_grad():
        held_out = shifted_rows(256, k, prior.grid, torch.Generator().manual_seed(1))
        loss = float(prior.loss(held_out))
        assert loss < floor + 0.05 * (math.log(k) - floor), (loss, floor)
        samples = prior.sample(64, generator=torch.Generator().manual_seed(0))
        assert is_shifted(samples).float().mean() > 0.85
        # the first row stays diverse: no mode collapse
        assert samples[:, 0].unique().numel() == k
        random = torch.randint(0, k, (256, h, w), generator=torch.Generator().manual_seed(2))
        assert (prior.log_prob(held_out) > prior.log_prob(random)).float().mean() > 0.99


def test_pixelcnn_sampling_is_seeded(trained_prior):
    prior, _ = trained_prior
    a = prior.sample(16, generator=torch.Generator().manual_seed(3))
    b = prior.sample(16, generator=torch.Generator().manual_seed(3))
    c = prior.sample(16, generator=torch.Generator().manual_seed(4))
    assert a.dtype == torch.long and a.shape == (16, *prior.grid)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert prior.sample(0).shape == (0, *prior.grid)


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_pixelcnn_samples_follow_the_tempered_model(temperature):
    """The first cell sees nothing: its draws must follow ``softmax(logits / temperature)``."""
    torch.manual_seed(0)
    prior = PixelCNNPrior(4, (1, 2), channels=8, layers=1).eval()
    with torch.no_grad():
        prior.head[-1].bias.copy_(torch.tensor([1.5, 0.5, 0.0, -1.0]))
        probs = torch.softmax(prior.logits(torch.zeros(1, 1, 2, dtype=torch.long))[0, :, 0, 0] / temperature, 0)
    draws = prior.sample(4000, temperature=temperature, generator=torch.Generator().manual_seed(0))
    freq = draws[:, 0, 0].bincount(minlength=4).float() / 4000
    assert (freq - probs).abs().max() < 0.03, (freq, probs)


def test_pixelcnn_prior_over_vq_codes(trained_vq):
    """Fit the prior to the trained codec's code grids; sampled grids decode to frames."""
    codec, x, _ = trained_vq
    codes = codec.codes(x)
    torch.manual_seed(0)
    prior = PixelCNNPrior(codec.num_codes, codec.grid, channels=16, layers=3)
    opt = torch.optim.Adam(prior.parameters(), 1e-2)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        first = float(prior.loss(codes))
    for _ in range(40):
        loss = prior.loss(codes[torch.randint(0, len(codes), (32,), generator=g)])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(prior.loss(codes)) < 0.5 * first, first
    shuffled = codes.flatten(1)[:, torch.randperm(codes[0].numel())].view_as(codes)
    assert prior.log_prob(codes).mean() > prior.log_prob(shuffled).mean()
    sampled = prior.sample(4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        frames = torch.sigmoid(codec.decode_codes(sampled))
    assert frames.shape == (4, 2, 10, 10) and ((frames >= 0) & (frames <= 1)).all()
