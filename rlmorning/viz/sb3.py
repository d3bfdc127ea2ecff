"""Stable-Baselines3 DQN models as rlmorning agents, so ``record``/``plot-q`` show them the same way.

Observation mapping. rlmorning's Atari evaluation env gives ``uint8 [4, 84, 84]``: 84x84 gray frames
(Gymnasium ``AtariPreprocessing``: 30 no-op starts, frame skip 4 with a max over the last two frames,
INTER_AREA resize), FIRE on reset, the 4 newest frames stacked oldest-first with zeros before the
episode start. SB3's ``make_atari_env`` + ``VecFrameStack(4)`` gives ``uint8 [84, 84, 4]`` with the
same steps (``AtariWrapper``: no-op reset, MaxAndSkip(4), FireReset, WarpFrame 84x84 INTER_AREA) in
the same order with the same zero padding; SB3 transposes it to ``[4, 84, 84]`` (``VecTransposeImage``)
before the network, so a saved model's ``observation_space`` is usually ``[4, 84, 84]`` and rlmorning's
stack is passed unchanged. A model saved with a channels-last space ``[84, 84, 4]`` gets the stack
transposed (``obs.transpose(0, 2, 3, 1)``). The network scales uint8 by 1/255 itself (SB3's
``preprocess_obs``). Remaining differences: ALE's own grayscale vs OpenCV's RGB->gray (values differ
by at most a few levels), and the evaluation is on ``ALE/<Game>-v5`` (minimal action set, like
``<Game>NoFrameskip-v4``) with rlmorning's eval protocol (all lives, unclipped score).

Loading never unpickles. SB3's own ``DQN.load`` unpickles the zip's ``data`` (cloudpickle), so a model file
could run any code; here ``data`` is read as JSON only (the policy class, ``policy_kwargs``, the spaces'
shapes and ``num_timesteps`` from its plain fields), the Q-network is built from SB3's classes, and
``policy.pth`` is loaded with ``torch.load(..., weights_only=True)``: a zip whose ``policy.pth`` is not a
plain state dict of tensors is refused.
"""

from __future__ import annotations

import ast
import importlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rlmorning import envs as envs_mod
from rlmorning.agents.base import FeedForwardAgent
from rlmorning.config import TrainerConfig
from rlmorning.errors import RlmError

MAX_DATA_BYTES = 64 << 20
"""Largest ``data`` entry read (JSON of hyperparameters: kilobytes in a genuine model)."""
POLICIES = {"DQNPolicy", "CnnPolicy", "MultiInputPolicy"}
"""SB3's DQN policy classes (``MlpPolicy`` is ``DQNPolicy``)."""
CLASS_MODULES = {
    "activation_fn": ("torch.nn.modules.activation",),
    "features_extractor_class": ("stable_baselines3.common.torch_layers", "rlmorning.agents.nets.sb3"),
}
"""Where the classes named in ``policy_kwargs`` may come from (imported by name, never unpickled)."""
IGNORED_KWARGS = {"optimizer_class", "optimizer_kwargs"}
"""``policy_kwargs`` that only matter for training."""


