"""Object tables from the Atari console RAM: RAM -> boxes of the game's objects, for detection labels.

Per game a fixed list of objects (one instance per class), each located by RAM bytes. The addresses
are those of AtariARI's RAM annotations (Anand et al. 2019, "Unsupervised State Representation Learning
in Atari"); the pixel offsets, sizes and visibility rules were measured
here on ale-py 0.12 by locating each object by its colour in 3,000 emulator frames of a seeded random
policy per game (Ms. Pac-Man: 40,000, random and held actions; RAM read after the same ``act`` as the
screen: no lag, except Ms. Pac-Man's one frame) -- see ``docs/side_information.md``. Boxes are measured on
the full 210x160 screen and scaled to the observation (84x84 by default: ``x * S / 160``, ``y * S / 210``).

A box is ``(x, y, w, h)``: top-left corner, width and height in pixels of the observation, floats.

* ``breakout``: paddle (x = ram[72] - 47, 16x4 at row 189), ball (x = ram[99] - 49, y = ram[101] + 9,
  2x4; absent while ram[101] == 0);
* ``pong``: player (right paddle, x = 140, y = ram[51] - 14, 4x17), enemy (left paddle, x = 16,
  y = ram[50] - 15, 4x16), ball (x = ram[49] - 49, y = ram[54] - 15, 2x5; absent while ram[54] == 0);
  boxes are clipped to the field (rows 34-193), so a paddle half behind the border gets a smaller box;
* ``boxing``: player (white) and enemy (black) bodies (x = ram[32|33] + 3, y = ram[34|35] + 35,
  16x52: the 14x47 body drawn 2 pixels further right when facing right and bobbing by up to 6 rows);
  the body only: a punching arm reaches up to 17 pixels outside the box;
* ``ms_pacman``: pacman, the ghosts blinky, pinky, inky, sue, and the fruit: 8x10 at (x = ram[a] - 12,
  y = ram[b] + 1), (a, b) = (10, 16), (9, 15), (8, 14), (7, 13), (6, 12), (11, 17); ghosts absent while
  ram[33] == 255 (dying; measured here, not in AtariARI's annotations), the fruit while ram[11] == 0. The
  screen shows the RAM of the frame before, exactly; with the RAM of its own frame the pixels lie within
  2 pixels of the box (the bouncing fruit 4; pacman not in the frame a life is lost). A sprite in a side
  tunnel wraps round the screen: the box holds its larger part. Ghosts flicker (ghosts sharing rows take
  turns) and are blue or white while frightened. Measured on the first maze (cherry fruit) only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlmorning.errors import RlmError

RAW_HEIGHT, RAW_WIDTH = 210, 160


@dataclass(frozen=True)
class GameObjects:
    """A game's object table: class names and a RAM -> raw-screen boxes function."""

    classes: tuple[str, ...]
    raw_boxes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    """``ram int64 [B, 128]`` -> (``boxes float [B, K, 4]`` x, y, w, h on the 210x160 screen,
    ``visible bool [B, K]``); object ``k`` has class ``k``."""
    field: tuple[int, int, int, int]
    """``(x0, y0, x1, y1)``: boxes are clipped to this part of the raw screen (end exclusive)."""
    colors: tuple[tuple[int, int, int], ...]
    """Each class's RGB colour on the screen (for tests and debugging)."""


def _stack(*boxes: tuple) -> np.ndarray:
    return np.stack([np.stack([np.broadcast_to(np.asarray(v, dtype=np.float64), np.shape(b[0]))
                               for v in b], axis=-1) for b in boxes], axis=1)


