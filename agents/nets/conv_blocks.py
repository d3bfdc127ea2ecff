"""Convolutional encoders from the CNN family: IMPALA ResNet, DenseNet and Inception-style.

Each encoder maps ``obs [B, C, H, W]`` (uint8 frames scaled inside by ``input_scale``) to ``float
[B, out_dim]`` and works for Atari 84x84, 64x64 and MinAtar 10x10 frames. Downsampling adapts to the
frame size (see :func:`large_frames` and each class): large frames start with the Nature CNN's 8x8/4
stem, small frames (MinAtar) with a 3x3/1 padded conv, and pooling layers are skipped once the feature
map is small, so a 10x10 frame is never reduced to nothing.

Registered in :data:`rlmorning.agents.nets.encoders.ENCODERS` as ``impala``, ``densenet`` and
``inception``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from rlmorning.agents.nets.encoders import ENCODERS, Encoder
from rlmorning.agents.nets.options import check_image_shape, positive_int, positive_ints
from rlmorning.errors import RlmError

LARGE_FRAME_SIDE = 36
"""Frames at least this wide get the Nature CNN's 8x8/4 stem (the threshold of ``auto``)."""


def large_frames(obs_shape: Sequence[int]) -> bool:
    """True for Atari-sized frames (both sides >= 36), False for small ones such as MinAtar's 10x10."""
    return min(int(obs_shape[1]), int(obs_shape[2])) >= LARGE_FRAME_SIDE


def _out_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


class RLBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that uses batch statistics only in training-mode forward passes that record gradients.

    DQN-style agents call the network in train mode for acting (``inference_mode``), target values
    (``no_grad``) and learning. Plain BatchNorm would normalise an action's observation with the other
    observations of its batch (a batch of 1 when acting). Here only the learning forward pass uses (and
    updates) batch statistics; acting, evaluation and targets use the running averages, as ``eval()`` does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled():
            return super().forward(x)
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                                        False, 0.0, self.eps)


def make_norm(name: str, kind: object, channels: int) -> nn.Module:
    """``batch`` (:class:`RLBatchNorm2d`), ``group`` (GroupNorm, up to 8 groups) or ``none``."""
    if kind == "batch":
        return RLBatchNorm2d(channels)
    if kind == "group":
        groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
        return nn.GroupNorm(groups, channels)
    if kind == "none":
        return nn.Identity()
    raise RlmError(f"encoder '{name}' option 'norm' must be batch, group or none, got {kind!r}")


def stem(c: int, channels: int, large: bool) -> nn.Conv2d:
    """The first conv: 8x8 stride 4 (Nature CNN) on large frames, 3x3 stride 1 padding 1 on small ones."""
    if large:
        return nn.Conv2d(c, channels, 8, stride=4)
    return nn.Conv2d(c, channels, 3, stride=1, padding=1)


def stem_side(side: int, large: bool) -> int:
    return _out_side(side, 8, 4, 0) if large else side


