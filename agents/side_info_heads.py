"""Auxiliary heads that let a pixel DQN learn from the Atari console RAM while training (``aux`` config key).

* ``aux: hallucination`` (Hoffman, Gupta & Darrell 2016): a *teacher* Q-network on the RAM
  (:class:`~rlmorning.agents.nets.side_information.RamQNetwork`) learns from the same n-step TD targets
  as the pixel network; a hallucination branch on the pixel encoder's last conv map regresses the
  teacher's features (sigmoid-L2, teacher detached), so the shared convs learn what the RAM makes easy
  to see. Loss added to the Q-loss: ``teacher TD loss + aux_weight * hallucination loss``.
* ``aux: objects`` (Redmon & Farhadi 2017): a YOLOv2 head on the same conv map predicts the game's
  objects, labelled from RAM by :mod:`rlmorning.envs.atari_objects` (boxes moved with DrQ's random
  shift). Loss added: ``aux_weight * YOLOv2 loss``.

The pixel Q-network acts alone: acting and evaluation never see RAM or these heads. The heads (and the
teacher's target copy) are saved in checkpoints with the agent.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlmorning.agents.dqn_parts import sync_target
from rlmorning.agents.nets.side_information import (
    RAM_BYTES,
    HallucinationBranch,
    RamQNetwork,
    feature_map_shape,
    hallucination_loss,
)
from rlmorning.agents.nets.yolo import YoloHead, build_yolo_targets, game_anchors, yolo_loss
from rlmorning.envs.atari_objects import object_classes, object_table, ram_boxes
from rlmorning.errors import RlmError

AUX_KINDS = ("none", "hallucination", "objects")


def check_aux(kind: str, weight: float, ram_input: str, game: str) -> None:
    """One-line errors for bad ``aux`` settings."""
    if kind not in AUX_KINDS:
        raise RlmError(f"config key 'aux' must be one of {', '.join(AUX_KINDS)}, got '{kind}'")
    if weight < 0:
        raise RlmError(f"config key 'aux_weight' must be >= 0, got {weight}")
    if ram_input not in ("bits", "bytes"):
        raise RlmError(f"config key 'aux_ram_input' must be bits or bytes, got '{ram_input}'")
    if kind == "objects" and game != "auto":
        object_table(game)  # one line naming the games that have a table


def with_env_game(config: Any, env_id: str) -> Any:
    """``config`` with ``aux_game: auto`` resolved to the run's env (a copy; the run's config.yaml keeps
    ``auto``, so runs of one variant on several games share a config); other configs unchanged."""
    if getattr(config, "aux", "none") != "none" and getattr(config, "aux_game", None) == "auto":
        return dataclasses.replace(config, aux_game=env_id)
    return config


class SideInformationHeads(nn.Module):
    """The training-time heads of one ``aux`` kind on a pixel encoder with a spatial feature map."""

    def __init__(self, kind: str, encoder: nn.Module, obs_shape: Sequence[int], num_actions: int, *,
                 game: str, weight: float = 1.0, ram_input: str = "bits",
                 teacher_hidden: Sequence[int] = (512, 512), loss: str = "huber", double: bool = True,
                 objectness_prior: float = 0.0, input_norm: bool = False) -> None:
        super().__init__()
        if kind not in ("hallucination", "objects"):
            raise RlmError(f"side-information heads are hallucination or objects, got '{kind}'")
        if len(obs_shape) != 3:
            raise RlmError(f"aux: {kind} needs image observations [C, H, W], this env gives {tuple(obs_shape)}")
        self.kind, self.weight, self.loss_name, self.double = kind, float(weight), loss, double
        self.image_size = (int(obs_shape[1]), int(obs_shape[2]))
        map_shape = feature_map_shape(encoder, obs_shape)
        if kind == "hallucination":
            self.teacher = RamQNetwork(num_actions, [int(h) for h in teacher_hidden], ram_input)
            self.teacher_target = copy.deepcopy(self.teacher).requires_grad_(False)
            self.branch = HallucinationBranch(map_shape, self.teacher.out_dim)
        else:
            if game == "auto":
                raise RlmError("aux: objects needs the game (aux_game); the trainer sets it from the env")
            self.game = game
            self.classes = object_classes(game)
            self.detector = YoloHead(map_shape[0], game_anchors(game, self.image_size), len(self.classes),
                                     objectness_prior=objectness_prior, input_norm=input_norm)

    def sync_target(self, tau: float) -> None:
        """Move the teacher's target copy toward the teacher (with the pixel network's target sync)."""
        if self.kind == "hallucination":
            sync_target(self.teacher_target, self.teacher, tau)

    def loss(self, fmap: torch.Tensor, batch: dict[str, np.ndarray], actions: torch.Tensor,
             returns: torch.Tensor, discounts: torch.Tensor, shift: torch.Tensor,
             shared_target: bool) -> tuple[torch.Tensor, dict[str, float]]:
        """The auxiliary loss for the sampled batch (``side``/``next_side``: its RAM) and its metrics.

        ``fmap`` is the pixel encoder's last conv map of the (augmented) ``obs``, ``shift`` its DrQ offsets.
        ``shared_target``: the teacher's targets come from the teacher itself, as the pixel network's do.
        """
        if "side" not in batch:
            raise RlmError("aux heads need RAM in the replay batch (the training env gives no RAM)")
        ram = torch.as_tensor(batch["side"], device=fmap.device)
        if ram.shape[-1] != RAM_BYTES:
            raise RlmError(f"aux heads need {RAM_BYTES}-byte RAM per frame, replay holds {tuple(ram.shape[1:])}")
        if self.kind == "hallucination":
            return self._hallucination(fmap, ram, batch, actions, returns, discounts, shared_target)
        return self._objects(fmap, batch["side"], shift)

    def _hallucination(self, fmap: torch.Tensor, ram: torch.Tensor, batch: dict[str, np.ndarray],
                       actions: torch.Tensor, returns: torch.Tensor, discounts: torch.Tensor,
                       shared_target: bool) -> tuple[torch.Tensor, dict[str, float]]:
        next_ram = torch.as_tensor(batch["next_side"], device=fmap.device)
        q, features = self.teacher(ram)
        with torch.no_grad():
            target_net = self.teacher if shared_target else self.teacher_target
            next_q = target_net(next_ram)[0]
            if self.double and not shared_target:
                best = self.teacher(next_ram)[0].argmax(1, keepdim=True)
                next_v = next_q.gather(1, best).squeeze(1)
            else:
                next_v = next_q.max(1).values
            y = returns + discounts * next_v
        q_a = q.gather(1, actions.unsqueeze(1)).squeeze(1)
        teacher_loss = F.smooth_l1_loss(q_a, y) if self.loss_name == "huber" else F.mse_loss(q_a, y)
        hallucinated = self.branch(fmap)
        h_loss = hallucination_loss(hallucinated, features)
        with torch.no_grad():
            cos = F.cosine_similarity(hallucinated, features, dim=1, eps=1e-6).mean()
        metrics = {"teacher_loss": float(teacher_loss.detach()), "hallucination_loss": float(h_loss.detach()),
                   "hallucination_cos": float(cos), "teacher_q_mean": float(q_a.detach().mean())}
        return teacher_loss + self.weight * h_loss, metrics

    def _objects(self, fmap: torch.Tensor, ram: np.ndarray, shift: torch.Tensor
                 ) -> tuple[torch.Tensor, dict[str, float]]:
        boxes, classes, valid = ram_boxes(self.game, ram, self.image_size)
        boxes_t = torch.as_tensor(boxes, device=fmap.device)
        if shift.any():  # the augmented pixel (r, c) shows (r + dr, c + dc): content moved by (-dr, -dc)
            moved = boxes_t.clone()
            moved[..., 0] -= shift[:, None, 1].to(moved.dtype)
            moved[..., 1] -= shift[:, None, 0].to(moved.dtype)
            boxes_t = torch.where(torch.as_tensor(valid, device=fmap.device)[..., None], moved, boxes_t)
        anchors = self.detector.anchors
        targets = build_yolo_targets(boxes_t, torch.as_tensor(classes), torch.as_tensor(valid, device=fmap.device),
                                     tuple(fmap.shape[-2:]), anchors, self.image_size)
        terms = yolo_loss(self.detector(fmap), targets, anchors, self.image_size)
        metrics = {f"objects_{k}": float(v.detach()) for k, v in terms.items()}
        return self.weight * terms["loss"], metrics
