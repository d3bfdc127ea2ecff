"""``rlmorning dream``: a world model's open-loop dream beside reality, as an MP4.

Works for ``train worldmodel`` runs and Dyna-DQN runs (``dqn`` with a ``model:`` section). One video frame
per time step ``t = 0..H``, three rows: the real frame, the model's prediction from the
same start with the same (uniformly random) actions, and their per-cell difference. The first frames are
observed (green border on every row): frame 0, or frames 0..c-1 for a model trained with ``context`` c,
whose dynamics read them before imagining; every later frame is imagined (orange border on the model and
difference rows). Planes are coloured with the palette of :func:`rlmorning.viz.rollout.draw_observation`;
predicted planes are drawn with their probabilities as intensity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from rlmorning import envs as envs_mod
from rlmorning.agents.capabilities import HasWorldModel
from rlmorning.config import check_seed
from rlmorning.errors import RlmError
from rlmorning.outputs import output_file
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


def grey_to_rgb(frame: np.ndarray) -> np.ndarray:
    """A display-resolution grey frame ``[H, W]`` in [0, 1] -> RGB uint8."""
    return np.repeat((np.clip(frame, 0, 1) * 255).round().astype(np.uint8)[..., None], 3, axis=2)


def compose(real: np.ndarray, pred: np.ndarray, t: int, observed: bool, scale: int = 16,
            grey: bool = False) -> np.ndarray:
    """One video frame: rows real / model / |diff| with borders and a header (step, observed/imagined).

    ``grey``: ``real`` and ``pred`` are display-resolution grey frames ``[H, W]`` (already upsampled)."""
    colour = OBSERVED if observed else IMAGINED
    if grey:
        diff = grey_to_rgb(np.abs(real - pred))
        rows = [("real", _tile(grey_to_rgb(real), OBSERVED)), ("model", _tile(grey_to_rgb(pred), colour)),
                ("|diff|", _tile(diff, colour))]
    else:
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


UPSAMPLERS = ("nearest", "bicubic", "srcnn")
DISPLAY_SIZE = 256
"""Default display pixels of grey (ALE) frames."""


def world_model_of(agent: Any) -> Any:
    """The world model of a ``worldmodel`` run's agent or of a Dyna-DQN agent, else None."""
    return agent.world_model if isinstance(agent, HasWorldModel) else None


def screens(info: Any, env_kwargs: dict, steps: int, seed: int, size: int) -> np.ndarray:
    """Grey game screens ``[N, size, size]`` in [0, 1] (area-resized from the emulator's RGB screen) of a
    random-policy episode: the high-resolution targets an SRCNN learns to produce."""
    env = envs_mod.make_eval(info, seed, render_rgb=True, **env_kwargs)
    rng = np.random.default_rng(seed)
    out = []
    try:
        env.reset(seed=seed)
        for _ in range(steps):
            rgb = env.render()
            grey = cv2.cvtColor(np.asarray(rgb), cv2.COLOR_RGB2GRAY)
            out.append(cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA))
            _, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            if terminated or truncated:
                env.reset()
    finally:
        env.close()
    return np.stack(out).astype(np.float32) / 255.0


