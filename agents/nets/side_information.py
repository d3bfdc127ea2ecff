"""Learning with side information: a RAM teacher and a hallucination branch for pixel encoders.

Hoffman, Gupta & Darrell, "Learning with Side Information through Modality Hallucination" (CVPR 2016)
train a *hallucination* network on RGB images to reproduce the mid-level features of a network that sees
depth, a modality available only in training; at test time the RGB networks run alone. Here the side
modality is the Atari console RAM (128 bytes, the exact game state; available from
:mod:`rlmorning.envs.atari_python` in training only):

* :class:`RamEncoder` + :class:`RamQNetwork` -- the *teacher*: an MLP over the RAM with a Q head, trained
  with the same Q-learning loss as the pixel network (its own target network, same actions and rewards);
* :class:`HallucinationBranch` -- from the pixel encoder's last conv feature map to the teacher's feature
  size; :func:`hallucination_loss` pulls it to the teacher's features (detached: the teacher learns from
  its Q-loss only, the pixels follow it);
* the pixel Q-network acts alone; the branch shapes its conv features and is dropped at test time.

:func:`spatial_features` / :func:`encode_with_map` give the last conv feature map ``[B, C, H, W]`` of the
encoders in :mod:`rlmorning.agents.nets.encoders` (nature, impala, deformable, densenet, inception,
minatar) without changing them; the YOLO head (:mod:`rlmorning.agents.nets.yolo`) reads the same map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.errors import RlmError

RAM_BYTES = 128
RAM_INPUTS = ("bits", "bytes")


# ------------------------------------------------------------------------------------------ feature maps
def _conv_trunk(encoder: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(the modules from the scaled input to the last conv map, the FC that reads the flattened map)."""
    fc = getattr(encoder, "fc", None)
    for name in ("conv", "body"):  # nature, minatar, deformable (conv); densenet, inception (body)
        seq = getattr(encoder, name, None)
        if isinstance(seq, nn.Sequential) and len(seq) and isinstance(seq[-1], nn.Flatten) and fc is not None:
            return seq[:-1], fc
    stages, head = getattr(encoder, "stages", None), getattr(encoder, "head", None)
    if (isinstance(stages, nn.Module) and isinstance(head, nn.Sequential) and len(head) == 2
            and isinstance(head[1], nn.Flatten) and fc is not None):  # impala: stages -> ReLU -> Flatten -> fc
        return nn.Sequential(stages, head[0]), fc
    raise RlmError(
        f"encoder {type(encoder).__name__} has no spatial feature map: it needs a method "
        "'feature_map(obs) -> [B, C, H, W]' and 'fc' reading the flattened map, or a 'conv'/'body' "
        "nn.Sequential ending in nn.Flatten followed by 'fc'"
    )


