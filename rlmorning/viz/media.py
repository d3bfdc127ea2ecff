"""Writing media files: H.264 MP4 through imageio-ffmpeg's ffmpeg, GIF conversion, progress bars, file names.

Shared by the video recorder (:mod:`rlmorning.viz.video`) and the text-env recorder
(:mod:`rlmorning.viz.ansi`), so neither imports the other.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rlmorning.errors import RlmError
from rlmorning.outputs import output_file
from rlmorning.viz.panel import pad_even
from rlmorning.viz.source import PolicySource


class VideoWriter:
    """Stream RGB frames into an H.264 MP4 (yuv420p, ``+faststart``) through imageio-ffmpeg's ffmpeg."""

    def __init__(self, path: Path, fps: int, crf: int = 20) -> None:
        self.path = Path(path)
        self.fps = fps
        self.crf = crf
        self._gen: Any = None
        self.size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        frame = pad_even(frame)
        h, w = frame.shape[:2]
        if self._gen is None:
            import imageio_ffmpeg

            self.size = (w, h)
            self._gen = imageio_ffmpeg.write_frames(
                str(self.path), (w, h), fps=self.fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                quality=None, macro_block_size=2, ffmpeg_log_level="error",
                output_params=["-crf", str(self.crf), "-preset", "veryfast", "-movflags", "+faststart"],
            )
            self._gen.send(None)
        elif (w, h) != self.size:
            raise ValueError(f"frame size changed from {self.size} to {(w, h)}")
        try:
            self._gen.send(np.ascontiguousarray(frame, dtype=np.uint8))
        except OSError as exc:  # ffmpeg exited (it could not open or write the file)
            self._gen = None
            raise RlmError(f"ffmpeg could not write '{self.path}': {exc.strerror or exc}") from None
        self.frames += 1

    def close(self) -> None:
        if self._gen is not None:
            gen, self._gen = self._gen, None
            try:
                gen.close()
            except (OSError, RuntimeError) as exc:  # imageio-ffmpeg raises RuntimeError when ffmpeg failed
                raise RlmError(f"ffmpeg could not write '{self.path}': {exc}") from None


def png_out(png: Path) -> Path:
    """``png`` checked to be a .png path in a writable folder, created if needed (one-line RlmError otherwise)."""
    return output_file(png, (".png",), "plot.png")


def mp4_to_gif(mp4: Path, gif: Path, fps: int = 15, width: int | None = None) -> Path:
    """Convert an MP4 into a GIF (ffmpeg palette, nearest-neighbour scaling; default half width)."""
    import imageio_ffmpeg

    scale = f"scale={width}:-2:flags=neighbor" if width else "scale=trunc(iw/4)*2:-2:flags=neighbor"
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(mp4), "-vf",
           f"fps={fps},{scale},split[a][b];[a]palettegen=max_colors=128[p];[b][p]paletteuse=dither=none",
           str(gif)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RlmError(f"ffmpeg could not write '{gif}': {(res.stderr.strip().splitlines() or ['?'])[-1]}")
    return gif


@contextmanager
def progress_bar(enabled: bool = True) -> Any:
    """A rich progress bar on stderr (only on a terminal); yields ``add(description, total) -> advance()``."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield lambda description, total: (lambda n=1: None)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as prog:

        def add(description: str, total: int | None) -> Callable[..., None]:
            task = prog.add_task(description, total=total)
            return lambda n=1: prog.advance(task, n)

        yield add


def video_stem(src: PolicySource, seed: int, overlay: bool, saliency: bool) -> str:
    ckpt = Path(src.checkpoint).stem
    step = f"-step{src.checkpoint_step}" if src.checkpoint_step is not None else ""
    tags = ("" if overlay else "-plain") + ("-saliency" if saliency else "")
    return f"{src.info.display_name.replace('/', '-')}-{ckpt}{step}-seed{seed}{tags}"
