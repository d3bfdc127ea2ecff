"""A YOLOv2-style object head for pixel encoders (Redmon & Farhadi, "YOLO9000: Better, Faster, Stronger", 2017).

The head reads the encoder's last conv feature map ``[B, C, H, W]`` (see
:func:`rlmorning.agents.nets.side_information.spatial_features`); each cell predicts ``A`` boxes, one per
anchor, each with an objectness logit, four box numbers and class logits. Boxes are in pixels of the
observation (``image_size``, 84x84 for Atari); cell ``(i, j)`` covers ``[j * sx, (j + 1) * sx) x
[i * sy, (i + 1) * sy)`` with ``sx = W_img / W``, ``sy = H_img / H`` (7x7 cells of 12 pixels for the
Nature CNN on 84x84).

YOLOv2's parametrisation (Sec. 2, "Direct location prediction"): centre ``bx = (j + sigmoid(tx)) * sx``,
``by = (i + sigmoid(ty)) * sy``; size ``bw = pw * exp(tw)``, ``bh = ph * exp(th)`` for anchor ``(pw, ph)``;
objectness ``sigmoid(to)``.

Targets (:func:`build_yolo_targets`): an object belongs to the cell of its centre and to the anchor
whose shape has the best IoU with its box (both centred at the origin). Loss (:func:`yolo_loss`), the
terms of darknet's YOLOv2 region layer: squared error of ``sigmoid(to)`` against 1 for assigned anchors
(weight ``object_scale`` 5) and against 0 for all others (``noobject_scale`` 1) except predictions that
already overlap an object by IoU > ``ignore_iou`` (0.6); squared error of ``sigmoid(tx), sigmoid(ty),
tw, th`` for assigned anchors, scaled by ``2 - w*h`` (w, h relative to the image) so small boxes count
more; cross-entropy of the class logits for assigned anchors (darknet uses squared error on the softmax;
cross-entropy is the usual reimplementation). Sums over cells and anchors, averaged over the batch.

Anchors: :func:`game_anchors` takes each class's box size from the RAM object table (every object of a
class has one size in the tables of :mod:`rlmorning.envs.atari_objects`, so k-means over label boxes
would return these sizes); :func:`kmeans_anchors` is YOLOv2's k-means with ``1 - IoU`` distance for
label sets whose sizes vary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from rlmorning.errors import RlmError


class YoloHead(nn.Module):
    """1x1 conv: ``[B, C, H, W]`` -> ``[B, A, H, W, 5 + classes]`` (tx, ty, tw, th, to, class logits).

    ``anchors [A, 2]``: anchor widths and heights in image pixels (a buffer, saved with the module).
    ``objectness_prior`` in (0, 1) sets every objectness bias to ``logit(prior)``, so that the first
    predictions say "no object" with probability ``1 - prior`` (the prior-probability initialisation of Lin et
    al. 2017, "Focal Loss for Dense Object Detection", Sec. 4.1); 0 keeps the conv's default bias.
    ``input_norm`` reads the map through a per-sample normalisation (GroupNorm with one group, no affine): the
    head's output then does not change when the map is scaled, so its loss gives the shared convs no reason
    to scale their features up.
    """

    def __init__(self, in_channels: int, anchors: torch.Tensor | np.ndarray | list, num_classes: int,
                 objectness_prior: float = 0.0, input_norm: bool = False) -> None:
        super().__init__()
        anchors = torch.as_tensor(np.asarray(anchors, dtype=np.float32)).reshape(-1, 2)
        if len(anchors) < 1 or (anchors <= 0).any():
            raise RlmError(f"YOLO anchors must be positive (width, height) pairs, got {anchors.tolist()}")
        if num_classes < 1:
            raise RlmError(f"YOLO head needs at least one class, got {num_classes}")
        self.register_buffer("anchors", anchors)
        self.num_anchors, self.num_classes = len(anchors), int(num_classes)
        self.norm = nn.GroupNorm(1, in_channels, eps=1e-8, affine=False) if input_norm else nn.Identity()
        self.conv = nn.Conv2d(in_channels, self.num_anchors * (5 + self.num_classes), 1)
        if not 0.0 <= objectness_prior < 1.0:
            raise RlmError(f"YOLO objectness prior must be in [0, 1), got {objectness_prior}")
        if objectness_prior > 0:
            with torch.no_grad():
                self.conv.bias.view(self.num_anchors, 5 + self.num_classes)[:, 4] = math.log(
                    objectness_prior / (1 - objectness_prior))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        b, _, h, w = fmap.shape
        out = self.conv(self.norm(fmap)).view(b, self.num_anchors, 5 + self.num_classes, h, w)
        return out.permute(0, 1, 3, 4, 2).contiguous()


def _xywh_to_xyxy(b: torch.Tensor) -> torch.Tensor:
    return torch.cat([b[..., :2], b[..., :2] + b[..., 2:4]], dim=-1)


def box_iou_xyxy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of every box in ``a [..., N, 4]`` with every box in ``b [..., M, 4]`` (x0, y0, x1, y1) -> ``[..., N, M]``."""
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-9)


