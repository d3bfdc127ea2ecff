"""``rlmorning record`` for envs that render text (``render_mode="ansi"``: the algorithmic envs, the NTM tasks).

One evaluation episode becomes a sequence of *blocks*, one per state: the reset block shows the env's
rendering of the first state; block ``t`` shows the decision taken in state ``t - 1`` (the policy's
outputs: value and per-component action probabilities for ``a2c``, bit probabilities for ``ntm``,
Q-values for value-based agents; the NTM core's read/write focus), the action, its reward and the
score, then the env's rendering of state ``t``. The blocks are written

- as a text log ``<stem>-text.txt`` (ANSI colours removed; the cells the rendering highlights are marked on
  the line below: ``^`` green, ``x`` red, ``*`` other colours), or
- as a video ``<stem>.mp4``: each block drawn in a monospace grid with OpenCV (colours kept), one frame
  per block, at the env's ``render_fps`` unless ``--fps`` is given,

each with a JSON sidecar of the same name, ``.json`` (per-step actions, rewards, scores and policy outputs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import gymnasium as gym
import numpy as np
import torch

from rlmorning.agents.capabilities import PolicyOutputs, QValues
from rlmorning.errors import RlmError
from rlmorning.viz.media import VideoWriter, mp4_to_gif, video_stem
from rlmorning.viz.panel import fmt_score, pad_even, upscale
from rlmorning.viz.source import PolicySource

SIDECAR_FORMAT = 1
FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 0.5
BG = (24, 26, 32)
FG = (225, 225, 225)
# SGR colour index -> RGB (gray, red, green, yellow, blue, magenta, cyan, white, crimson as Gymnasium numbers them)
COLORS = ((150, 150, 150), (220, 60, 60), (60, 170, 80), (220, 200, 60), (80, 120, 230), (190, 90, 200),
          (70, 190, 200), (235, 235, 235), (200, 30, 80))
MARKERS = {1: "x", 2: "^", 8: "x"}  # red and crimson: x; green: ^; other colours: *
_SGR = re.compile(r"\x1b\[([0-9;]*)m")
_OTHER_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-ln-z]")

Style = tuple[int | None, int | None]
"""(foreground, background) colour indices into :data:`COLORS`, None = default."""
StyledLine = list[tuple[str, Style]]


# ------------------------------------------------------------------------------------------- ansi text
def parse_ansi(text: str) -> list[StyledLine]:
    """Lines of (character, style) from text with ANSI SGR colour codes (other escape codes dropped)."""
    fg: int | None = None
    bg: int | None = None
    lines: list[StyledLine] = []
    for raw in _OTHER_CSI.sub("", text).split("\n"):
        line: StyledLine = []
        pos = 0
        for m in [*_SGR.finditer(raw), None]:
            end = len(raw) if m is None else m.start()
            line += [(ch, (fg, bg)) for ch in raw[pos:end].replace("\t", "    ")]
            if m is None:
                break
            pos = m.end()
            for code in (int(c) if c else 0 for c in m.group(1).split(";")):
                if code == 0:
                    fg = bg = None
                elif 30 <= code <= 38 or 90 <= code <= 97:
                    fg = code % 10 if code < 90 else code - 90
                elif 40 <= code <= 48 or 100 <= code <= 107:
                    bg = code % 10 if code < 100 else code - 100
                elif code == 39:
                    fg = None
                elif code == 49:
                    bg = None
        lines.append(line)
    return lines


def plain_text(lines: list[StyledLine]) -> str:
    """The characters without colours; under every line with coloured cells, a line marking them."""
    out = []
    for line in lines:
        out.append("".join(ch for ch, _ in line).rstrip())
        marks = "".join(" " if fg is None and bg is None else MARKERS.get(bg if bg is not None else fg, "*")
                        for _, (fg, bg) in line).rstrip()
        if marks:
            out.append(marks)
    return "\n".join(out)


@lru_cache(maxsize=4)
def _cell(scale: float) -> tuple[int, int, int]:
    """(width, height, baseline) of one character cell of the monospace grid."""
    sizes = [cv2.getTextSize(chr(c), FONT, scale, 1) for c in range(33, 127)]
    width = cv2.getTextSize("0", FONT, scale, 1)[0][0] + 3  # wider glyphs (M, W) are drawn narrower
    ascent = max(h for (_, h), _ in sizes)
    descent = max(b for _, b in sizes)
    return width, ascent + descent + 6, descent + 3


def text_image(lines: list[StyledLine], rows: int | None = None, cols: int | None = None,
               scale: float = FONT_SCALE) -> np.ndarray:
    """Draw styled lines into an RGB image, one character per cell of a monospace grid (``rows`` x ``cols``
    cells at least, so that every frame of a video has the same size); coloured backgrounds are kept."""
    cw, ch, base = _cell(scale)
    rows = max(rows or 0, len(lines))
    cols = max(cols or 0, max((len(line) for line in lines), default=0))
    pad = 8
    img = np.full((2 * pad + rows * ch, 2 * pad + cols * cw, 3), BG, np.uint8)
    for r, line in enumerate(lines):
        y = pad + r * ch
        for c, (char, (fg, bg)) in enumerate(line):
            x = pad + c * cw
            if bg is not None:
                cv2.rectangle(img, (x, y), (x + cw - 1, y + ch - 1), COLORS[bg], -1)
            if char.strip():
                glyph = char if 32 < ord(char) < 127 else "?"
                w = cv2.getTextSize(glyph, FONT, scale, 1)[0][0]
                g_scale = scale if w < cw else scale * (cw - 1) / w
                w = min(w, cw - 1)
                color = COLORS[fg] if fg is not None else FG
                cv2.putText(img, glyph, (x + (cw - w) // 2, y + ch - base), FONT, g_scale, color, 1, cv2.LINE_AA)
    return img


# ------------------------------------------------------------------------------------------- the env
def env_metadata(src: PolicySource) -> dict[str, Any]:
    """The metadata of the source's env (``render_modes``, ``render_fps``); Atari and MinAtar: RGB frames."""
    if src.info.family != "gym":
        return {"render_modes": ["rgb_array"]}
    try:
        env = gym.make(src.info.id, **_env_kwargs(src))
    except TypeError as exc:
        raise RlmError(f"bad env_kwargs for {src.info.display_name}: {exc}") from None
    try:
        return dict(env.metadata)
    finally:
        env.close()


