"""Stable-Baselines3 interop: any rlmorning encoder as an SB3 features extractor.

::

    from stable_baselines3 import DQN
    from rlmorning.agents.nets.sb3 import policy_kwargs

    model = DQN("CnnPolicy", env, policy_kwargs=policy_kwargs("impala", channels=[16, 32, 32]))

or by hand: ``policy_kwargs=dict(features_extractor_class=RlmorningExtractor,
features_extractor_kwargs=dict(encoder="impala"))``. SB3 divides uint8 image observations (bounds
0..255) by 255 before the extractor when the policy's ``normalize_images`` is True (its default), so the
encoder then runs with ``input_scale=1``; pass ``normalize_images=False`` here too if the policy has it
off, and the encoder scales uint8 images itself. Other observations (e.g. MinAtar's 0/1 planes) are not
scaled by either. stable-baselines3 is imported only when these are used.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import nn

from rlmorning.agents.nets.encoders import ENCODERS, auto_encoder_name, make_encoder
from rlmorning.errors import RlmError

__all__ = ["RlmorningExtractor", "encoder_input_scale", "features_extractor", "policy_kwargs"]  # noqa: F822

_CLASS: type | None = None


def _sb3() -> Any:
    try:
        import stable_baselines3.common.preprocessing as preprocessing
        import stable_baselines3.common.torch_layers as torch_layers
    except ImportError:
        raise RlmError("SB3 interop needs stable-baselines3: pip install stable-baselines3") from None
    return torch_layers, preprocessing


def encoder_input_scale(observation_space: Any, normalize_images: bool = True) -> float:
    """The ``input_scale`` the encoder needs after SB3's preprocessing of ``observation_space``.

    1 when SB3 already divided by 255 (an image space per SB3 and ``normalize_images``) or for anything
    that is not a uint8 image with values above 1; 1/255 for uint8 images SB3 leaves unscaled.
    """
    _, preprocessing = _sb3()
    if normalize_images and preprocessing.is_image_space(observation_space):
        return 1.0
    if getattr(observation_space, "dtype", None) == np.uint8 and float(np.max(observation_space.high)) > 1:
        return 1.0 / 255.0
    return 1.0


def _extractor_class() -> type:
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    torch_layers, _ = _sb3()

    class RlmorningExtractor(torch_layers.BaseFeaturesExtractor):
        """An rlmorning encoder (``encoder`` = a name from ``rlmorning encoders``) as an SB3 features extractor.

        ``features_dim``, if given, sets the encoder's final FC width (its ``hidden`` option) or, for encoders
        without an integer ``hidden``, adds a Linear + ReLU projection. ``normalize_images`` must match the
        policy's. Other keyword arguments are the encoder's options (``encoder_kwargs``).
        """

        def __init__(self, observation_space: Any, encoder: str = "nature", features_dim: int | None = None,
                     normalize_images: bool = True, **encoder_kwargs: Any) -> None:
            shape = tuple(getattr(observation_space, "shape", None) or ())
            if not shape:
                raise RlmError(f"rlmorning encoders need a Box observation space, got {observation_space}")
            scale = encoder_input_scale(observation_space, normalize_images)
            if encoder == "auto":
                encoder = auto_encoder_name(shape)
            kwargs = dict(encoder_kwargs)
            project = False
            if features_dim is not None:
                if not isinstance(features_dim, int) or features_dim < 1:
                    raise RlmError(f"features_dim must be a positive integer, got {features_dim!r}")
                hidden = inspect.signature(ENCODERS.get(encoder)).parameters.get("hidden")
                if "hidden" not in kwargs and hidden is not None and isinstance(hidden.default, int):
                    kwargs["hidden"] = features_dim
                else:
                    project = True
            enc = make_encoder(encoder, shape, input_scale=scale, **kwargs)
            out = features_dim if project else enc.out_dim
            super().__init__(observation_space, out)
            self.encoder = enc
            self.project = nn.Sequential(nn.Linear(enc.out_dim, out), nn.ReLU()) if project else nn.Identity()

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.project(self.encoder(observations))

    RlmorningExtractor.__module__ = __name__
    RlmorningExtractor.__qualname__ = "RlmorningExtractor"
    _CLASS = RlmorningExtractor
    return _CLASS


def __getattr__(name: str) -> Any:
    if name == "RlmorningExtractor":
        return _extractor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def features_extractor(name: str, observation_space: Any, features_dim: int | None = None,
                       normalize_images: bool = True, **encoder_kwargs: Any) -> nn.Module:
    """An SB3 ``BaseFeaturesExtractor`` running rlmorning encoder ``name`` on ``observation_space``."""
    return _extractor_class()(observation_space, encoder=name, features_dim=features_dim,
                              normalize_images=normalize_images, **encoder_kwargs)


def policy_kwargs(name: str, features_dim: int | None = None, normalize_images: bool = True,
                  **encoder_kwargs: Any) -> dict[str, Any]:
    """``policy_kwargs`` for any SB3 algorithm so that its policy uses rlmorning encoder ``name``."""
    if name != "auto":
        ENCODERS.get(name)  # unknown name -> one-line error now, not inside SB3
    kwargs: dict[str, Any] = {"encoder": name, "normalize_images": normalize_images, **encoder_kwargs}
    if features_dim is not None:
        kwargs["features_dim"] = features_dim
    return {"features_extractor_class": _extractor_class(), "features_extractor_kwargs": kwargs,
            "normalize_images": normalize_images}
