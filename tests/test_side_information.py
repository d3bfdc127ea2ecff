"""Side information on Atari: RAM object tables, the RAM teacher and hallucination loss, the YOLO head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlmorning.agents.nets.encoders import make_encoder
from rlmorning.agents.nets.side_information import (
    HallucinationBranch,
    RamEncoder,
    RamQNetwork,
    encode_with_map,
    feature_map_shape,
    hallucination_loss,
    ram_to_input,
    spatial_features,
)
from rlmorning.agents.nets.yolo import (
    YoloHead,
    build_yolo_targets,
    decode_boxes,
    game_anchors,
    kmeans_anchors,
    yolo_loss,
)
from rlmorning.envs.atari import make_atari_vector
from rlmorning.envs.atari_objects import (
    OBJECT_TABLES,
    PRED_COLOR,
    TRUTH_COLOR,
    draw_objects,
    object_classes,
    ram_boxes,
    ram_objects,
)
from rlmorning.errors import RlmError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

RAW = (210, 160)


# ------------------------------------------------------------------------------------------ object tables
def _seeded_frames(game: str, steps: int, seed: int = 1) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(RGB screen, RAM, last 84x84 frame) after each step of a seeded random run."""
    env = make_atari_vector(game, 1, seed, ram=True, noop_max=0)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        obs, _, _, _, info = env.step(rng.integers(0, env.single_action_space.n, 1))
        out.append((env.unwrapped.screens_rgb()[0], info["ram"][0], obs[0, -1]))
    return out


def _pixels(screen: np.ndarray, color: tuple[int, int, int], rows: tuple[int, int],
            cols: tuple[int, int] = (0, 160)) -> tuple[np.ndarray, np.ndarray]:
    mask = (screen == np.array(color, np.uint8)).all(-1)
    mask[: rows[0]] = False
    mask[rows[1]:] = False
    mask[:, : cols[0]] = False
    mask[:, cols[1]:] = False
    return np.nonzero(mask)


def _inside(ys: np.ndarray, xs: np.ndarray, box: np.ndarray) -> np.ndarray:
    x, y, w, h = box
    return (xs >= x) & (xs < x + w) & (ys >= y) & (ys < y + h)


def test_breakout_boxes_cover_the_paddle_and_ball_pixels() -> None:
    seen_ball = 0
    for screen, ram, _ in _seeded_frames("breakout", 150):
        boxes, _, valid = ram_boxes("breakout", ram, RAW)  # raw screen pixels
        paddle, ball = boxes[0]
        ys, xs = _pixels(screen, (200, 72, 72), (93, 189))  # below the bricks, above the paddle: the ball
        if len(ys):
            assert valid[0, 1] and _inside(ys, xs, ball).all()
            seen_ball += 1
        ys, xs = _pixels(screen, (200, 72, 72), (189, 193), (8, 152))  # paddle rows, between the walls
        assert len(ys) and (_inside(ys, xs, paddle) | _inside(ys, xs, ball)).all()
        assert _inside(ys, xs, paddle).sum() >= 4
    assert seen_ball > 50


def test_pong_boxes_cover_both_paddles_and_the_ball() -> None:
    seen = np.zeros(3, int)
    for screen, ram, _ in _seeded_frames("pong", 150):
        boxes, classes, valid = ram_boxes("pong", ram, RAW)
        for k, color in enumerate(OBJECT_TABLES["pong"].colors):
            ys, xs = _pixels(screen, color, (34, 194))  # the field, below the score
            if len(ys):
                assert valid[0, k] and _inside(ys, xs, boxes[0, k]).all(), object_classes("pong")[k]
                seen[k] += 1
            elif k < 2:  # a paddle missing from the field (the enemy's, at the start) has no box
                assert not valid[0, k]
    assert (seen > 50).all()


