"""``rlmorning record --objects``: the game's objects drawn on the video, read from the console RAM (green)
and, for runs trained with ``aux: objects``, predicted by the run's YOLO head (magenta).

The RAM is read from the evaluation env's emulator for drawing only; the agent acts on pixels as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlmorning.envs.atari_objects import RAW_HEIGHT, RAW_WIDTH, draw_objects, object_classes, object_table, ram_boxes
from rlmorning.errors import RlmError
from rlmorning.viz.source import PolicySource


@dataclass
class ObjectOverlay:
    """Draws one game's RAM-truth boxes and (when the run has an object head) its predictions."""

    game: str
    classes: tuple[str, ...]
    encoder: Any | None = None
    detector: Any | None = None
    score_threshold: float = 0.5

    @property
    def predicts(self) -> bool:
        return self.detector is not None

    def truth(self, ram: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Boxes ``[K, 4]`` on the full 210x160 screen and their class names, for the objects on screen."""
        boxes, classes, valid = ram_boxes(self.game, ram, (RAW_HEIGHT, RAW_WIDTH))
        keep = valid[0]
        return boxes[0][keep], [self.classes[c] for c in classes[keep]]

    @torch.no_grad()
    def predicted(self, obs: np.ndarray) -> tuple[np.ndarray, list[str]] | None:
        """The object head's boxes for one observation, scaled to the 210x160 screen (None without a head)."""
        if self.detector is None or self.encoder is None:
            return None
        from rlmorning.agents.nets.side_information import spatial_features
        from rlmorning.agents.nets.yolo import decode_boxes

        x = torch.as_tensor(np.asarray(obs)[None])
        image = (int(x.shape[-2]), int(x.shape[-1]))
        fmap = spatial_features(self.encoder, x).float()
        det = decode_boxes(self.detector(fmap), self.detector.anchors, image, score_threshold=self.score_threshold)[0]
        boxes = det.boxes.cpu().numpy().astype(np.float64)
        boxes[:, [0, 2]] *= RAW_WIDTH / image[1]
        boxes[:, [1, 3]] *= RAW_HEIGHT / image[0]
        return boxes, [f"{self.classes[int(c)]} {float(s):.2f}" for c, s in zip(det.classes, det.scores, strict=True)]

    def draw(self, screen: np.ndarray, obs: np.ndarray, ram: np.ndarray | None) -> np.ndarray:
        """``screen`` (the env's RGB frame) with the truth and predicted boxes drawn on it."""
        truth = self.truth(ram) if ram is not None else None
        pred = self.predicted(obs)
        return draw_objects(screen, truth=None if truth is None else truth[0],
                            truth_labels=None if truth is None else truth[1],
                            predicted=None if pred is None else pred[0],
                            predicted_labels=None if pred is None else pred[1],
                            obs_size=(RAW_HEIGHT, RAW_WIDTH))

    def sidecar(self) -> dict[str, Any]:
        return {"game": self.game, "classes": list(self.classes), "truth": "console RAM",
                "predicted": self.predicts, "score_threshold": self.score_threshold}


def object_overlay(src: PolicySource, obs_shape: tuple[int, ...]) -> ObjectOverlay:
    """The overlay for a recorded run: Atari games with a RAM object table; predictions when the run trained
    with ``aux: objects`` (its object head is loaded from the same checkpoint). ``obs_shape``: the env's."""
    if src.info.family != "atari":
        raise RlmError(f"--objects needs an Atari game; {src.info.display_name} is not one")
    object_table(src.info.id)  # one line naming the games with a table
    overlay = ObjectOverlay(src.info.id, object_classes(src.info.id))
    if src.run_dir is None or getattr(getattr(src.agent, "config", None), "aux", "none") != "objects":
        return overlay
    from rlmorning.agents.nets.side_information import feature_map_shape
    from rlmorning.agents.nets.yolo import YoloHead
    from rlmorning.run import load_checkpoint

    encoder = src.agent.online.encoder
    aux = load_checkpoint(Path(src.checkpoint)).get("agent", {}).get("aux", {})
    weights = {k.removeprefix("detector."): v for k, v in aux.items() if k.startswith("detector.")}
    if not weights:
        raise RlmError(f"checkpoint {src.checkpoint} has no object head (trained without aux: objects?)")
    detector = YoloHead(feature_map_shape(encoder, obs_shape)[0], weights["anchors"], len(overlay.classes))
    detector.load_state_dict(weights)
    overlay.encoder, overlay.detector = encoder, detector.eval()
    return overlay
