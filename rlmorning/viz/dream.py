"""``rlmorning dream``: a world model's open-loop dream beside reality, as an MP4.

One video frame per time step ``t = 0..H``, three rows: the real frame, the model's prediction from the
same start frame with the same (uniformly random) actions, and their per-cell difference. Frame 0 is the
observed start (green border on every row); every later frame is imagined (orange border on the model
and difference rows). Planes are coloured with the palette of :func:`rlmorning.viz.rollout.draw_observation`;
predicted planes are drawn with their probabilities as intensity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from rlmorning import envs as envs_mod
from rlmorning.errors import RlmError
from rlmorning.viz.rollout import _PALETTE
from rlmorning.viz.video import VideoWriter

OBSERVED = (60, 200, 80)
IMAGINED = (250, 150, 30)
BORDER = 4
LABEL_W = 70


def planes_to_rgb(planes: np.ndarray, scale: int = 16) -> np.ndarray:
    """``[C, H, W]`` planes in [0, 1] (or uint8 0/1) -> RGB ``[H*scale, W*scale, 3]``; overlapping planes
    take the strongest colour."""
    p = np.clip(np.asarray(planes, dtype=np.float32), 0.0, 1.0)
    colours = _PALETTE[np.arange(p.shape[0]) % len(_PALETTE)].astype(np.float32)  # [C, 3]
    img = (p[..., None] * colours[:, None, None, :]).max(axis=0)
    img = img.astype(np.uint8)
    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def diff_to_rgb(real: np.ndarray, pred: np.ndarray, scale: int = 16) -> np.ndarray:
    """Per-cell error ``max_c |real - pred|`` as a white-on-black map."""
    err = np.abs(np.asarray(real, np.float32) - np.asarray(pred, np.float32)).max(axis=0)
    img = np.repeat((np.clip(err, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)
    return cv2.resize(img, (img.shape[1] * scale, img.shape[0] * scale), interpolation=cv2.INTER_NEAREST)


def _tile(img: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    return cv2.copyMakeBorder(img, BORDER, BORDER, BORDER, BORDER, cv2.BORDER_CONSTANT, value=colour)


def _label(text: str, height: int) -> np.ndarray:
    strip = np.full((height, LABEL_W, 3), 20, np.uint8)
    cv2.putText(strip, text, (6, height // 2 + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return strip


def compose(real: np.ndarray, pred: np.ndarray, t: int, observed: bool, scale: int = 16) -> np.ndarray:
    """One video frame: rows real / model / |diff| with borders and a header (step, observed/imagined)."""
    colour = OBSERVED if observed else IMAGINED
    rows = [("real", _tile(planes_to_rgb(real, scale), OBSERVED)),
            ("model", _tile(planes_to_rgb(pred, scale), colour)),
            ("|diff|", _tile(diff_to_rgb(real, pred, scale), colour))]
    body = np.concatenate([np.concatenate([_label(name, tile.shape[0]), tile], axis=1) for name, tile in rows])
    header = np.full((24, body.shape[1], 3), 20, np.uint8)
    text = f"t={t} {'observed' if observed else 'imagined'}"
    cv2.putText(header, text, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.concatenate([header, body])


def real_rollout(env: Any, horizon: int, num_actions: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Play uniformly random actions for up to ``horizon`` steps: ``(frames [T+1, C, H, W], actions [T])``."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames, actions = [np.asarray(obs)], []
    for _ in range(horizon):
        a = int(rng.integers(0, num_actions))
        obs, _, terminated, truncated, _ = env.step(a)
        frames.append(np.asarray(obs))
        actions.append(a)
        if terminated or truncated:
            break
    return np.stack(frames), np.asarray(actions, np.int64)


def dream(run: str | Path, *, horizon: int = 50, out: str | Path | None = None, seed: int = 0,
          checkpoint: str = "latest", fps: int = 8, device: str = "cpu", scale: int = 16) -> dict[str, Any]:
    """Write the dream video of a ``worldmodel`` run; returns ``{"video": path, "frames": n, "steps": T}``.

    The real episode may end before ``horizon``: the video then has ``T + 1 < horizon + 1`` frames.
    """
    from rlmorning.api import load_agent

    if horizon < 1:
        raise RlmError(f"--horizon must be >= 1, got {horizon}")
    if fps < 1:
        raise RlmError(f"--fps must be >= 1, got {fps}")
    run = Path(run)
    agent, cfg = load_agent(run, checkpoint, device)
    model = getattr(agent, "model", None)
    if model is None or not hasattr(model, "imagine"):
        raise RlmError(f"'{run}' is a {cfg.agent} run; dream needs a worldmodel run")
    info = envs_mod.resolve(cfg.env)
    env = envs_mod.make_eval(info, seed, **dict(cfg.trainer.env_kwargs))
    try:
        frames, actions = real_rollout(env, horizon, model.num_actions, seed)
    finally:
        env.close()
    steps = len(actions)
    if steps:
        pred = model.imagine(frames[:1], torch.as_tensor(actions[:, None]))["frames"][:, 0].cpu().numpy()
    else:
        pred = np.zeros((0, *frames.shape[1:]), np.float32)
    scale_in = model.input_scale
    real_f = frames.astype(np.float32) * scale_in
    if out is None:
        out_path = run / "videos" / f"dream-{checkpoint}-seed{seed}-h{horizon}.mp4"
    else:
        out_path = Path(out)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RlmError(f"cannot write '{out_path.parent}': {exc.strerror or exc}") from None
    writer = VideoWriter(out_path, fps)
    try:
        writer.write(compose(real_f[0], real_f[0], 0, observed=True, scale=scale))
        for t in range(1, steps + 1):
            writer.write(compose(real_f[t], pred[t - 1], t, observed=False, scale=scale))
    finally:
        writer.close()
    return {"video": out_path, "frames": writer.frames, "steps": steps}