def _shape_iou(wh: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU of boxes ``[N, 2]`` with anchors ``[A, 2]`` when both are centred at one point -> ``[N, A]``."""
    inter = torch.minimum(wh[:, None, 0], anchors[None, :, 0]) * torch.minimum(wh[:, None, 1], anchors[None, :, 1])
    return inter / (wh[:, None].prod(-1) + anchors[None].prod(-1) - inter).clamp(min=1e-9)


@dataclass
class YoloTargets:
    """Per-anchor targets for a ``[B, A, H, W]`` prediction grid."""

    obj: torch.Tensor
    """bool: this anchor of this cell is responsible for an object."""
    xy: torch.Tensor
    """float [B, A, H, W, 2]: the centre's offset in its cell, in [0, 1) (target of sigmoid(tx, ty))."""
    wh: torch.Tensor
    """float [B, A, H, W, 2]: ``log(w / pw), log(h / ph)`` (target of tw, th)."""
    cls: torch.Tensor
    """long [B, A, H, W]: class id (0 where ``obj`` is False)."""
    scale: torch.Tensor
    """float [B, A, H, W]: coordinate weight ``2 - w*h`` (w, h relative to the image)."""
    boxes: torch.Tensor
    """float [B, K, 4]: the label boxes as (x0, y0, x1, y1), for the ignore rule of the no-object loss."""
    valid: torch.Tensor
    """bool [B, K]: which label boxes exist."""


def build_yolo_targets(boxes: torch.Tensor, classes: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int],
                       anchors: torch.Tensor, image_size: tuple[int, int]) -> YoloTargets:
    """Assign labels to cells and anchors.

    ``boxes [B, K, 4]`` (x, y, w, h: top-left corner and size in image pixels), ``classes [B, K]`` or
    ``[K]``, ``valid bool [B, K]``, ``grid (H, W)`` of the feature map, ``anchors [A, 2]`` in pixels,
    ``image_size (H_img, W_img)``. An object goes to the cell containing its centre and to its best-IoU
    anchor; where anchors tie (classes of one size: :func:`game_anchors` gives anchor ``c`` the size of
    class ``c``), an object of class ``c`` takes anchor ``c``, so same-sized objects of different classes in
    one cell keep their labels. When two objects claim the same cell and anchor the later one (higher ``k``)
    wins.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    device = boxes.device
    anchors = torch.as_tensor(anchors, dtype=torch.float32, device=device)
    valid = torch.as_tensor(valid, dtype=torch.bool, device=device)
    classes = torch.as_tensor(classes, dtype=torch.long, device=device).expand(valid.shape)
    b, k = valid.shape
    gh, gw = grid
    ih, iw = image_size
    sx, sy = iw / gw, ih / gh
    a = len(anchors)
    obj = torch.zeros(b, a, gh, gw, dtype=torch.bool, device=device)
    xy = torch.zeros(b, a, gh, gw, 2, device=device)
    wh = torch.zeros(b, a, gh, gw, 2, device=device)
    cls = torch.zeros(b, a, gh, gw, dtype=torch.long, device=device)
    scale = torch.zeros(b, a, gh, gw, device=device)
    bi, ki = torch.nonzero(valid, as_tuple=True)
    if len(bi):
        sel = boxes[bi, ki]
        size = sel[:, 2:4].clamp(min=1e-3)
        cx, cy = sel[:, 0] + sel[:, 2] / 2, sel[:, 1] + sel[:, 3] / 2
        col = (cx / sx).floor().clamp(0, gw - 1).long()
        row = (cy / sy).floor().clamp(0, gh - 1).long()
        iou = _shape_iou(size, anchors)
        best = iou.argmax(1)
        own = classes[bi, ki]
        in_range = own < a
        own_iou = iou.gather(1, own.clamp(max=a - 1)[:, None])[:, 0]
        best = torch.where(in_range & (own_iou >= iou.max(1).values - 1e-6), own, best)
        flat = ((bi * a + best) * gh + row) * gw + col  # keep the last label of each (image, anchor, cell)
        order = torch.arange(len(flat), device=device)
        last = torch.full((b * a * gh * gw,), -1, dtype=torch.long, device=device).scatter_reduce(
            0, flat, order, reduce="amax")
        keep = last[flat] == order
        bi, ki, best, row, col = bi[keep], ki[keep], best[keep], row[keep], col[keep]
        sel, size, cx, cy = sel[keep], size[keep], cx[keep], cy[keep]
        obj[bi, best, row, col] = True
        xy[bi, best, row, col] = torch.stack([cx / sx - col, cy / sy - row], -1).clamp(0.0, 1.0 - 1e-6)
        wh[bi, best, row, col] = torch.log(size / anchors[best])
        cls[bi, best, row, col] = classes[bi, ki]
        scale[bi, best, row, col] = 2.0 - (size[:, 0] / iw) * (size[:, 1] / ih)
    return YoloTargets(obj, xy, wh, cls, scale, _xywh_to_xyxy(boxes), valid)


def predicted_boxes(pred: torch.Tensor, anchors: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Decode ``pred [B, A, H, W, 5 + C]`` to boxes ``[B, A, H, W, 4]`` (x, y, w, h in image pixels)."""
    _, _, gh, gw, _ = pred.shape
    ih, iw = image_size
    sx, sy = iw / gw, ih / gh
    rows = torch.arange(gh, device=pred.device, dtype=pred.dtype).view(1, 1, gh, 1)
    cols = torch.arange(gw, device=pred.device, dtype=pred.dtype).view(1, 1, 1, gw)
    cx = (cols + torch.sigmoid(pred[..., 0])) * sx
    cy = (rows + torch.sigmoid(pred[..., 1])) * sy
    anchors = anchors.to(pred.dtype).view(1, -1, 1, 1, 2)
    w = anchors[..., 0] * torch.exp(pred[..., 2].clamp(max=10.0))
    h = anchors[..., 1] * torch.exp(pred[..., 3].clamp(max=10.0))
    return torch.stack([cx - w / 2, cy - h / 2, w, h], dim=-1)


