"""``rlmorning record``: MP4 videos of evaluation episodes with a live Q-value panel and a JSON sidecar.

Envs that only render text (the algorithmic envs) are recorded as text logs or text videos instead: see
:mod:`rlmorning.viz.ansi`.

A video has one frame per state of the episode (``steps + 1`` frames: the last shows the final
screen and score). Frame ``t`` shows the screen of state ``t`` (upscaled by nearest neighbour), and
beside it the panel: Q-values of state ``t`` per action with the action taken highlighted, the score
and lives *before* that action's reward, and the max-Q trace of the last ~10 s of video. Videos are
H.264 with yuv420p pixels (plays in browsers), written by ffmpeg from ``imageio-ffmpeg``. With saliency,
a second video of the same episode without the heatmap (``<stem>-off.mp4``) lets a player switch it off.
"""

from __future__ import annotations

import json
import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlmorning.errors import RlmError
from rlmorning.outputs import writable_folder
from rlmorning.viz import ansi
from rlmorning.viz.media import VideoWriter, mp4_to_gif, progress_bar, video_stem
from rlmorning.viz.panel import QRange, auto_scale, draw_panel, fmt_score, upscale
from rlmorning.viz.rollout import DEFAULT_SEED, EpisodeLog, load_source, play
from rlmorning.viz.source import PolicySource

if TYPE_CHECKING:
    from rlmorning.viz.objects import ObjectOverlay

__all__ = ["SIDECAR_FORMAT", "VideoWriter", "mp4_to_gif", "print_paths", "progress_bar", "record",
           "record_episode", "video_stem"]

SIDECAR_FORMAT = 1
TRACE_SECONDS = 10.0