def make_text_env(src: PolicySource, seed: int) -> gym.Env:
    """The evaluation env (as ``rlmorning eval`` makes it) rendering text, reset with ``seed``."""
    try:
        env = gym.make(src.info.id, render_mode="ansi", **_env_kwargs(src))
    except TypeError as exc:
        raise RlmError(f"bad env_kwargs for {src.info.display_name}: {exc}") from None
    env.reset(seed=seed)
    return env


def _env_kwargs(src: PolicySource) -> dict[str, Any]:
    kwargs = dict(src.env_kwargs)
    kwargs.pop("autoreset_mode", None)
    return kwargs


ActionPart = tuple[str, list[str], int]
"""(name, label per value, value of the first label) of one action component."""


def action_parts(env: gym.Env) -> list[ActionPart]:
    """The action components: ``move/write/symbol`` for the algorithmic envs, ``bits`` for MultiBinary,
    ``action`` for Discrete, ``a0, a1 ...`` for other tuples of Discrete."""
    space, base = env.action_space, env.unwrapped
    if isinstance(space, gym.spaces.Discrete):
        return [("action", [str(space.start + i) for i in range(space.n)], int(space.start))]
    if isinstance(space, gym.spaces.MultiBinary):
        return [("bits", ["0", "1"], 0)]
    if isinstance(space, gym.spaces.Tuple) and all(isinstance(s, gym.spaces.Discrete) for s in space.spaces):
        subs = space.spaces
        moves, charmap = getattr(base, "MOVEMENTS", None), getattr(base, "charmap", None)
        if len(subs) == 3 and moves is not None and charmap is not None:
            return [("move", list(moves), 0), ("write", ["no", "yes"], 0), ("symbol", list(charmap[: subs[2].n]), 0)]
        return [(f"a{k}", [str(s.start + i) for i in range(s.n)], int(s.start)) for k, s in enumerate(subs)]
    return [("action", [], 0)]


def describe_action(action: Any, parts: list[ActionPart]) -> str:
    """``move=right write=yes symbol=C``, ``bits=01101100`` or ``action=3``."""
    if parts[0][0] == "bits":
        return "bits=" + "".join(str(int(b)) for b in np.asarray(action).reshape(-1))
    values = list(action) if isinstance(action, list | tuple) else [action]
    out = []
    for (name, labels, start), v in zip(parts, values, strict=False):
        i = int(v) - start
        out.append(f"{name}={labels[i] if 0 <= i < len(labels) else v}")
    return " ".join(out)


def describe_policy(outputs: dict[str, Any], parts: list[ActionPart]) -> str:
    """One line: value, action probabilities per component (the top 6 of long ones), bit probabilities or Q."""
    items = []
    if "value" in outputs:
        items.append(f"value {outputs['value']:+.3f}")
    for k, probs in enumerate(outputs.get("action_probs", [])):
        name, labels, _ = parts[k] if k < len(parts) else (f"a{k}", [], 0)
        order = range(len(probs)) if len(probs) <= 8 else sorted(range(len(probs)), key=lambda i: -probs[i])[:6]
        items.append(f"{name}: " + " ".join(f"{labels[i] if i < len(labels) else i} {probs[i]:.2f}" for i in order))
    if "bit_probs" in outputs:
        items.append("p(bit=1): " + " ".join(f"{p:.2f}" for p in outputs["bit_probs"]))
    if "q_values" in outputs:
        labels = parts[0][1] if parts else []
        items.append("Q: " + " ".join(f"{labels[i] if i < len(labels) else i} {q:+.2f}"
                                      for i, q in enumerate(outputs["q_values"])))
    return " | ".join(items)