def spatial_features(encoder: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """The encoder's last conv feature map ``[B, C, H, W]`` (after its ReLU) for ``obs [B, *obs_shape]``.

    Uses ``encoder.feature_map(obs)`` when the encoder defines it; otherwise the structure the
    rlmorning conv encoders share (see :func:`encode_with_map`).
    """
    if hasattr(encoder, "feature_map"):
        return encoder.feature_map(obs)
    trunk, _ = _conv_trunk(encoder)
    return trunk(encoder.scale(obs))


def encode_with_map(encoder: nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(encoder(obs) [B, out_dim], feature map [B, C, H, W])`` from one pass through the convs.

    Equal to ``encoder(obs)`` for nature/minatar/deformable (``fc(conv(x))`` with ``conv`` ending in
    Flatten), densenet/inception (``fc(body(x))``) and impala (``fc(flatten(relu(stages(x))))``).
    """
    if hasattr(encoder, "feature_map"):
        fmap = encoder.feature_map(obs)
        return encoder.fc(fmap.flatten(1)), fmap
    trunk, fc = _conv_trunk(encoder)
    fmap = trunk(encoder.scale(obs))
    return fc(fmap.flatten(1)), fmap


def feature_map_shape(encoder: nn.Module, obs_shape: Sequence[int]) -> tuple[int, int, int]:
    """``(C, H, W)`` of :func:`spatial_features` for one observation of ``obs_shape``."""
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            out = spatial_features(encoder, torch.zeros(1, *obs_shape))
    finally:
        encoder.train(was_training)
    return tuple(int(d) for d in out.shape[1:])  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- RAM teacher
def ram_to_input(ram: torch.Tensor, mode: str = "bits") -> torch.Tensor:
    """``uint8 [B, 128]`` RAM -> float inputs: ``bits`` ``[B, 1024]`` in {0, 1} (bit 7 first) or ``bytes``
    ``[B, 128]`` = byte / 255."""
    if mode not in RAM_INPUTS:
        raise RlmError(f"RAM input must be one of {', '.join(RAM_INPUTS)}, got {mode!r}")
    if ram.shape[-1] != RAM_BYTES:
        raise RlmError(f"RAM must have {RAM_BYTES} bytes in its last dimension, got shape {tuple(ram.shape)}")
    if mode == "bytes":
        return ram.float() / 255.0
    shifts = torch.arange(7, -1, -1, device=ram.device, dtype=torch.int32)
    bits = (ram.to(torch.int32).unsqueeze(-1) >> shifts) & 1
    return bits.flatten(-2).float()


class RamEncoder(nn.Module):
    """MLP over the console RAM: ``uint8 [B, 128]`` -> ``float [B, out_dim]`` (ReLU features).

    ``input="bits"`` (default) feeds the 1,024 bits as binary inputs, ``"bytes"`` the 128 bytes scaled
    to [0, 1]. Bits are the default because most RAM bytes are not quantities: they are flag sets (one
    bit per brick row, sprite direction, game mode), BCD score digits and pointers, and as one scalar a
    low bit moves the input by 1/255, which a first linear layer can barely separate from noise; as
    bits every flag is its own input, and positions stay readable (their bits carry the value exactly).
    ``bytes`` suits RAM whose bytes are mostly coordinates and costs 8x fewer first-layer weights.
    """

    def __init__(self, hidden: Sequence[int] = (512, 512), input: str = "bits") -> None:
        super().__init__()
        if input not in RAM_INPUTS:
            raise RlmError(f"RamEncoder input must be one of {', '.join(RAM_INPUTS)}, got {input!r}")
        if not hidden or not all(isinstance(h, int) and h > 0 for h in hidden):
            raise RlmError(f"RamEncoder hidden must be a non-empty list of positive integers, got {hidden!r}")
        self.input = input
        size = RAM_BYTES * 8 if input == "bits" else RAM_BYTES
        layers: list[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(size, int(h)), nn.ReLU()]
            size = int(h)
        self.net = nn.Sequential(*layers)
        self.out_dim = size

    def forward(self, ram: torch.Tensor) -> torch.Tensor:
        return self.net(ram_to_input(ram, self.input))


class RamQNetwork(nn.Module):
    """The teacher Q-network: :class:`RamEncoder` + a linear Q head. ``forward(ram) -> (q [B, A], features)``."""

    def __init__(self, num_actions: int, hidden: Sequence[int] = (512, 512), input: str = "bits") -> None:
        super().__init__()
        self.encoder = RamEncoder(hidden, input)
        self.head = nn.Linear(self.encoder.out_dim, num_actions)
        self.out_dim = self.encoder.out_dim

    def forward(self, ram: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(ram)
        return self.head(features), features


# --------------------------------------------------------------------------------------- hallucination
class HallucinationBranch(nn.Module):
    """Pixel feature map ``[B, C, H, W]`` -> hallucinated teacher features ``[B, out_dim]``.

    A 3x3 conv (``channels``, padding 1) + ReLU, flattened, then a linear layer to ``out_dim`` (the
    teacher's feature size) + ReLU, so its outputs live where the teacher's ReLU features do. It branches
    off the shared conv trunk, as the paper's hallucination network shares the RGB input and is joined
    to the RGB network by the detection loss; here the shared trunk is the pixel Q-network's convs.
    """

    def __init__(self, map_shape: Sequence[int], out_dim: int, channels: int = 64) -> None:
        super().__init__()
        c, h, w = (int(d) for d in map_shape)
        self.conv = nn.Sequential(nn.Conv2d(c, channels, 3, padding=1), nn.ReLU())
        self.fc = nn.Sequential(nn.Linear(channels * h * w, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(fmap).flatten(1))


HALLUCINATION_LOSSES = ("sigmoid_l2", "l2")


def hallucination_loss(hallucinated: torch.Tensor, teacher: torch.Tensor, form: str = "sigmoid_l2") -> torch.Tensor:
    """The hallucination loss between student features ``[B, D]`` and teacher features ``[B, D]``.

    ``sigmoid_l2`` (the hallucination loss of Hoffman et al. 2016):
    ``|| sigmoid(teacher) - sigmoid(hallucinated) ||^2``, bounded, so large activations cannot dominate;
    ``l2``: ``|| teacher - hallucinated ||^2``. Summed over features, averaged over the batch. The teacher
    is detached: no gradient flows into it.
    """
    if form not in HALLUCINATION_LOSSES:
        raise RlmError(f"hallucination loss must be one of {', '.join(HALLUCINATION_LOSSES)}, got {form!r}")
    if hallucinated.shape != teacher.shape:
        raise RlmError(f"hallucinated features {tuple(hallucinated.shape)} and teacher features "
                       f"{tuple(teacher.shape)} differ in shape")
    target = teacher.detach()
    if form == "sigmoid_l2":
        hallucinated, target = torch.sigmoid(hallucinated), torch.sigmoid(target)
    return F.mse_loss(hallucinated, target, reduction="sum") / max(hallucinated.shape[0], 1)