class SB3QAgent(FeedForwardAgent):
    """An SB3 DQN's online Q-network behind rlmorning's agent interface (``q_values``, greedy ``act``)."""

    def __init__(self, q_net: torch.nn.Module, sb3_obs_shape: tuple[int, ...], num_actions: int,
                 device: torch.device, obs_shape: tuple[int, ...]) -> None:
        self.q_net = q_net
        self.q_net.eval()
        self.device = device
        self.num_actions = num_actions
        self.transpose = _transpose(sb3_obs_shape, obs_shape)

    def to_sb3(self, obs: np.ndarray) -> torch.Tensor:
        """rlmorning observations ``[B, *obs_shape]`` -> the tensor the SB3 network takes."""
        obs = np.asarray(obs)
        if self.transpose is not None:
            obs = obs.transpose(self.transpose)
        return torch.as_tensor(np.ascontiguousarray(obs), device=self.device)

    def q_values(self, obs: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return self.q_net(self.to_sb3(obs)).float()

    def act(self, obs: np.ndarray, state: Any, explore: bool = False) -> tuple[np.ndarray, Any]:
        return self.q_values(obs).argmax(dim=1).cpu().numpy(), state

    def observe(self, *args: Any, **kwargs: Any) -> None:
        raise RlmError("SB3 models are for viewing only; train them with SB3")

    def update(self, step: int) -> dict[str, float]:
        return {}

    def state_dict(self, include_buffers: bool = True) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _transpose(want: tuple[int, ...], obs_shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """None when the model takes rlmorning's observations as they are, ``(0, 2, 3, 1)`` for a channels-last
    model; another shape is one clear line."""
    if tuple(want) == tuple(obs_shape):
        return None
    if len(obs_shape) == 3 and tuple(want) == (obs_shape[1], obs_shape[2], obs_shape[0]):
        return (0, 2, 3, 1)
    raise RlmError(f"the SB3 model expects observations of shape {list(want)}, but this env gives "
                   f"{list(obs_shape)} (was it trained on another env or with other wrappers?)")


def load_sb3(path: str, env: str | None, device: str = "cpu", epsilon: float | None = None) -> Any:
    """Load an SB3 DQN ``.zip`` as a :class:`~rlmorning.viz.source.PolicySource` on rlmorning's eval env."""
    from rlmorning.viz.source import PolicySource

    model_path = Path(path)
    if not path or not model_path.is_file():
        raise RlmError(f"SB3 model '{path}' does not exist")
    if not env:
        raise RlmError("sb3: models need --env (e.g. --env Breakout)")
    info = envs_mod.resolve(env)
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise RlmError("sb3: models need stable-baselines3: pip install stable-baselines3") from None
    defaults = TrainerConfig()
    probe = envs_mod.make_eval(info, 0, max_frames=defaults.eval_max_frames)
    try:
        obs_space, act_space = probe.observation_space, probe.action_space
    finally:
        probe.close()
    if not isinstance(act_space, gym.spaces.Discrete) or not isinstance(obs_space, gym.spaces.Box):
        raise RlmError(f"sb3: DQN models need Box observations and Discrete actions; {info.display_name} has "
                       f"{obs_space} and {act_space}")
    n = int(act_space.n)
    dev = torch.device(device)
    q_net, sb3_shape, sb3_n, steps = _read_model(model_path, obs_space, dev)
    if sb3_n != n:
        raise RlmError(f"the SB3 model has {sb3_n} actions, {info.display_name} has {n}")
    agent = SB3QAgent(q_net, sb3_shape, n, dev, tuple(obs_space.shape))
    eps = defaults.eval_epsilon if epsilon is None else epsilon
    return PolicySource(
        agent=agent, info=info, source=f"sb3:{path}", checkpoint=str(model_path),
        checkpoint_step=steps or None, epsilon=eps,
        sticky_actions=defaults.eval_sticky_actions, max_frames=defaults.eval_max_frames, env_kwargs={},
        protocol=envs_mod.eval_protocol(info, sticky_actions=defaults.eval_sticky_actions, epsilon=eps,
                                        max_frames=defaults.eval_max_frames),
        out_dir=model_path.parent, run_dir=None, num_actions=n, action_meanings=envs_mod.action_meanings(info, n),
        agent_name="sb3-dqn",
    )


def _read_model(path: Path, env_obs_space: gym.spaces.Box,
                device: torch.device) -> tuple[torch.nn.Module, tuple[int, ...], int, int]:
    """(online Q-network, the model's observation shape, its number of actions, its num_timesteps) of an SB3 DQN
    zip, without unpickling anything: ``data`` as JSON, ``policy.pth`` with ``weights_only=True``."""
    def fail(why: str) -> RlmError:
        return RlmError(f"cannot load '{path}' as an SB3 DQN model: {why}")

    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            if "data" not in names or "policy.pth" not in names:
                raise fail("it holds no 'data' and 'policy.pth' (not saved by SB3's model.save())")
            if zf.getinfo("data").file_size > MAX_DATA_BYTES:
                raise fail("its 'data' entry is too large")
            data_text = zf.read("data").decode("utf-8")
            policy_bytes = zf.read("policy.pth")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, EOFError) as exc:
        raise fail(f"not a readable zip file ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})"
                   ) from None
    try:
        data = json.loads(data_text)
    except ValueError:
        raise fail("its 'data' entry is not JSON") from None
    if not isinstance(data, dict):
        raise fail("its 'data' entry is not a JSON object")
    policy_cls = _policy_class(data.get("policy_class"), fail)
    kwargs = _policy_kwargs(data.get("policy_kwargs") or {}, fail)
    sb3_shape = _space_shape(data.get("observation_space"), tuple(env_obs_space.shape), fail)
    n = _num_actions(data.get("action_space"), fail)
    transpose = _transpose(sb3_shape, tuple(env_obs_space.shape))
    low, high = env_obs_space.low, env_obs_space.high
    if transpose is not None:
        low, high = low.transpose(1, 2, 0), high.transpose(1, 2, 0)
    dtype = _dtype(data.get("observation_space"), env_obs_space.dtype, fail)
    obs_space = gym.spaces.Box(low=low, high=high, shape=sb3_shape, dtype=dtype)
    try:
        state = torch.load(io.BytesIO(policy_bytes), map_location=device, weights_only=True)
    except Exception as exc:  # a pickle with objects other than tensors, or a corrupt file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        why = "it holds objects other than tensors" if first.startswith("Weights only load failed") else first[:120]
        raise fail(f"policy.pth is not a plain state dict ({why}); it was not unpickled") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise fail("policy.pth is not a plain state dict of tensors")
    try:
        policy = policy_cls(obs_space, gym.spaces.Discrete(n), lambda _: 0.0, **kwargs)
        policy.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, AssertionError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise fail(f"its policy.pth does not fit a {policy_cls.__name__} with these settings: {first[:160]}"
                   ) from None
    policy.to(device).set_training_mode(False)
    steps = data.get("num_timesteps")
    return policy.q_net, sb3_shape, n, int(steps) if isinstance(steps, int) else 0


def _policy_class(entry: Any, fail: Any) -> type:
    """SB3's DQN policy class named in the JSON fields of ``data['policy_class']``."""
    from stable_baselines3.dqn import policies

    entry = entry if isinstance(entry, dict) else {}
    m = re.match(r"<function (\w+)\.__init__", str(entry.get("__init__", "")))
    name = m.group(1) if m else None
    if entry.get("__module__") != "stable_baselines3.dqn.policies" or name not in POLICIES:
        raise fail(f"its policy is not one of SB3's DQN policies (module {entry.get('__module__')!r})")
    return getattr(policies, name)


def _policy_kwargs(entry: Any, fail: Any) -> dict[str, Any]:
    """``policy_kwargs`` from the JSON: plain values as they are, classes by their allowed module and name."""
    if not isinstance(entry, dict):
        raise fail("its policy_kwargs are not readable")
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key.startswith(":") or key in IGNORED_KWARGS:
            continue
        if key in CLASS_MODULES:
            out[key] = _named_class(key, value, fail)
        elif key in ("net_arch", "features_extractor_kwargs", "normalize_images"):
            if isinstance(value, str):  # a value SB3 could only pickle
                raise fail(f"policy_kwargs '{key}' cannot be read without unpickling ({value[:60]})")
            out[key] = value
        else:
            raise fail(f"policy_kwargs '{key}' is not supported")
    return out


def _named_class(key: str, text: Any, fail: Any) -> type:
    """``"<class 'torch.nn.modules.activation.ReLU'>"`` -> the class, if its module is allowed for ``key``."""
    m = re.fullmatch(r"<class '([\w.]+)\.(\w+)'>", str(text))
    if not m or m.group(1) not in CLASS_MODULES[key]:
        raise fail(f"policy_kwargs '{key}' = {str(text)[:80]} is not a class rlmorning can rebuild")
    cls = getattr(importlib.import_module(m.group(1)), m.group(2), None)
    if not isinstance(cls, type) or not issubclass(cls, torch.nn.Module):
        raise fail(f"policy_kwargs '{key}' = {text} is not a torch module")
    return cls


def _space_shape(entry: Any, default: tuple[int, ...], fail: Any) -> tuple[int, ...]:
    """The observation space's shape from its JSON fields (``_shape``); the env's when absent."""
    raw = entry.get("_shape", entry.get("shape")) if isinstance(entry, dict) else None
    if raw is None:
        return default
    try:
        shape = ast.literal_eval(raw[:200]) if isinstance(raw, str) else raw
        return tuple(int(d) for d in shape)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise fail(f"its observation space has an unreadable shape {str(raw)[:40]}") from None


def _dtype(entry: Any, default: np.dtype, fail: Any) -> np.dtype:
    raw = entry.get("dtype") if isinstance(entry, dict) else None
    if raw is None:
        return default
    try:
        dtype = np.dtype(str(raw))
    except TypeError:
        raise fail(f"its observation space has an unknown dtype {str(raw)[:40]}") from None
    if dtype.kind not in "biuf":
        raise fail(f"its observation space has dtype {dtype}, not a number type")
    return dtype


def _num_actions(entry: Any, fail: Any) -> int:
    """``n`` of the action space from its JSON fields."""
    if not isinstance(entry, dict) or "Discrete" not in str(entry.get(":type:", "")):
        raise fail("its action space is not Discrete (or not readable)")
    try:
        n, start = int(entry.get("n")), int(entry.get("start", 0))
    except (TypeError, ValueError):
        raise fail("its action space has no readable size") from None
    if n < 1 or start != 0:
        raise fail(f"its action space Discrete({n}, start={start}) is not supported")
    return n