def policy_outputs(agent: Any, obs: np.ndarray, state: Any) -> dict[str, Any]:
    """Row 0 of the agent's ``policy_outputs`` (or its Q-values) as JSON-ready numbers; {} without either."""
    if isinstance(agent, PolicyOutputs):
        return {k: _row0(v) for k, v in agent.policy_outputs(obs, state).items()}
    q = agent.q_values(obs) if isinstance(agent, QValues) else None
    return {} if q is None else {"q_values": _row0(q)}


def _row0(v: Any) -> Any:
    if isinstance(v, list | tuple):
        return [_row0(x) for x in v]
    if isinstance(v, torch.Tensor):
        v = v.detach().float().cpu().numpy()
    arr = np.asarray(v, dtype=np.float64)[0]
    return float(arr) if arr.ndim == 0 else [float(x) for x in arr]


def memory_focus(state: Any) -> str:
    """``read slot 3 (0.92)  write slot 4 (0.88)`` for an NTM core's state (first head of each), else ''."""
    if not isinstance(state, dict) or "read_w" not in state or "write_w" not in state:
        return ""
    out = []
    for kind in ("read", "write"):
        w = state[f"{kind}_w"][0, 0].detach().float().cpu()
        out.append(f"{kind} slot {int(w.argmax())} ({float(w.max()):.2f})")
    return "  ".join(out)


def _jsonable(a: Any) -> Any:
    if isinstance(a, list | tuple):
        return [_jsonable(x) for x in a]
    if isinstance(a, np.ndarray):
        return a.tolist()
    if isinstance(a, np.generic):
        return a.item()
    return a


# ------------------------------------------------------------------------------------------- playing
@dataclass
class Block:
    """What is shown of one state: the decision that led to it (``head``) and the env's rendering (``screen``)."""

    head: list[StyledLine]
    screen: list[StyledLine]


@dataclass
class TextEpisode:
    """One played episode: a :class:`Block` per state, how it ended, and the per-step data of the sidecar."""

    seed: int
    blocks: list[Block] = field(default_factory=list)
    end: str = ""
    per_step: dict[str, list[Any]] = field(default_factory=lambda: {
        k: [] for k in ("action", "greedy_action", "random_action", "reward", "score", "policy")})
    terminated: bool = False
    truncated: bool = False
    stopped_at_max_steps: bool = False

    @property
    def steps(self) -> int:
        return len(self.per_step["action"])

    @property
    def score(self) -> float:
        return float(sum(self.per_step["reward"]))


def _render(env: gym.Env) -> list[StyledLine]:
    text = env.render()
    if not isinstance(text, str):
        raise RlmError(f"{env.spec.id if env.spec else 'the env'} returned no text from render()")
    lines = parse_ansi(text.rstrip("\n"))
    while lines and not "".join(ch for ch, _ in lines[-1]).strip():
        lines.pop()
    return lines


def play_text(src: PolicySource, seed: int, max_steps: int | None = None) -> TextEpisode:
    """Play one evaluation episode on the text-rendering env: greedy actions, replaced with probability
    ``src.epsilon`` by the env's seeded random action (as ``rlmorning eval`` does)."""
    env = make_text_env(src, seed)
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    agent, parts = src.agent, action_parts(env)
    ep = TextEpisode(seed)
    try:
        obs, _ = env.reset(seed=seed)
        state = agent.initial_state(1)
        ep.blocks.append(Block(parse_ansi(f"reset (seed {seed})"), _render(env)))
        score = 0.0
        while not (ep.terminated or ep.truncated):
            if max_steps is not None and ep.steps >= max_steps:
                ep.stopped_at_max_steps = True
                break
            batch = np.asarray(obs)[None]
            outputs = policy_outputs(agent, batch, state)
            actions, state = agent.act(batch, state, explore=False)
            greedy = tuple(p[0] for p in actions) if isinstance(actions, tuple) else np.asarray(actions)[0]
            random = src.epsilon > 0 and bool(rng.random() < src.epsilon)
            action = env.action_space.sample() if random else greedy
            obs, reward, terminated, truncated, _ = env.step(action)
            score += float(reward)
            ep.terminated, ep.truncated = bool(terminated), bool(truncated)
            for k, v in (("action", _jsonable(action)), ("greedy_action", _jsonable(greedy)),
                         ("random_action", random), ("reward", float(reward)), ("score", score),
                         ("policy", outputs)):
                ep.per_step[k].append(v)
            head = [f"step {ep.steps}"]
            if outputs:
                head.append(f"policy   {describe_policy(outputs, parts)}")
            focus = memory_focus(state)
            if focus:
                head.append(f"memory   {focus}")
            tag = "random" if random else "greedy"
            head.append(f"action   {describe_action(action, parts)}  ({tag})")
            head.append(f"reward   {float(reward):+g}   score {fmt_score(score)}")
            ep.blocks.append(Block(parse_ansi("\n".join(head) + "\n"), _render(env)))
        end = "terminated" if ep.terminated else ("truncated" if ep.truncated else "stopped at --max-steps")
        ep.end = f"episode  {end} after {ep.steps} step{'' if ep.steps == 1 else 's'}, score {fmt_score(score)}"
    finally:
        env.close()
    return ep


