"""The live panel beside the game (OpenCV drawing): Q-value bars, max-Q trace, score, step, lives.

Every number drawn is formatted from the values stored in the episode's JSON sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
BG = (24, 26, 32)
FG = (235, 235, 235)
DIM = (150, 152, 160)
BAR = (95, 110, 140)
CHOSEN = (255, 170, 40)
RANDOM = (230, 80, 200)
TRACE = (90, 200, 255)


def upscale(frame: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour upscale of an RGB frame by an integer factor ``k``."""
    if k == 1:
        return frame
    return np.ascontiguousarray(frame.repeat(k, axis=0).repeat(k, axis=1))


def auto_scale(height: int) -> int:
    """Integer upscale for a screen height: Atari's 210 rows -> 3x (630), large frames stay 1x."""
    return max(1, 630 // max(height, 1))


def even(n: int) -> int:
    return n + (n % 2)


def pad_even(img: np.ndarray) -> np.ndarray:
    """Pad an image by a row/column of black so both sides are even (H.264 with yuv420p needs it)."""
    h, w = img.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return img
    out = np.zeros((even(h), even(w), 3), np.uint8)
    out[:h, :w] = img
    return out


@dataclass
class QRange:
    """Running [lo, hi] of the Q-values seen so far in the episode; the bars are drawn in this range."""

    lo: float = np.inf
    hi: float = -np.inf

    def update(self, values: np.ndarray) -> None:
        finite = values[np.isfinite(values)]
        if finite.size:
            self.lo = min(self.lo, float(finite.min()))
            self.hi = max(self.hi, float(finite.max()))

    def padded(self) -> tuple[float, float]:
        if not np.isfinite(self.lo):
            return 0.0, 1.0
        span = max(self.hi - self.lo, 1e-3 * max(1.0, abs(self.hi)), 1e-6)
        return self.lo - 0.1 * span, self.hi + 0.1 * span


def fmt_q(v: float) -> str:
    """How Q-values are printed on the panel (from the sidecar's float)."""
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.4g}"


def fmt_score(v: float) -> str:
    """Scores print as integers when they are whole (Atari), else with two decimals."""
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float, color: tuple[int, int, int],
          thick: int = 1) -> None:
    cv2.putText(img, s, org, FONT, scale, color, thick, cv2.LINE_AA)