def test_boxing_boxes_hold_the_boxers_bodies() -> None:
    for screen, ram, _ in _seeded_frames("boxing", 120)[::3]:
        boxes, _, valid = ram_boxes("boxing", ram, RAW)
        assert valid.all()
        for k, color in enumerate(OBJECT_TABLES["boxing"].colors):
            mask = (screen == np.array(color, np.uint8)).all(-1)
            mask[:36], mask[178:], mask[:, :28], mask[:, 132:] = False, False, False, False  # inside the ring
            ys, xs = np.nonzero(mask)
            x, y, w, h = boxes[0, k]
            torso = np.bincount(xs, minlength=160).argmax()  # the column with the most pixels
            assert x <= torso < x + w
            assert _inside(ys, xs, boxes[0, k]).mean() > 0.45  # the body; arms (punching, guarding) reach out
            assert _inside(ys, xs, np.array([x - 17, y, w + 34, h])).all()  # by at most 17 pixels
            assert ys.min() - y <= 6 and y + h - 1 - ys.max() <= 6  # the box is not much taller than the boxer


MAZE = (0, 172)  # Ms. Pac-Man's maze rows, above the lives and the score (where a fruit is drawn too)
FRIGHTENED = ((66, 114, 194), (214, 214, 214))  # ghosts' colours while they can be eaten (blue, flashing white)


def _ms_pacman_run(steps: int, seed: int, *, frame_skip: int = 4, runner: bool = False
                   ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, bool]]:
    """(RGB screen, RAM before the step, RAM after it, game over or life lost) per step of a seeded run: random
    actions, or (``runner``) a maze runner that keeps its direction until stuck, fast enough at eating dots to
    frighten the ghosts and bring out the fruit (at 50 dots)."""
    env = make_atari_vector("ms_pacman", 1, seed, ram=True, frame_skip=frame_skip, noop_max=0)
    rng = np.random.default_rng(seed)
    out, action, last = [], 1, None
    for _ in range(steps):
        if not runner:
            action = int(rng.integers(0, env.single_action_space.n))
        _, _, terminated, truncated, info = env.step(np.array([action]))
        ram = info["ram"][0]
        out.append((env.unwrapped.screens_rgb()[0], info["obs_ram"][0], ram, bool(terminated[0] or truncated[0])))
        if runner and ((ram[10], ram[16]) == last or rng.random() < 0.05):
            action = int(rng.integers(1, 5))  # up, right, left, down
        last = (ram[10], ram[16])
    env.close()
    return out


