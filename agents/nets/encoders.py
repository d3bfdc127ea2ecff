"""Observation encoders: map a batch of observations to feature vectors.

Every encoder takes ``obs [B, *obs_shape]`` (uint8 frames are scaled inside by ``input_scale``) and
returns ``float [B, out_dim]``. Select with the ``encoder`` config key; ``auto`` picks ``nature`` for
Atari-sized frames, ``minatar`` for small frames and ``mlp`` for vectors.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
from torch import nn

from rlmorning.agents.nets.options import check_image_shape, positive_int, positive_ints
from rlmorning.errors import RlmError
from rlmorning.registry import Registry

ENCODERS: Registry[Callable[..., nn.Module]] = Registry("encoder")


class Encoder(nn.Module):
    """Base: scales inputs and records ``out_dim``."""

    out_dim: int

    def __init__(self, input_scale: float = 1.0) -> None:
        super().__init__()
        self.input_scale = float(input_scale)

    def scale(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float()
        return x * self.input_scale if self.input_scale != 1.0 else x


def _flat_dim(body: nn.Module, obs_shape: Sequence[int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *obs_shape)).flatten(1).shape[1])


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow/Flax ``SAME`` padding of one axis: output ``ceil(size / stride)``, the odd pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def nature_conv_stack(channels: int, size: tuple[int, int], padding: str = "valid") -> nn.Sequential:
    """The Nature CNN's three conv layers + flatten. ``padding``: ``valid`` (Mnih et al. 2015: 84 -> 7x7x64)
    or ``same`` (TensorFlow/Flax SAME, as Dopamine's Rainbow/DrQ network: 84 -> 11x11x64)."""
    if padding not in ("valid", "same"):
        raise RlmError(f"encoder option 'padding' must be 'valid' or 'same', got '{padding}'")
    layers: list[nn.Module] = []
    h, w = size
    for c_in, c_out, k, s in ((channels, 32, 8, 4), (32, 64, 4, 2), (64, 64, 3, 1)):
        pad = (0, 0, 0, 0)
        if padding == "same":
            (top, bottom), (left, right) = same_padding(h, k, s), same_padding(w, k, s)
            pad = (left, right, top, bottom)
        if pad[0] == pad[1] == pad[2] == pad[3]:  # symmetric: the conv pads (no extra copy)
            layers.append(nn.Conv2d(c_in, c_out, k, stride=s, padding=pad[0]))
        else:
            layers += [nn.ZeroPad2d(pad), nn.Conv2d(c_in, c_out, k, stride=s)]
        layers.append(nn.ReLU())
        h, w = (h + pad[2] + pad[3] - k) // s + 1, (w + pad[0] + pad[1] - k) // s + 1
    return nn.Sequential(*layers, nn.Flatten())


@ENCODERS.register("nature", "Mnih et al. 2015: 3 conv layers (32-64-64) + FC 512")
class NatureEncoder(Encoder):
    """The DQN Nature CNN: conv 8x8/4 (32), 4x4/2 (64), 3x3/1 (64), FC ``hidden`` (512), ReLU.

    ``padding='same'`` pads each conv as TensorFlow/Flax ``SAME`` does (Dopamine's network for Rainbow and
    DrQ: 11x11x64 features from 84x84 frames instead of 7x7x64)."""

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0, hidden: int = 512,
                 padding: str = "valid") -> None:
        super().__init__(input_scale)
        _, h, w = check_image_shape("nature", obs_shape)
        if h < 36 or w < 36:
            raise RlmError(f"encoder 'nature' needs frames of at least 36x36, got {tuple(obs_shape)}")
        hidden = positive_int("nature", "hidden", hidden)
        self.conv = nature_conv_stack(obs_shape[0], (obs_shape[1], obs_shape[2]), padding)
        self.fc = nn.Sequential(nn.Linear(_flat_dim(self.conv, obs_shape), hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.scale(obs)))


@ENCODERS.register("minatar", "Young & Tian 2019: conv 3x3 (16) + FC 128, for 10x10 frames")
class MinAtarEncoder(Encoder):
    """The MinAtar paper's DQN network body: one 3x3 conv (16 channels, stride 1) and FC 128."""

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0, hidden: int = 128,
                 channels: int = 16) -> None:
        super().__init__(input_scale)
        check_image_shape("minatar", obs_shape)
        hidden, channels = positive_int("minatar", "hidden", hidden), positive_int("minatar", "channels", channels)
        self.conv = nn.Sequential(nn.Conv2d(obs_shape[0], channels, 3, stride=1), nn.ReLU(), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(_flat_dim(self.conv, obs_shape), hidden), nn.ReLU())
        self.out_dim = hidden

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(self.scale(obs)))


@ENCODERS.register("mlp", "fully connected layers for vector observations (default 120-84, ReLU)")
class MLPEncoder(Encoder):
    """An MLP over the flattened observation."""

    def __init__(self, obs_shape: Sequence[int], input_scale: float = 1.0,
                 hidden: Sequence[int] = (120, 84)) -> None:
        super().__init__(input_scale)
        hidden = positive_ints("mlp", "hidden", hidden) if hidden != [] else []  # [] : a linear Q-function
        layers: list[nn.Module] = [nn.Flatten()]
        size = 1
        for d in obs_shape:
            size *= int(d)
        for h in hidden:
            layers += [nn.Linear(size, int(h)), nn.ReLU()]
            size = int(h)
        self.net = nn.Sequential(*layers)
        self.out_dim = size

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(self.scale(obs))


def auto_encoder_name(obs_shape: Sequence[int]) -> str:
    """The default encoder for an observation shape."""
    if len(obs_shape) == 3:
        return "nature" if min(obs_shape[1:]) >= 36 else "minatar"
    return "mlp"


def make_encoder(name: str, obs_shape: Sequence[int], input_scale: float = 1.0, **kwargs: object) -> Encoder:
    """Build encoder ``name`` (or ``auto``) for ``obs_shape``; bad names/options give one-line errors."""
    if name == "auto":
        name = auto_encoder_name(obs_shape)
    factory = ENCODERS.get(name)
    params = inspect.signature(factory).parameters
    options = [k for k, p in params.items() if k not in ("self", "obs_shape", "input_scale")
               and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    open_ended = any(p.kind == p.VAR_KEYWORD for p in params.values())
    unknown = [] if open_ended else sorted(set(kwargs) - set(options))
    if unknown:
        raise RlmError(f"encoder '{name}' has no option {', '.join(map(repr, unknown))}; its encoder_kwargs: "
                       f"{', '.join(options) or 'none'}")
    try:
        return factory(obs_shape, input_scale=input_scale, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RlmError(f"bad encoder_kwargs for encoder '{name}': {exc}") from None


# More conv encoders (impala, densenet, inception, deformable) register themselves on import.
from rlmorning.agents.nets import conv_blocks as _conv_blocks  # noqa: E402,F401
from rlmorning.agents.nets import deformable as _deformable  # noqa: E402,F401