def fit_upsampler(info: Any, env_kwargs: dict, frame_hw: tuple[int, int], size: int, steps: int,
                  seed: int) -> tuple[Any, dict[str, float]]:
    """An SRCNN fitted on this env's screens (seeded), and its held-out PSNR next to bicubic's."""
    from rlmorning.agents.nets.srcnn import SRCNN, bicubic, fit_srcnn, psnr

    torch.manual_seed(seed)
    hi = torch.as_tensor(screens(info, env_kwargs, 400, seed + 1000, size))[:, None]
    train, held = hi[:320], hi[320:]
    # like the paper, train on sub-images: random crops of 1/4 the side (with the same upsampling factor)
    crop = max(8, size // 4)
    rng = np.random.default_rng(seed)
    ys, xs = rng.integers(0, size - crop + 1, (2, 4 * len(train)))
    idx = rng.integers(0, len(train), 4 * len(train))
    patches = torch.stack([train[i, :, y:y + crop, x:x + crop] for i, y, x in zip(idx, ys, xs, strict=True)])
    low_patch = (max(1, frame_hw[0] * crop // size), max(1, frame_hw[1] * crop // size))
    model = SRCNN(channels=1, f2=1)  # the paper's 9-1-5 network
    fit_srcnn(model, patches, low_patch, steps=steps, seed=seed)
    low = torch.nn.functional.interpolate(held, size=frame_hw, mode="area")
    with torch.no_grad():
        quality = {"psnr_srcnn": psnr(model.upsample(low, (size, size)), held),
                   "psnr_bicubic": psnr(bicubic(low, (size, size)), held)}
    return model, quality


def dream(run: str | Path, *, horizon: int = 50, out: str | Path | None = None, seed: int = 0,
          checkpoint: str = "latest", fps: int = 8, device: str = "cpu", scale: int = 16,
          upsample: str | None = None, display_size: int | None = None, srcnn_steps: int = 400) -> dict[str, Any]:
    """Write the dream video of a world-model run (``worldmodel`` or Dyna-DQN); returns ``{"video": path,
    "frames": n, "steps": T}`` (plus ``psnr_srcnn`` / ``psnr_bicubic`` with the SRCNN upsampler).

    The real episode may end before ``horizon``: the video then has ``T + 1 < horizon + 1`` frames.
    Grey (ALE) frames show the newest frame of the stack at ``display_size`` pixels (default 256), upsampled with
    ``upsample`` (``bicubic`` by default; ``srcnn`` fits an SRCNN on this game's screens first, seeded).
    MinAtar planes are drawn as coloured cells (``nearest`` only) of ``scale`` pixels, or sized so the planes span
    about ``display_size`` pixels when it is given.
    """
    from rlmorning.api import load_policy

    if horizon < 1:
        raise RlmError(f"--horizon must be >= 1, got {horizon}")
    if fps < 1:
        raise RlmError(f"--fps must be >= 1, got {fps}")
    if display_size is not None and display_size < 8:
        raise RlmError(f"--display-size must be >= 8 pixels, got {display_size}")
    check_seed("--seed", seed)
    out_path = output_file(out, (".mp4",), "dream.mp4") if out is not None else None  # before the rollout
    run = Path(run)
    if upsample is not None and upsample not in UPSAMPLERS:
        raise RlmError(f"unknown upsampler '{upsample}'. Valid: {', '.join(UPSAMPLERS)}")
    agent, cfg = load_policy(run, checkpoint, device)
    model = world_model_of(agent)
    if model is None:
        raise RlmError(f"'{run}' is a {cfg.agent} run without a world model; dream needs a worldmodel run or "
                       "a dqn run with a model: section (Dyna-DQN)")
    grey = model.input_scale != 1.0
    if not grey and upsample not in (None, "nearest"):
        raise RlmError(f"--upsample {upsample} is for grey (ALE) frames; MinAtar planes are drawn as cells")
    if not grey and display_size is not None:  # MinAtar: cells sized so the planes span about display_size
        scale = max(1, display_size // max(model.obs_shape[-2:]))
    display_size = display_size or DISPLAY_SIZE
    info = envs_mod.resolve(cfg.env)
    env = envs_mod.make_eval(info, seed, **dict(cfg.trainer.env_kwargs))
    try:
        frames, actions = real_rollout(env, horizon, model.num_actions, seed)
    finally:
        env.close()
    steps = len(actions)
    scale_in = model.input_scale
    real_f = frames.astype(np.float32) * scale_in
    context = min(model.context, steps + 1)  # observed frames 0..context-1 (the model's training context)
    pred = real_f[1:context]  # observed frames are shown as they are
    if steps >= context:
        acts = torch.as_tensor(actions[:, None])
        imagined = model.imagine(frames[:context, None], acts[context - 1:], past_actions=acts[:context - 1])
        pred = np.concatenate([pred, imagined["frames"][:, 0].cpu().numpy()])
    if out_path is None:
        out_path = output_file(run / "videos" / f"dream-{checkpoint}-seed{seed}-h{horizon}.mp4", (".mp4",),
                               "dream.mp4")
    extra: dict[str, Any] = {}
    if grey:
        size = (display_size, display_size)
        method = upsample or "bicubic"
        newest = np.concatenate([real_f[:, -1:], np.concatenate([real_f[:1, -1:], pred[:, -1:]])], axis=1)
        frames_t = torch.as_tensor(newest.reshape(-1, 1, *newest.shape[2:]), dtype=torch.float32)
        if method == "srcnn":
            sr, extra = fit_upsampler(info, dict(cfg.trainer.env_kwargs), tuple(frames_t.shape[2:]), display_size,
                                      srcnn_steps, seed)
            with torch.no_grad():
                big = sr.upsample(frames_t, size)
        else:
            mode = "nearest" if method == "nearest" else "bicubic"
            big = torch.nn.functional.interpolate(frames_t, size=size, mode=mode).clamp(0, 1)
        big = big.numpy().reshape(len(newest), 2, *size)
        real_show, pred_show = big[:, 0], big[:, 1]
    else:
        real_show, pred_show = real_f, np.concatenate([real_f[:1], pred])
    writer = VideoWriter(out_path, fps)
    try:
        writer.write(compose(real_show[0], real_show[0], 0, observed=True, scale=scale, grey=grey))
        for t in range(1, steps + 1):
            writer.write(compose(real_show[t], pred_show[t], t, observed=t < context, scale=scale, grey=grey))
    finally:
        writer.close()
    return {"video": out_path, "frames": writer.frames, "steps": steps, **extra}