def record_episode(
    src: PolicySource,
    seed: int,
    out_dir: Path,
    *,
    fps: int = 30,
    max_steps: int | None = None,
    overlay: bool = True,
    gif: bool = False,
    saliency: bool = False,
    saliency_every: int = 4,
    saliency_stride: int | None = None,
    scale: int | None = None,
    advance: Callable[..., None] | None = None,
    objects: ObjectOverlay | None = None,
) -> dict[str, Path]:
    """Record one episode: writes ``<stem>.mp4``, ``<stem>.json`` (sidecar) and optionally ``<stem>.gif``.

    With ``saliency`` the video shows the heatmap and ``<stem>-off.mp4`` is the same episode without it
    (same frames, panel and size), named in the sidecar as ``saliency.video_without``; the returned paths
    then include ``video_without``. ``objects``: boxes of the game's objects drawn on the screen (RAM truth,
    and the run's predictions where it has an object head; ``--objects``).
    """
    from rlmorning.viz.saliency import default_params, overlay_heatmap, perturbation_saliency

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = video_stem(src, seed, overlay, saliency)
    mp4, side = out_dir / f"{stem}.mp4", out_dir / f"{stem}.json"
    log = EpisodeLog(seed=seed)
    writer = VideoWriter(mp4, fps)
    # with saliency, the same episode without the heatmap too (named in the sidecar): a player can switch
    without = VideoWriter(out_dir / f"{stem}-off.mp4", fps) if saliency else None
    window = int(round(TRACE_SECONDS * fps))
    trace: deque[float] = deque(maxlen=window)
    q_range = QRange()
    sal_map: np.ndarray | None = None
    sal_max = 0.0
    sal_steps: list[int] = []
    frame_size: tuple[int, int] | None = None
    try:
        for m in play(src, seed, log, max_steps=max_steps, with_ram=objects is not None):
            screen = m.frame if objects is None else objects.draw(m.frame, m.obs, m.ram)
            k = scale or auto_scale(screen.shape[0])
            if saliency:
                if m.t % saliency_every == 0 or sal_map is None:
                    obs = np.asarray(m.obs)
                    saliency_stride = saliency_stride or default_params(*obs.shape[-2:])[0]
                    sal_map = perturbation_saliency(src.agent.q_values, obs, stride=saliency_stride)
                    sal_max = max(sal_max, float(sal_map.max()))
                    sal_steps.append(m.t)
                plain = upscale(screen, k)
                screen = overlay_heatmap(screen, sal_map, sal_max)
            game = upscale(screen, k)
            panel = None
            if overlay:
                if m.q is not None:
                    q_range.update(m.q)
                    trace.append(float(np.max(m.q)))
                panel_w = max(300, (int(game.shape[0] * 0.58) // 2) * 2)
                panel = draw_panel(
                    game.shape[0], panel_w, title=src.title, step=m.t, score=m.score, lives=m.lives,
                    q=None if m.q is None else [float(v) for v in m.q], meanings=src.action_meanings,
                    action=m.action, greedy=m.greedy, random=m.random, trace=list(trace), window=window,
                    q_range=q_range, trace_seconds=TRACE_SECONDS,
                )
            writer.write(game if panel is None else np.concatenate([game, panel], axis=1))
            if without is not None:
                without.write(plain if panel is None else np.concatenate([plain, panel], axis=1))
            frame_size = writer.size
            if advance is not None:
                advance()
    finally:
        writer.close()
        if without is not None:
            without.close()
    sidecar = {
        "format": SIDECAR_FORMAT,
        "video": mp4.name,
        **src.sidecar_header(),
        "action_meanings": src.action_meanings,
        "fps": fps,
        "frames": writer.frames,
        "frame_size": list(frame_size) if frame_size else None,
        "overlay": overlay,
        "saliency": {"stride": saliency_stride, "every": saliency_every, "steps": sal_steps,
                     "video_without": without.path.name} if without is not None else None,
        "objects": None if objects is None else objects.sidecar(),
        **log.to_json(),
    }
    side.write_text(json.dumps(sidecar, separators=(",", ":")))
    paths = {"video": mp4, "sidecar": side}
    if without is not None:
        paths["video_without"] = without.path
    if gif:
        paths["gif"] = mp4_to_gif(mp4, out_dir / f"{stem}.gif")
    return paths


FORMATS = ("text", "mp4")


def record(
    source: str,
    *,
    episodes: int = 3,
    checkpoint: str = "best",
    out: str | Path | None = None,
    fps: int | None = None,
    max_steps: int | None = None,
    overlay: bool = True,
    gif: bool = False,
    saliency: bool = False,
    saliency_every: int = 4,
    seed: int = DEFAULT_SEED,
    env: str | None = None,
    epsilon: float | None = None,
    device: str = "cpu",
    scale: int | None = None,
    progress: bool = True,
    fmt: str | None = None,
    skill: int | None = None,
    objects: bool = False,
) -> list[dict[str, Path]]:
    """Record ``episodes`` evaluation episodes (seeds ``seed``, ``seed + 1`` ...) of a run or ``sb3:`` model.

    ``fmt``: ``mp4`` (a video per episode; default for envs with RGB frames) or ``text`` (a text log of the
    env's ansi rendering; default for envs that only render text, such as the algorithmic envs; see
    :mod:`rlmorning.viz.ansi`). ``fps`` defaults to 30 (text-rendering envs: their ``render_fps``).
    Returns the written paths per episode (``video`` or ``text``, ``sidecar``, and ``gif``). Default
    folder: ``<run>/videos/`` (SB3: ``videos/`` beside the model). ``skill``: a skills run plays that skill in
    every episode (default folder ``<run>/videos/skill<k>/``). ``objects``: draw the game's objects from the
    console RAM (green) and, for runs trained with ``aux: objects``, the predicted boxes (magenta).
    """

    if fmt is not None and fmt not in FORMATS:
        raise RlmError(f"unknown --format '{fmt}'. Valid: {', '.join(FORMATS)}")
    for name, value, low in (("--episodes", episodes, 1), ("--fps", fps, 1), ("--saliency-every", saliency_every, 1)):
        if value is not None and value < low:
            raise RlmError(f"{name} must be >= {low}, got {value}")
    if max_steps is not None and max_steps < 1:
        raise RlmError(f"--max-steps must be >= 1, got {max_steps}")
    if scale is not None and scale < 1:
        raise RlmError(f"--scale must be >= 1, got {scale}")
    src = load_source(source, checkpoint, env=env, device=device, epsilon=epsilon)
    if skill is not None:  # a skills run playing one skill (rlmorning.viz.skills); videos in videos/skill<k>/
        from rlmorning.viz.skills import select_skill

        src = select_skill(src, skill)
    modes = ansi.env_metadata(src).get("render_modes", [])
    text_only = "ansi" in modes and "rgb_array" not in modes
    fmt = fmt or ("text" if text_only else "mp4")
    if fmt == "text":
        if "ansi" not in modes:
            raise RlmError(f"--format text needs an env that renders text (render_mode 'ansi'); "
                           f"{src.info.display_name} does not: use --format mp4")
        given = [flag for flag, on in (("--fps", fps is not None), ("--gif", gif), ("--no-overlay", not overlay),
                                       ("--saliency", saliency), ("--scale", scale is not None)) if on]
        if given:
            raise RlmError(f"{given[0]} is for videos: add --format mp4 (a text log has no frames)")
    elif saliency and (text_only or len(_obs_shape(src)) != 3):
        raise RlmError(f"--saliency needs image observations; {src.info.display_name}'s are not images")
    elif not text_only and src.num_actions == 0:
        raise RlmError(f"record's video panel needs Discrete actions; {src.info.display_name} has others")
    boxes = None
    if objects:
        from rlmorning.viz.objects import object_overlay

        if fmt == "text":
            raise RlmError("--objects is for videos (a text log has no frames)")
        boxes = object_overlay(src, _obs_shape(src))
    out_dir = Path(out) if out is not None else src.out_dir / "videos" / ("" if skill is None else f"skill{skill}")
    if out is not None and out_dir.suffix.lower() in (".mp4", ".gif", ".json", ".txt"):
        raise RlmError(f"--out is the folder the videos go into (record names each file), got '{out}'")
    writable_folder(out_dir)
    bound = max_steps
    if bound is None and src.info.family == "atari":
        bound = src.max_frames // src.frame_skip
    results = []
    with progress_bar(progress) as add:
        for i in range(episodes):
            advance = add(f"episode {i + 1}/{episodes}", None if bound is None else bound + 1)
            if fmt == "text":
                results.append(ansi.record_text_episode(src, seed + i, out_dir, max_steps=max_steps, advance=advance))
            elif text_only:
                results.append(ansi.record_text_video_episode(
                    src, seed + i, out_dir, fps=fps, max_steps=max_steps, scale=scale, gif=gif, overlay=overlay,
                    advance=advance,
                ))
            else:
                results.append(record_episode(
                    src, seed + i, out_dir, fps=fps or 30, max_steps=max_steps, overlay=overlay, gif=gif,
                    saliency=saliency, saliency_every=saliency_every, scale=scale, advance=advance,
                    objects=boxes,
                ))
    return results


def _obs_shape(src: PolicySource) -> tuple[int, ...]:
    env = src.make_env(0)
    try:
        return tuple(env.observation_space.shape)
    finally:
        env.close()


def print_paths(results: list[dict[str, Path]], file: Any = None) -> None:
    """Print each episode's video or text log (with steps and score), sidecar and GIF paths."""
    file = file or sys.stdout
    for r in results:
        side = json.loads(Path(r["sidecar"]).read_text())
        main = r["video"] if "video" in r else r["text"]
        print(f"{main}  ({side['steps']} steps, score {fmt_score(side['score'])})", file=file)
        if "video_without" in r:
            print(f"{r['video_without']}  (without saliency)", file=file)
        print(f"{r['sidecar']}", file=file)
        if "gif" in r:
            print(f"{r['gif']}", file=file)