def draw_panel(
    height: int,
    width: int,
    *,
    title: str,
    step: int,
    score: float,
    lives: int | None,
    q: Sequence[float] | None,
    meanings: Sequence[str],
    action: int | None,
    greedy: int | None,
    random: bool,
    trace: Sequence[float],
    window: int,
    q_range: QRange,
    trace_seconds: float,
) -> np.ndarray:
    """One panel image ``uint8 [height, width, 3]`` for the state at ``step``.

    ``q`` are this state's Q-values: one bar per action in the episode's running Q range, the taken
    ``action`` highlighted (magenta when it was a random epsilon action, with the greedy one outlined).
    ``trace`` holds the recent max-Q values ending with this state's, drawn in a window of ``window``
    frames (``trace_seconds`` of video).
    """
    img = np.empty((height, width, 3), np.uint8)
    img[:] = BG
    u = height / 630.0  # layout unit: 1.0 at Atari's 3x screen height
    fs = 0.5 * max(u, 0.6)
    pad = int(14 * max(u, 0.6))
    y = pad + int(12 * u)
    _text(img, _fit(title, width - 2 * pad, fs * 0.85), (pad, y), fs * 0.85, DIM)
    y += int(34 * u) + 4
    _text(img, f"score {fmt_score(score)}", (pad, y), fs * 1.5, FG, 2)
    y += int(30 * u) + 4
    _text(img, f"step {step}   lives {'-' if lives is None else lives}", (pad, y), fs * 1.05, FG)
    y += int(26 * u) + 2
    status = "episode over" if action is None else ("random action (epsilon)" if random else "greedy action")
    _text(img, status, (pad, y), fs * 0.9, RANDOM if random else DIM)
    y += int(16 * u) + 4

    trace_h = int(height * 0.28)
    bars_top, bars_bottom = y, height - trace_h - int(40 * u) - pad
    n = len(meanings)
    if q is not None and n:
        _text(img, "Q(s, a)", (pad, bars_top + int(16 * u)), fs * 0.9, DIM)
        lo, hi = q_range.padded()
        top = bars_top + int(24 * u)
        row = max(8, min(int(44 * u), (bars_bottom - top) // n))
        label_w, value_w = int(width * 0.36), int(width * 0.2)
        x0, x1 = pad + label_w, width - pad - value_w
        bar_fs = min(fs * 0.9, row / 30)
        for a in range(n):
            ry = top + a * row
            v = float(q[a])
            frac = 0.0 if not np.isfinite(v) else float(np.clip((v - lo) / (hi - lo), 0.0, 1.0))
            chosen = a == action
            color = (RANDOM if random else CHOSEN) if chosen else BAR
            cv2.rectangle(img, (x0, ry + 3), (x1, ry + row - 3), (40, 43, 52), -1)
            cv2.rectangle(img, (x0, ry + 3), (x0 + max(1, int(frac * (x1 - x0))), ry + row - 3), color, -1)
            if random and a == greedy:
                cv2.rectangle(img, (x0, ry + 3), (x1, ry + row - 3), CHOSEN, 1)
            ty = ry + row // 2 + int(10 * bar_fs)
            weight = 2 if chosen else 1
            _text(img, _fit(meanings[a], label_w - 6, bar_fs), (pad, ty), bar_fs, FG if chosen else DIM, weight)
            _text(img, fmt_q(v), (x1 + 8, ty), bar_fs, FG if chosen else DIM, weight)
    elif n:
        _text(img, "no Q-values (agent is not value-based)", (pad, bars_top + int(20 * u)), fs * 0.8, DIM)

    ty0 = height - trace_h - pad
    _text(img, f"max Q, last {trace_seconds:g} s", (pad, ty0 - int(10 * u)), fs * 0.9, DIM)
    x_left, y_top, x_right, y_bottom = pad, ty0, width - pad, height - pad
    cv2.rectangle(img, (x_left, y_top), (x_right, y_bottom), (40, 43, 52), -1)
    values = np.asarray(list(trace), dtype=np.float64)[-max(window, 2):]
    ok = np.isfinite(values)
    if ok.any():
        lo, hi = float(values[ok].min()), float(values[ok].max())
        span = max(hi - lo, 1e-3 * max(1.0, abs(hi)), 1e-6)
        plo, phi = lo - 0.1 * span, hi + 0.1 * span
        dx = (x_right - x_left - 8) / max(window - 1, 1)
        xs = x_right - 4 - (len(values) - 1 - np.arange(len(values))) * dx
        ys = y_bottom - 4 - (values - plo) / (phi - plo) * (y_bottom - y_top - 8)
        pts = np.round(np.stack([xs, ys], axis=1)[ok]).astype(np.int32)
        if len(pts) > 1:
            cv2.polylines(img, [pts.reshape(-1, 1, 2)], False, TRACE, max(1, int(2 * u)), cv2.LINE_AA)
        if ok[-1]:
            cv2.circle(img, (int(pts[-1][0]), int(pts[-1][1])), max(2, int(4 * u)), FG, -1, cv2.LINE_AA)
        small = fs * 0.75
        _text(img, fmt_q(hi), (x_left + 4, y_top + int(16 * u) + 2), small, DIM)
        _text(img, fmt_q(lo), (x_left + 4, y_bottom - 6), small, DIM)
    return img


def _fit(s: str, width: int, scale: float) -> str:
    """Shorten ``s`` with an ellipsis until it fits ``width`` pixels at font ``scale``."""
    while s and cv2.getTextSize(s, FONT, scale, 1)[0][0] > width:
        s = s[:-3] + ".." if len(s) > 3 else s[:-1]
    return s