def yolo_loss(pred: torch.Tensor, targets: YoloTargets, anchors: torch.Tensor, image_size: tuple[int, int], *,
              object_scale: float = 5.0, noobject_scale: float = 1.0, coord_scale: float = 1.0,
              class_scale: float = 1.0, ignore_iou: float = 0.6) -> dict[str, torch.Tensor]:
    """YOLOv2 loss of ``pred [B, A, H, W, 5 + C]`` (from :class:`YoloHead`) against ``targets``.

    Returns ``loss`` (the weighted sum) and its terms ``objectness``, ``no_object``, ``coords``,
    ``classes`` (unweighted), each summed over cells and anchors and averaged over the batch.
    """
    b = max(pred.shape[0], 1)
    obj = targets.obj
    conf = torch.sigmoid(pred[..., 4])
    with torch.no_grad():  # ignore rule: predictions already overlapping a label are not pushed to 0
        noobj = ~obj
        if ignore_iou < 1.0 and targets.valid.any():
            boxes = _xywh_to_xyxy(predicted_boxes(pred.detach(), anchors, image_size)).flatten(1, 3)
            iou = box_iou_xyxy(boxes, targets.boxes.to(boxes.dtype))
            iou = iou.masked_fill(~targets.valid[:, None, :], 0.0).amax(-1).view_as(obj)
            noobj = noobj & (iou <= ignore_iou)
    objectness = ((conf - 1.0) ** 2)[obj].sum() / b
    no_object = (conf**2)[noobj].sum() / b
    if obj.any():
        p = pred[obj]
        coord_err = (((torch.sigmoid(p[:, 0:2]) - targets.xy[obj]) ** 2).sum(-1)
                     + ((p[:, 2:4] - targets.wh[obj]) ** 2).sum(-1))
        coords = (targets.scale[obj] * coord_err).sum() / b
        classes = F.cross_entropy(p[:, 5:], targets.cls[obj], reduction="sum") / b
    else:
        coords = classes = pred.sum() * 0.0
    loss = (object_scale * objectness + noobject_scale * no_object + coord_scale * coords
            + class_scale * classes)
    return {"loss": loss, "objectness": objectness, "no_object": no_object, "coords": coords, "classes": classes}