def _inside_wrapped(ys: np.ndarray, xs: np.ndarray, box: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Inside ``box`` grown by ``pad`` pixels, the screen wrapping round horizontally (the maze's side tunnels)."""
    x, y, w, h = box
    grown = np.array([x - pad, y - pad, w + 2 * pad, h + 2 * pad])
    return _inside(ys, xs, grown) | _inside(ys, xs - 160, grown) | _inside(ys, xs + 160, grown)


def test_ms_pacman_screen_shows_the_ram_of_the_frame_before() -> None:
    """One frame per step: every object's pixels lie inside its box from the RAM before the step, exactly."""
    table = OBJECT_TABLES["ms_pacman"]
    seen, ghosts_gone = np.zeros(6, int), 0
    for screen, before, _, done in _ms_pacman_run(1500, 1, frame_skip=1):
        if done:  # a game over's step shows the new game (skipped with the life losses)
            continue
        raw, _ = table.raw_boxes(before[None].astype(np.int64))  # unclipped: a wrapped sprite's other part
        _, _, valid = ram_boxes("ms_pacman", before, RAW)
        for k, color in enumerate(table.colors):
            ys, xs = _pixels(screen, color, MAZE)
            if len(ys):
                assert valid[0, k] and _inside_wrapped(ys, xs, raw[0, k]).all(), table.classes[k]
                seen[k] += 1
        ghosts_gone += not valid[0, 1:5].any()
    assert seen[0] > 1400 and (seen[1:5] > 300).all()  # pacman always, the ghosts flicker
    assert ghosts_gone > 30  # a death: no ghosts for 41 frames


def test_ms_pacman_boxes_in_the_training_env() -> None:
    """Four frames per step, RAM after the step (as the trainer labels): pixels within 2 pixels of the boxes
    (the fruit 4), the frightened ghosts' too; an object missing its box only as a life is lost."""
    table = OBJECT_TABLES["ms_pacman"]
    seen, frightened, late, lives_lost = np.zeros(6, int), 0, 0, 0
    for screen, _, ram, done in _ms_pacman_run(600, 5, runner=True):
        boxes, _, valid = ram_boxes("ms_pacman", ram, RAW)
        raw, _ = table.raw_boxes(ram[None].astype(np.int64))
        lives_lost += done
        for k, color in enumerate(table.colors):
            ys, xs = _pixels(screen, color, MAZE)
            if not len(ys):
                continue
            seen[k] += 1
            if not valid[0, k] or not _inside_wrapped(ys, xs, raw[0, k], 4 if k == 5 else 2).all():
                late += 1  # the screen is a frame behind the RAM: dying (ghosts gone) or back at the start
        for color in FRIGHTENED:
            mask = (screen[: MAZE[1]] == np.array(color, np.uint8)).all(-1)
            if mask.any():
                frightened += 1
                ys, xs = np.nonzero(mask)  # each pixel near one of the ghosts' boxes
                assert np.any([_inside_wrapped(ys, xs, b, 2) for b in raw[0, 1:5][valid[0, 1:5]]], axis=0).all()
    assert late <= 2 * lives_lost
    assert seen[0] > 550 and (seen[1:5] > 100).all() and seen[5] > 20 and frightened > 20


def test_ms_pacman_tunnels_and_absent_objects() -> None:
    ram = np.zeros(128, np.uint8)
    ram[[6, 7, 8, 12, 13, 14]] = 80, 88, 96, 66, 66, 66  # sue, inky, pinky in the ghosts' house
    ram[[10, 16, 9, 15, 33]] = 100, 50, 165, 98, 1  # pacman in the open, blinky entering the right tunnel
    boxes, _, valid = ram_boxes("ms_pacman", ram, RAW)
    assert valid[0].tolist() == [True] * 5 + [False]  # no fruit while ram[11] == 0
    np.testing.assert_array_equal(boxes[0, :2], [[88, 51, 8, 10], [153, 99, 7, 10]])
    ram[9] = 170  # more of the sprite wrapped round to the left edge than left on the right
    np.testing.assert_array_equal(ram_boxes("ms_pacman", ram, RAW)[0][0, 1], [0, 99, 6, 10])
    ram[33], ram[11], ram[17] = 255, 60, 97  # dying: the ghosts are gone; a fruit
    assert ram_boxes("ms_pacman", ram, RAW)[2][0].tolist() == [True] + [False] * 4 + [True]


def test_breakout_ball_box_in_the_84x84_observation() -> None:
    """In the (max-pooled, area-resized) observation the ball's pixels lie within 2 pixels of its box."""
    checked = 0
    for _, ram, frame in _seeded_frames("breakout", 150):
        boxes, _, valid = ram_boxes("breakout", ram)
        region = frame[38:74, 6:78].astype(int)  # open space between the bricks and the paddle
        ys, xs = np.nonzero(region > 20)
        if not len(ys) or not valid[0, 1]:
            continue
        x, y, w, h = boxes[0, 1]
        near = (xs + 6 >= x - 2) & (xs + 6 < x + w + 2) & (ys + 38 >= y - 2) & (ys + 38 < y + h + 2)
        assert near.all()
        checked += 1
    assert checked > 30


def test_object_lists_and_scaling() -> None:
    ram = np.zeros(128, np.uint8)
    ram[72], ram[99], ram[101] = 100, 120, 90
    objs = ram_objects("Breakout", ram)
    assert [o.name for o in objs] == ["paddle", "ball"] and [o.cls for o in objs] == [0, 1]
    assert objs[1].x == pytest.approx((120 - 49) * 84 / 160) and objs[1].y == pytest.approx((90 + 9) * 84 / 210)
    ram[101] = 0  # ball not in play
    assert [o.name for o in ram_objects("breakout", ram)] == ["paddle"]
    boxes, classes, valid = ram_boxes("pong", np.zeros((3, 128), np.uint8))
    assert boxes.shape == (3, 3, 4) and classes.tolist() == [0, 1, 2] and not valid[:, 2].any()


def test_unknown_game_lists_the_supported_ones() -> None:
    with pytest.raises(RlmError, match="Supported: boxing, breakout, ms_pacman, pong"):
        ram_boxes("Seaquest", np.zeros(128, np.uint8))
    with pytest.raises(RlmError, match="RAM must have shape"):
        ram_boxes("pong", np.zeros(64, np.uint8))


# ----------------------------------------------------------------------------------------------- drawing
def test_draw_objects_marks_box_edges_in_two_colours() -> None:
    frame = np.zeros((210, 160, 3), np.uint8)
    truth = np.array([[42.0, 42.0, 8.4, 8.4]])
    pred = np.array([[10.0, 20.0, 21.0, 21.0]])
    out = draw_objects(frame, truth=truth, predicted=pred)
    assert out.shape == frame.shape and not frame.any()  # the input is not modified
    x0, y0 = round(42 * 160 / 84), round(42 * 210 / 84)  # top-left of the truth box on the screen
    assert tuple(out[y0, x0]) == TRUTH_COLOR and tuple(out[y0 + 5, x0]) == TRUTH_COLOR
    px, py = round(10 * 160 / 84), round(20 * 210 / 84)
    assert tuple(out[py, px + 10]) == PRED_COLOR
    assert not out[py + 20, px + 10].any()  # the inside of a box stays untouched
    with pytest.raises(RlmError, match="RGB frame"):
        draw_objects(np.zeros((84, 84), np.uint8), truth=truth)


# ------------------------------------------------------------------------------------------ feature maps
@pytest.mark.parametrize("name, shape", [("nature", (64, 7, 7)), ("impala", (32, 11, 11)),
                                         ("deformable", (64, 7, 7)), ("densenet", (90, 5, 5)),
                                         ("inception", (128, 5, 5))])
def test_spatial_features_of_pixel_encoders(name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    enc = make_encoder(name, (4, 84, 84), input_scale=1 / 255)
    enc.eval()
    obs = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    fmap = spatial_features(enc, obs)
    assert fmap.shape == (2, *shape) and feature_map_shape(enc, (4, 84, 84)) == shape
    features, fmap2 = encode_with_map(enc, obs)
    torch.testing.assert_close(features, enc(obs))  # one pass gives the encoder's output and its map
    torch.testing.assert_close(fmap2, fmap)


def test_spatial_features_small_frames_and_flat_encoders() -> None:
    enc = make_encoder("minatar", (4, 10, 10))
    assert spatial_features(enc, torch.zeros(3, 4, 10, 10)).shape == (3, 16, 8, 8)
    with pytest.raises(RlmError, match="no spatial feature map"):
        spatial_features(make_encoder("mlp", (8,)), torch.zeros(2, 8))


# ------------------------------------------------------------------------------ RAM teacher, hallucination
def test_ram_inputs_bits_and_bytes() -> None:
    ram = torch.zeros(2, 128, dtype=torch.uint8)
    ram[0, 0], ram[1, 127] = 0b10000001, 255
    bits = ram_to_input(ram, "bits")
    assert bits.shape == (2, 1024) and bits[0, :8].tolist() == [1, 0, 0, 0, 0, 0, 0, 1] and bits.sum() == 2 + 8
    assert ram_to_input(ram, "bytes")[1, 127] == 1.0
    q, feats = RamQNetwork(4, hidden=(32,), input="bytes")(ram)
    assert q.shape == (2, 4) and feats.shape == (2, 32)
    with pytest.raises(RlmError, match="bits, bytes"):
        RamEncoder(input="nibbles")


def test_hallucination_loss_falls_and_leaves_the_teacher_alone() -> None:
    torch.manual_seed(0)
    teacher = RamEncoder(hidden=(64, 32))
    with torch.no_grad():  # a trained teacher's features spread more than a fresh layer's
        teacher.net[-2].weight.mul_(10.0)
    ram = torch.randint(0, 256, (32, 128), dtype=torch.uint8)
    fmap = torch.rand(32, 16, 5, 5)  # the pixel encoder's maps of the same states
    branch = HallucinationBranch((16, 5, 5), teacher.out_dim, channels=16)
    opt = torch.optim.Adam(branch.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        loss = hallucination_loss(branch(fmap), teacher(ram))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    assert all(p.grad is None for p in teacher.parameters())
    l2 = hallucination_loss(torch.zeros(2, 3), torch.ones(2, 3), form="l2")
    assert l2.item() == pytest.approx(3.0)  # summed over features, averaged over the batch
    assert hallucination_loss(torch.ones(2, 3), torch.ones(2, 3)).item() == 0.0
    with pytest.raises(RlmError, match="sigmoid_l2, l2"):
        hallucination_loss(torch.zeros(1, 2), torch.zeros(1, 2), form="l1")


# ---------------------------------------------------------------------------------------------- YOLO
ANCHORS = torch.tensor([[4.0, 4.0], [8.0, 16.0]])


def test_target_assignment_cell_and_anchor() -> None:
    boxes = torch.tensor([[[26.0, 42.0, 8.0, 16.0], [60.0, 10.0, 3.0, 5.0], [0.0, 0.0, 0.0, 0.0]]])
    targets = build_yolo_targets(boxes, torch.tensor([1, 0, 1]), torch.tensor([[True, True, False]]),
                                 (7, 7), ANCHORS, (84, 84))
    assert targets.obj.sum() == 2
    # centre (30, 50): column 30 // 12 = 2, row 50 // 12 = 4; 8x16 fits anchor 1
    assert targets.obj[0, 1, 4, 2] and targets.cls[0, 1, 4, 2] == 1
    torch.testing.assert_close(targets.xy[0, 1, 4, 2], torch.tensor([30 / 12 - 2, 50 / 12 - 4]))
    torch.testing.assert_close(targets.wh[0, 1, 4, 2], torch.zeros(2))
    # centre (61.5, 12.5): column 5, row 1; 3x5 is closer to the 4x4 anchor
    assert targets.obj[0, 0, 1, 5] and targets.cls[0, 0, 1, 5] == 0
    torch.testing.assert_close(targets.wh[0, 0, 1, 5], torch.log(torch.tensor([3 / 4, 5 / 4])))


def test_two_objects_in_one_cell_and_anchor_the_last_wins() -> None:
    boxes = torch.tensor([[[1.0, 1.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0]]])
    targets = build_yolo_targets(boxes, torch.tensor([0, 1]), torch.ones(1, 2, dtype=torch.bool), (7, 7),
                                 ANCHORS, (84, 84))
    assert targets.obj.sum() == 1 and targets.cls[0, 0, 0, 0] == 1
    torch.testing.assert_close(targets.xy[0, 0, 0, 0], torch.tensor([5 / 12, 5 / 12]))


def test_same_sized_classes_in_one_cell_take_their_own_anchors() -> None:
    """Ms. Pac-Man's six classes share one box size: tied anchors go by class, so none is lost."""
    anchors = torch.tensor([[4.0, 4.0]] * 3)
    boxes = torch.tensor([[[1.0, 1.0, 4.0, 4.0], [3.0, 3.0, 4.0, 4.0], [2.0, 2.0, 4.0, 4.0]]])
    targets = build_yolo_targets(boxes, torch.tensor([2, 0, 1]), torch.ones(1, 3, dtype=torch.bool), (7, 7),
                                 anchors, (84, 84))
    assert targets.obj.sum() == 3
    assert [int(targets.cls[0, k, 0, 0]) for k in range(3)] == [0, 1, 2]
    # a class beyond the anchors (or an anchor that fits worse) still goes by IoU
    targets = build_yolo_targets(torch.tensor([[[1.0, 1.0, 8.0, 16.0]]]), torch.tensor([0]),
                                 torch.ones(1, 1, dtype=torch.bool), (7, 7), ANCHORS, (84, 84))
    assert targets.obj[0, 1].any() and not targets.obj[0, 0].any()


def _perfect_prediction(targets, num_classes: int) -> torch.Tensor:
    b, a, h, w = targets.obj.shape
    pred = torch.zeros(b, a, h, w, 5 + num_classes)
    pred[..., 4] = torch.where(targets.obj, 30.0, -30.0)
    pred[..., 0:2] = torch.logit(targets.xy.clamp(1e-6, 1 - 1e-6))
    pred[..., 2:4] = targets.wh
    pred[..., 5:] = torch.nn.functional.one_hot(targets.cls, num_classes).float() * 40.0
    return pred


def test_yolo_loss_is_zero_for_a_perfect_prediction() -> None:
    boxes = torch.tensor([[[26.0, 42.0, 8.0, 16.0], [60.0, 10.0, 3.0, 5.0]], [[5.0, 70.0, 4.0, 4.0], [0, 0, 0, 0]]])
    valid = torch.tensor([[True, True], [True, False]])
    classes = torch.tensor([[1, 0], [2, 0]])
    targets = build_yolo_targets(boxes, classes, valid, (7, 7), ANCHORS, (84, 84))
    pred = _perfect_prediction(targets, 3)
    terms = yolo_loss(pred, targets, ANCHORS, (84, 84))
    assert terms["loss"].item() < 1e-5
    b, a, i, j = torch.nonzero(targets.obj)[0].tolist()
    wrong_class = 5 + (int(targets.cls[b, a, i, j]) + 1) % 3
    for key, change in (("coords", (2, 0.5)), ("objectness", (4, -31.0)), ("classes", (wrong_class, 50.0))):
        worse = pred.clone()
        worse[b, a, i, j, change[0]] += change[1]
        assert yolo_loss(worse, targets, ANCHORS, (84, 84))[key].item() > 0.05, key
    worse = pred.clone()
    worse[1, 1, 6, 6, 4] = 0.0  # an empty cell claims half an object
    assert yolo_loss(worse, targets, ANCHORS, (84, 84))["no_object"].item() == pytest.approx(0.25 / 2)  # per image


def test_decode_and_nms_return_the_box() -> None:
    boxes = torch.tensor([[[26.0, 42.0, 8.0, 16.0]]])
    targets = build_yolo_targets(boxes, torch.tensor([1]), torch.ones(1, 1, dtype=torch.bool), (7, 7), ANCHORS,
                                 (84, 84))
    pred = _perfect_prediction(targets, 2)
    pred[0, 0, 4, 2, :] = pred[0, 1, 4, 2, :]  # a second, slightly smaller box on the same object
    pred[0, 0, 4, 2, 2:4] = torch.log(torch.tensor([7.0 / 4, 15.0 / 4]))
    pred[0, 0, 4, 2, 4] = 3.0
    pred[0, 0, 0, 0, 4], pred[0, 0, 0, 0, 5] = 0.0, 5.0  # a weak box elsewhere, below the threshold
    det = decode_boxes(pred, ANCHORS, (84, 84), score_threshold=0.6)
    assert len(det) == 1 and len(det[0].boxes) == 1
    torch.testing.assert_close(det[0].boxes[0], boxes[0, 0], atol=1e-4, rtol=0)
    assert det[0].classes.tolist() == [1] and det[0].scores[0] > 0.99


def test_yolo_head_learns_squares_on_a_nature_encoder() -> None:
    """Frames with one drawn rectangle of two kinds (square, bar); 100 Adam steps cut the loss several times."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 32
    frames = torch.zeros(n, 1, 84, 84, dtype=torch.uint8)
    boxes = torch.zeros(n, 1, 4)
    classes = torch.randint(0, 2, (n, 1), generator=gen)
    for i in range(n):
        w, h = (8, 8) if classes[i, 0] == 0 else (4, 16)
        x, y = (int(v) for v in torch.randint(0, 84 - 16, (2,), generator=gen))
        frames[i, 0, y:y + h, x:x + w] = 255
        boxes[i, 0] = torch.tensor([x, y, w, h], dtype=torch.float32)
    anchors = torch.tensor([[8.0, 8.0], [4.0, 16.0]])
    enc = make_encoder("nature", (1, 84, 84), input_scale=1 / 255)
    c, gh, gw = feature_map_shape(enc, (1, 84, 84))
    head = YoloHead(c, anchors, 2)
    targets = build_yolo_targets(boxes, classes, torch.ones(n, 1, dtype=torch.bool), (gh, gw), anchors, (84, 84))
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=1e-3)
    losses = []
    for _ in range(100):
        loss = yolo_loss(head(spatial_features(enc, frames)), targets, anchors, (84, 84))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.25 * np.mean(losses[:5])


def test_anchors_from_tables_and_kmeans() -> None:
    anchors = game_anchors("breakout")
    np.testing.assert_allclose(anchors, [[16 * 84 / 160, 4 * 84 / 210], [2 * 84 / 160, 4 * 84 / 210]], rtol=1e-6)
    assert game_anchors("pong").shape == (3, 2)
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal([2, 2], 0.1, (50, 2)), rng.normal([10, 20], 0.5, (50, 2))])
    centres = kmeans_anchors(wh, 2)
    np.testing.assert_allclose(centres, [[2, 2], [10, 20]], atol=0.3)
    with pytest.raises(RlmError, match="distinct box sizes"):
        kmeans_anchors(np.ones((5, 2)), 2)