def _breakout(ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    paddle = (ram[:, 72] - 47, 189, 16, 4)
    ball = (ram[:, 99] - 49, ram[:, 101] + 9, 2, 4)
    visible = np.stack([np.ones(len(ram), bool), ram[:, 101] != 0], axis=1)
    return _stack(paddle, ball), visible


def _pong(ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    player = (np.full(len(ram), 140), ram[:, 51] - 14, 4, 17)
    enemy = (np.full(len(ram), 16), ram[:, 50] - 15, 4, 16)
    ball = (ram[:, 49] - 49, ram[:, 54] - 15, 2, 5)
    ones = np.ones(len(ram), bool)
    return _stack(player, enemy, ball), np.stack([ones, ones, ram[:, 54] != 0], axis=1)


def _boxing(ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    player = (ram[:, 32] + 3, ram[:, 34] + 35, 16, 52)
    enemy = (ram[:, 33] + 3, ram[:, 35] + 35, 16, 52)
    return _stack(player, enemy), np.ones((len(ram), 2), bool)


def _ms_pacman(ram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = ram[:, [10, 9, 8, 7, 6, 11]] - 12  # pacman, blinky, pinky, inky, sue, fruit: pixels 0-159
    x = np.where(x > 156, x - 160, x)  # wrapped round the screen: the box holds the larger part
    y = ram[:, [16, 15, 14, 13, 12, 17]] + 1
    boxes = np.stack([x, y, np.full_like(x, 8), np.full_like(x, 10)], axis=-1).astype(np.float64)
    ghosts = np.repeat((ram[:, 33] != 255)[:, None], 4, axis=1)
    visible = np.concatenate([np.ones((len(ram), 1), bool), ghosts, (ram[:, 11] != 0)[:, None]], axis=1)
    return boxes, visible


OBJECT_TABLES: dict[str, GameObjects] = {
    "breakout": GameObjects(("paddle", "ball"), _breakout, (8, 32, 152, 196),
                            ((200, 72, 72), (200, 72, 72))),
    "pong": GameObjects(("player", "enemy", "ball"), _pong, (0, 34, 160, 194),
                        ((92, 186, 92), (213, 130, 74), (236, 236, 236))),
    "boxing": GameObjects(("player", "enemy"), _boxing, (0, 0, 160, 210),
                          ((214, 214, 214), (0, 0, 0))),
    "ms_pacman": GameObjects(("pacman", "blinky", "pinky", "inky", "sue", "fruit"), _ms_pacman, (0, 0, 160, 172),
                             ((210, 164, 74), (200, 72, 72), (198, 89, 179), (84, 184, 153), (180, 122, 48),
                              (184, 50, 50))),
}


def object_table(game: str) -> GameObjects:
    """The object table of a ROM id (``breakout``; ``Breakout`` and ``ALE/Breakout-v5`` work too)."""
    from rlmorning.envs.atari import parse_atari_name

    rom = parse_atari_name(game) or game
    if rom not in OBJECT_TABLES:
        raise RlmError(f"no RAM object table for Atari game '{game}'. Supported: {', '.join(sorted(OBJECT_TABLES))}")
    return OBJECT_TABLES[rom]


def object_classes(game: str) -> tuple[str, ...]:
    """The class names of ``game``'s objects; class id ``k`` is ``object_classes(game)[k]``."""
    return object_table(game).classes


def ram_boxes(game: str, ram: np.ndarray, frame_size: int | tuple[int, int] = 84
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of ``game``'s objects for a batch of RAM.

    ``ram``: ``uint8 [128]`` or ``[B, 128]``. Returns ``boxes float32 [B, K, 4]`` (x, y, w, h in pixels of a
    ``frame_size`` observation, ``(H, W)`` or ``S`` for ``S x S``), ``classes int64 [K]`` and
    ``valid bool [B, K]`` (False: the object is not on the screen; its box is zeros).
    """
    table = object_table(game)
    ram = np.asarray(ram)
    if ram.shape[-1] != 128 or ram.ndim not in (1, 2):
        raise RlmError(f"RAM must have shape [128] or [B, 128], got {ram.shape}")
    ram = ram.reshape(-1, 128).astype(np.int64)
    boxes, valid = table.raw_boxes(ram)
    fx0, fy0, fx1, fy1 = table.field
    x0 = np.clip(boxes[..., 0], fx0, fx1)
    y0 = np.clip(boxes[..., 1], fy0, fy1)
    x1 = np.clip(boxes[..., 0] + boxes[..., 2], fx0, fx1)
    y1 = np.clip(boxes[..., 1] + boxes[..., 3], fy0, fy1)
    valid = valid & (x1 > x0) & (y1 > y0)
    h, w = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
    sx, sy = w / RAW_WIDTH, h / RAW_HEIGHT
    out = np.stack([x0 * sx, y0 * sy, (x1 - x0) * sx, (y1 - y0) * sy], axis=-1).astype(np.float32)
    out[~valid] = 0.0
    return out, np.arange(len(table.classes), dtype=np.int64), valid


@dataclass(frozen=True)
class AtariObject:
    """One labelled object: class id and name, box (x, y, w, h) in observation pixels."""

    cls: int
    name: str
    x: float
    y: float
    w: float
    h: float


def ram_objects(game: str, ram: np.ndarray, frame_size: int | tuple[int, int] = 84) -> list[AtariObject]:
    """The visible objects of one RAM ``uint8 [128]`` as a list (see :func:`ram_boxes`)."""
    boxes, classes, valid = ram_boxes(game, np.asarray(ram).reshape(1, 128), frame_size)
    names = object_classes(game)
    return [AtariObject(int(c), names[c], *(float(v) for v in boxes[0, k]))
            for k, c in enumerate(classes) if valid[0, k]]


TRUTH_COLOR = (0, 255, 0)
PRED_COLOR = (255, 0, 255)


def draw_boxes(frame: np.ndarray, boxes: np.ndarray, *, color: tuple[int, int, int],
               obs_size: int | tuple[int, int] = 84, labels: list[str] | None = None,
               thickness: int = 1) -> np.ndarray:
    """Draw ``boxes [K, 4]`` (x, y, w, h in pixels of an ``obs_size`` observation) on a copy of the RGB
    ``frame [H, W, 3]``, scaled from the observation to the frame's size; ``labels`` are written above."""
    import cv2

    out = np.ascontiguousarray(np.array(frame, dtype=np.uint8, copy=True))
    if out.ndim != 3 or out.shape[2] != 3:
        raise RlmError(f"draw_boxes needs an RGB frame [H, W, 3], got shape {out.shape}")
    oh, ow = (obs_size, obs_size) if isinstance(obs_size, int) else obs_size
    sx, sy = out.shape[1] / ow, out.shape[0] / oh
    for k, (x, y, w, h) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        p0 = (int(round(x * sx)), int(round(y * sy)))
        p1 = (max(int(round((x + w) * sx)) - 1, p0[0]), max(int(round((y + h) * sy)) - 1, p0[1]))
        cv2.rectangle(out, p0, p1, color, thickness)
        if labels is not None and k < len(labels):
            cv2.putText(out, labels[k], (p0[0], max(p0[1] - 2, 7)), cv2.FONT_HERSHEY_PLAIN, 0.6, color, 1)
    return out


def draw_objects(frame: np.ndarray, *, truth: np.ndarray | None = None, predicted: np.ndarray | None = None,
                 truth_labels: list[str] | None = None, predicted_labels: list[str] | None = None,
                 obs_size: int | tuple[int, int] = 84) -> np.ndarray:
    """An RGB frame with the RAM-truth boxes (green) and the predicted boxes (magenta) drawn on it; both in
    observation pixels (see :func:`ram_boxes` and :func:`~rlmorning.agents.nets.side_information.decode_boxes`)."""
    out = np.asarray(frame, dtype=np.uint8)
    if truth is not None:
        out = draw_boxes(out, truth, color=TRUTH_COLOR, obs_size=obs_size, labels=truth_labels)
    if predicted is not None:
        out = draw_boxes(out, predicted, color=PRED_COLOR, obs_size=obs_size, labels=predicted_labels)
    return np.array(out, copy=True) if out is frame else out
