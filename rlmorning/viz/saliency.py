"""Perturbation saliency (Greydanus et al. 2018, "Visualizing and Understanding Atari Agents").

For every point (i, j) of a grid with stride ``stride`` over the ``H x W`` input frames, the input is
blurred locally: ``I' = I * (1 - M) + blur(I) * M`` with ``M`` a Gaussian mask (``sigma``) centred at
(i, j) and ``blur`` a Gaussian blur (``blur_sigma``) of the whole stack (all stacked frames are
perturbed at the same place). The saliency of the point is ``0.5 * ||Q(I) - Q(I')||^2`` over all
actions (or over V = max Q). The grid values are spread back onto the frame with the same Gaussian
masks. All perturbed inputs of one state go through ``agent.q_values`` in one batch: with stride 5 on
84x84 that is 17 x 17 = 289 forward passes per computed frame.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import cv2
import numpy as np
import torch

QFn = Callable[[np.ndarray], "torch.Tensor | None"]


@lru_cache(maxsize=4)
def gaussian_masks(height: int, width: int, stride: int, sigma: float) -> np.ndarray:
    """``float32 [N, H, W]`` Gaussian masks centred on the grid ``range(0, H, stride) x range(0, W, stride)``."""
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    masks = [np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * sigma**2))
             for cy in range(0, height, stride) for cx in range(0, width, stride)]
    return np.stack(masks).astype(np.float32)


def default_params(height: int, width: int) -> tuple[int, float, float]:
    """Grid stride, mask sigma and blur sigma: 5, 5, 3 pixels at 84x84, scaled with the frame size."""
    f = min(height, width) / 84.0
    return max(1, round(5 * f)), max(0.5, 5.0 * f), max(0.5, 3.0 * f)


def perturbation_saliency(q_fn: QFn, obs: np.ndarray, stride: int | None = None, sigma: float | None = None,
                          blur_sigma: float | None = None, target: str = "q", batch: int = 512) -> np.ndarray:
    """Saliency map ``float32 [H, W]`` of one observation ``[C, H, W]`` (uint8 frames or floats).

    ``target`` ``q`` compares all actions' Q-values, ``v`` only max-Q. ``stride``, ``sigma`` and
    ``blur_sigma`` default to 5, 5 and 3 pixels at 84x84 (Greydanus et al.), scaled with the frame size.
    """
    if obs.ndim != 3:
        raise ValueError(f"saliency needs image observations [C, H, W], got shape {obs.shape}")
    c, h, w = obs.shape
    d_stride, d_sigma, d_blur = default_params(h, w)
    stride, sigma, blur_sigma = stride or d_stride, sigma or d_sigma, blur_sigma or d_blur
    x = obs.astype(np.float32)
    blurred = np.stack([cv2.GaussianBlur(x[i], (0, 0), blur_sigma) for i in range(c)])
    masks = gaussian_masks(h, w, stride, sigma)
    base = q_fn(obs[None])
    if base is None:
        raise ValueError("saliency needs an agent with Q-values")
    base_q = base.float().cpu().numpy()[0]
    scores = []
    for start in range(0, len(masks), batch):
        m = masks[start : start + batch][:, None]  # [n, 1, H, W]
        pert = x[None] * (1.0 - m) + blurred[None] * m
        if np.issubdtype(obs.dtype, np.integer):
            pert = np.clip(np.rint(pert), np.iinfo(obs.dtype).min, np.iinfo(obs.dtype).max)
        q = q_fn(pert.astype(obs.dtype)).float().cpu().numpy()
        if target == "v":
            d = q.max(axis=1) - base_q.max()
            scores.append(0.5 * d**2)
        else:
            scores.append(0.5 * ((q - base_q[None]) ** 2).sum(axis=1))
    s = np.concatenate(scores).astype(np.float32)
    return (np.tensordot(s, masks, axes=1) / np.maximum(masks.sum(axis=0), 1e-6)).astype(np.float32)


def overlay_heatmap(frame: np.ndarray, saliency: np.ndarray, vmax: float, alpha: float = 0.65) -> np.ndarray:
    """Blend a saliency map (any size; resized to the frame) onto an RGB frame as a heatmap.

    Values are divided by ``vmax`` (e.g. the episode's running maximum); opacity grows with saliency.
    """
    h, w = frame.shape[:2]
    heat = np.clip(saliency / max(vmax, 1e-12), 0.0, 1.0).astype(np.float32)
    heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    color = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1].astype(np.float32)
    a = (alpha * heat)[..., None]
    return np.clip(frame.astype(np.float32) * (1 - a) + color * a, 0, 255).astype(np.uint8)