# ------------------------------------------------------------------------------------------- writing
LEGEND = ("^ / x / * under a line mark the cells the env's rendering colours green / red / otherwise "
          "(algorithmic envs: the read head, a right or a wrong write)")


def _sidecar(src: PolicySource, ep: TextEpisode, **extra: Any) -> dict[str, Any]:
    return {
        "format": SIDECAR_FORMAT,
        **extra,
        **src.sidecar_header(),
        "seed": ep.seed,
        "steps": ep.steps,
        "score": ep.score,
        "terminated": ep.terminated,
        "truncated": ep.truncated,
        "stopped_at_max_steps": ep.stopped_at_max_steps,
        "per_step": ep.per_step,
    }


def record_text_episode(src: PolicySource, seed: int, out_dir: Path, *, max_steps: int | None = None,
                        advance: Callable[..., None] | None = None) -> dict[str, Path]:
    """Write one episode's text log ``<stem>-text.txt`` and its sidecar ``<stem>-text.json``."""

    ep = play_text(src, seed, max_steps)
    stem = video_stem(src, seed, overlay=True, saliency=False) + "-text"
    txt, side = out_dir / f"{stem}.txt", out_dir / f"{stem}.json"
    header = [f"rlmorning record: {src.title}", f"source: {src.source}  checkpoint: {src.checkpoint}",
              f"seed {seed}; {src.protocol}", LEGEND]
    rule = "-" * 100
    body = [plain_text(b.head + b.screen) for b in ep.blocks]
    txt.write_text("\n".join(header) + "\n\n" + f"\n{rule}\n".join(body) + f"\n{rule}\n{ep.end}\n")
    side.write_text(json.dumps(_sidecar(src, ep, text=txt.name), separators=(",", ":")))
    if advance is not None:
        advance(ep.steps + 1)
    return {"text": txt, "sidecar": side}


def record_text_video_episode(src: PolicySource, seed: int, out_dir: Path, *, fps: int | None = None,
                              max_steps: int | None = None, scale: int | None = None, gif: bool = False,
                              overlay: bool = True, advance: Callable[..., None] | None = None) -> dict[str, Path]:
    """Write one episode as ``<stem>.mp4`` (one frame per block, the text drawn with OpenCV) and ``<stem>.json``;
    without ``overlay`` the frames show the env's rendering only (no title, policy, action and reward lines)."""

    ep = play_text(src, seed, max_steps)
    stem = video_stem(src, seed, overlay=overlay, saliency=False)
    mp4, side = out_dir / f"{stem}.mp4", out_dir / f"{stem}.json"
    if overlay:
        frames = [parse_ansi(src.title) + [[]] + b.head + b.screen for b in ep.blocks]
        frames[-1] += [[]] + parse_ansi(ep.end)
    else:
        frames = [b.screen for b in ep.blocks]
    rows = max(len(f) for f in frames)
    cols = max(len(line) for f in frames for line in f)
    fps = fps or max(1, int(env_metadata(src).get("render_fps") or 4))
    writer = VideoWriter(mp4, fps)
    try:
        for f in frames:
            writer.write(pad_even(upscale(text_image(f, rows, cols), scale or 1)))
            if advance is not None:
                advance()
    finally:
        writer.close()
    side.write_text(json.dumps(_sidecar(src, ep, video=mp4.name, fps=fps, frames=writer.frames,
                                        frame_size=list(writer.size) if writer.size else None),
                               separators=(",", ":")))
    paths = {"video": mp4, "sidecar": side}
    if gif:
        width = writer.size[0] if writer.size else None  # full size: half-size text is unreadable
        paths["gif"] = mp4_to_gif(mp4, out_dir / f"{stem}.gif", fps=min(fps, 15), width=width)
    return paths