@dataclass
class Detections:
    """Boxes found in one image: ``boxes [n, 4]`` (x, y, w, h in image pixels), ``scores [n]``, ``classes [n]``."""

    boxes: torch.Tensor
    scores: torch.Tensor
    classes: torch.Tensor


@torch.no_grad()
def decode_boxes(pred: torch.Tensor, anchors: torch.Tensor, image_size: tuple[int, int], *,
                 score_threshold: float = 0.5, iou_threshold: float = 0.45, max_boxes: int = 50) -> list[Detections]:
    """Detections per image from ``pred [B, A, H, W, 5 + C]``: score ``sigmoid(to) * softmax(class)``, the best
    class per box, boxes above ``score_threshold``, then per-class NMS (``torchvision.ops.batched_nms``) at
    ``iou_threshold``; at most ``max_boxes`` per image, best first."""
    boxes = predicted_boxes(pred, anchors, image_size).flatten(1, 3)
    probs = torch.sigmoid(pred[..., 4:5]) * torch.softmax(pred[..., 5:], dim=-1)
    scores, classes = probs.flatten(1, 3).max(-1)
    out = []
    for i in range(pred.shape[0]):
        keep = scores[i] > score_threshold
        bx, sc, cl = boxes[i][keep], scores[i][keep], classes[i][keep]
        idx = batched_nms(_xywh_to_xyxy(bx).float(), sc.float(), cl, iou_threshold)[:max_boxes]
        out.append(Detections(bx[idx], sc[idx], cl[idx]))
    return out


def game_anchors(game: str, frame_size: int | tuple[int, int] = 84) -> np.ndarray:
    """One anchor per object class of ``game``: the class's box size ``(w, h)`` in observation pixels,
    from the RAM object table (before clipping to the field)."""
    from rlmorning.envs.atari_objects import RAW_HEIGHT, RAW_WIDTH, object_table

    table = object_table(game)
    raw, _ = table.raw_boxes(np.zeros((1, 128), dtype=np.int64))
    h, w = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
    sizes = raw[0, :, 2:4] * np.array([w / RAW_WIDTH, h / RAW_HEIGHT])
    return sizes.astype(np.float32)


def kmeans_anchors(wh: np.ndarray, k: int, *, iterations: int = 100, seed: int = 0) -> np.ndarray:
    """YOLOv2's anchor clustering: k-means over box sizes ``wh [N, 2]`` with distance ``1 - IoU`` (boxes
    centred at one point); centroids are the clusters' median sizes. Returns ``[k, 2]`` sorted by area."""
    wh = np.asarray(wh, dtype=np.float64).reshape(-1, 2)
    uniq = np.unique(wh, axis=0)
    if len(uniq) < k:
        raise RlmError(f"kmeans_anchors needs at least k={k} distinct box sizes, got {len(uniq)}")
    rng = np.random.default_rng(seed)
    centres = uniq[rng.choice(len(uniq), k, replace=False)]
    for _ in range(iterations):
        inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
        iou = inter / (wh.prod(1)[:, None] + centres.prod(1)[None] - inter)
        assign = iou.argmax(1)
        new = np.array([np.median(wh[assign == j], axis=0) if (assign == j).any() else centres[j] for j in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return centres[np.argsort(centres.prod(1))].astype(np.float32)