# --------------------------------------------------------------------------------------------- IMPALA
class ResidualBlock(nn.Module):
    """IMPALA residual block: ``x + conv3x3(relu(conv3x3(relu(x))))`` (pre-activation, no norm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaStage(nn.Module):
    """conv 3x3 -> max-pool 3x3/2 (optional) -> ``blocks`` residual blocks."""

    def __init__(self, in_channels: int, channels: int, pool: bool, blocks: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1) if pool else nn.Identity()
        self.blocks = nn.Sequential(*(ResidualBlock(channels) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pool(self.conv(x)))


@ENCODERS.register("impala", "Espeholt et al. 2018: ResNet of 3 stages (conv, max-pool, 2 res blocks) + FC 256")
class ImpalaEncoder(Encoder):
    """The IMPALA "deep" network (Espeholt et al. 2018, Fig. 3).

    Each stage is conv 3x3 (16, 32, 32 channels) -> max-pool 3x3 stride 2 -> 2 residual blocks; then ReLU
    and FC ``hidden`` (256) with ReLU. ``pool="auto"`` pools a stage only while its input is at least 16
    pixels wide: 84x84 -> 42 -> 21 -> 11, 64x64 -> 32 -> 16 -> 8, MinAtar 10x10 keeps 10x10. ``pool`` may
    also be true/false or one bool per stage.
    """

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0,
                 channels: Sequence[int] = (16, 32, 32), hidden: int = 256, blocks: int = 2,
                 pool: str | bool | Sequence[bool] = "auto") -> None:
        super().__init__(input_scale)
        c, h, w = check_image_shape("impala", obs_shape)
        chans = positive_ints("impala", "channels", channels)
        hidden = positive_int("impala", "hidden", hidden)
        if not isinstance(blocks, int) or isinstance(blocks, bool) or blocks < 0:
            raise RlmError(f"encoder 'impala' option 'blocks' expects an integer >= 0, got {blocks!r}")
        pools = self._pools(pool, len(chans), min(h, w))
        stages, in_c = [], c
        for ch, p in zip(chans, pools, strict=True):
            stages.append(ImpalaStage(in_c, ch, p, blocks))
            in_c = ch
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.ReLU(), nn.Flatten())
        with torch.no_grad():
            flat = int(self.head(self.stages(torch.zeros(1, c, h, w))).shape[1])
        self.fc = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())
        self.out_dim = hidden

    @staticmethod
    def _pools(pool: object, n: int, side: int) -> list[bool]:
        if pool == "auto":
            out = []
            for _ in range(n):
                out.append(side >= 16)
                side = _out_side(side, 3, 2, 1) if out[-1] else side
            return out
        if isinstance(pool, bool):
            return [pool] * n
        if isinstance(pool, list | tuple) and len(pool) == n and all(isinstance(p, bool) for p in pool):
            return list(pool)
        raise RlmError(f"encoder 'impala' option 'pool' must be auto, true, false or {n} bools, got {pool!r}")

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.head(self.stages(self.scale(obs))))


class BodyFCEncoder(Encoder):
    """An encoder ``fc(body(x))``: a conv body ending in Flatten, then FC ``hidden`` with ReLU."""

    def _build(self, body: list[nn.Module], in_shape: tuple[int, int, int], hidden: int) -> None:
        """Set ``body`` (probed with one zero input for its flat width), ``fc`` and ``out_dim``."""
        self.body = nn.Sequential(*body)
        with torch.no_grad():
            flat = int(self.body(torch.zeros(1, *in_shape)).shape[1])
        self.fc = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(self.scale(obs)))


# ------------------------------------------------------------------------------------------- DenseNet
class DenseLayer(nn.Module):
    """norm -> ReLU -> conv 3x3 (``growth`` channels), optionally after a 1x1 bottleneck (DenseNet-BC);
    the output is concatenated to the input."""

    def __init__(self, name: str, in_channels: int, growth: int, bottleneck: bool, norm: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        if bottleneck:
            layers += [make_norm(name, norm, c), nn.ReLU(), nn.Conv2d(c, 4 * growth, 1, bias=False)]
            c = 4 * growth
        layers += [make_norm(name, norm, c), nn.ReLU(), nn.Conv2d(c, growth, 3, padding=1, bias=False)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


class Transition(nn.Module):
    """norm -> ReLU -> 1x1 conv (compression) -> 2x2 average pool (skipped on maps smaller than 8)."""

    def __init__(self, name: str, in_channels: int, out_channels: int, pool: bool, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            make_norm(name, norm, in_channels), nn.ReLU(), nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.AvgPool2d(2) if pool else nn.Identity(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@ENCODERS.register("densenet", "Huang et al. 2017: dense blocks (concatenation) + BN-1x1 conv-avg-pool transitions")
class DenseNetEncoder(BodyFCEncoder):
    """A small DenseNet (Huang et al. 2017).

    Stem conv (``2*growth`` channels; 8x8/4 on large frames, 3x3/1 on small ones), then dense blocks of
    ``layers`` (4, 4, 4) layers, each adding ``growth`` (12) channels by concatenation; between blocks a
    transition BN -> ReLU -> 1x1 conv (``compression`` 0.5) -> 2x2 average pool, the pool skipped once the
    map is smaller than 8 (84x84: 20 -> 10 -> 5; 64x64: 15 -> 7 -> 7; 10x10: 10 -> 5 -> 5). Final BN ->
    ReLU -> FC ``hidden`` (256) with ReLU. ``bottleneck=true`` adds DenseNet-BC's 1x1 convs;
    ``norm=group|none`` replaces BatchNorm (see :class:`RLBatchNorm2d` for how BatchNorm behaves in RL).
    """

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0, growth: int = 12,
                 layers: Sequence[int] = (4, 4, 4), compression: float = 0.5, bottleneck: bool = False,
                 hidden: int = 256, norm: str = "batch") -> None:
        super().__init__(input_scale)
        name = "densenet"
        c, h, w = check_image_shape(name, obs_shape)
        growth = positive_int(name, "growth", growth)
        blocks = positive_ints(name, "layers", layers)
        hidden = positive_int(name, "hidden", hidden)
        if not isinstance(compression, int | float) or not 0 < compression <= 1:
            raise RlmError(f"encoder 'densenet' option 'compression' must be in (0, 1], got {compression!r}")
        if not isinstance(bottleneck, bool):
            raise RlmError(f"encoder 'densenet' option 'bottleneck' expects true/false, got {bottleneck!r}")
        large = large_frames(obs_shape)
        ch = 2 * growth
        body: list[nn.Module] = [stem(c, ch, large)]
        side = stem_side(min(h, w), large)
        for i, n in enumerate(blocks):
            for _ in range(n):
                body.append(DenseLayer(name, ch, growth, bottleneck, norm))
                ch += growth
            if i < len(blocks) - 1:
                out = max(1, int(ch * compression))
                pool = side >= 8
                body.append(Transition(name, ch, out, pool, norm))
                ch, side = out, side // 2 if pool else side
        body += [make_norm(name, norm, ch), nn.ReLU(), nn.Flatten()]
        self._build(body, (c, h, w), hidden)


# ------------------------------------------------------------------------------------------ Inception
class InceptionBlock(nn.Module):
    """GoogLeNet's Inception module (Szegedy et al. 2015, Fig. 2b) at width ``w``.

    Four branches, concatenated: 1x1 (w); 1x1 reduce (w) -> 3x3 (2w); 1x1 reduce (w/2) -> 5x5 (w/2);
    3x3 max-pool -> 1x1 projection (w/2). Output ``4w`` channels, same spatial size; ReLU after every conv.
    """

    def __init__(self, in_channels: int, w: int) -> None:
        super().__init__()
        half = max(1, w // 2)

        def conv(i: int, o: int, k: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, k, padding=k // 2), nn.ReLU())

        self.b1 = conv(in_channels, w, 1)
        self.b3 = nn.Sequential(conv(in_channels, w, 1), conv(w, 2 * w, 3))
        self.b5 = nn.Sequential(conv(in_channels, half, 1), conv(half, half, 5))
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(in_channels, half, 1))
        self.out_channels = 3 * w + 2 * half

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


@ENCODERS.register("inception", "Szegedy et al. 2015: stem conv + small Inception blocks with 1x1 reductions")
class InceptionEncoder(BodyFCEncoder):
    """A small GoogLeNet-style encoder.

    Stem conv (``stem_channels`` 32; 8x8/4 on large frames, 3x3/1 on small ones) + ReLU, then one
    :class:`InceptionBlock` per entry of ``widths`` (16, 32 -> 64 and 128 channels), each followed by a
    3x3/2 max-pool while the map is at least 8 wide (84x84: 20 -> 10 -> 5; 64x64: 15 -> 8 -> 4; 10x10:
    10 -> 5 -> 5), then FC ``hidden`` (256) with ReLU.
    """

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0, widths: Sequence[int] = (16, 32),
                 stem_channels: int = 32, hidden: int = 256) -> None:
        super().__init__(input_scale)
        name = "inception"
        c, h, w = check_image_shape(name, obs_shape)
        widths = positive_ints(name, "widths", widths)
        stem_channels = positive_int(name, "stem_channels", stem_channels)
        hidden = positive_int(name, "hidden", hidden)
        large = large_frames(obs_shape)
        body: list[nn.Module] = [stem(c, stem_channels, large), nn.ReLU()]
        ch, side = stem_channels, stem_side(min(h, w), large)
        for width in widths:
            block = InceptionBlock(ch, width)
            body.append(block)
            ch = block.out_channels
            if side >= 8:
                body.append(nn.MaxPool2d(3, stride=2, padding=1))
                side = _out_side(side, 3, 2, 1)
        body.append(nn.Flatten())
        self._build(body, (c, h, w), hidden)
