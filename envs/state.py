"""Saving and restoring the state of vector envs, so ``--resume`` continues exactly.

Supported:

* a vector env whose every layer (the env and each ``VectorWrapper`` around it) defines
  ``checkpoint_state() -> data`` and ``restore_checkpoint_state(data)``: the Atari training env with the
  Python backend (:class:`~rlmorning.envs.atari_python.PythonAtariVectorEnv` under ``_GameEndInfo`` and
  ``FrameStack``);
* ``gymnasium.vector.SyncVectorEnv`` of envs that either

- define ``checkpoint_state() -> data`` and ``restore_checkpoint_state(data)``, ``data`` being plain
  values (ints, floats, strings, None, numpy arrays, tensors, and lists/tuples/dicts of them, stored by
  :func:`pack_tree` so that ``torch.load(weights_only=True)`` reads them back): rlmorning's algorithmic
  envs and NTM tasks (tapes, targets, heads, time, curriculum), MinAtar (the game's variables, the last
  action, its random generator); a ``checkpoint_state()`` that returns None opts out; or
- keep their whole state in ``unwrapped.state`` (the classic-control family: CartPole, Acrobot,
  MountainCar, Pendulum ...).

Besides, every sub-env's RNG (``np_random``) and its wrappers' counters (``TimeLimit``'s elapsed steps,
the order-enforcing and env-checker flags) are saved. Other envs (the ALE's C++ vector env, Gymnasium envs
without a ``state``) return None: a resumed run starts fresh episodes there, and the trainer says so.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

# counters and flags of Gymnasium's standard wrappers (TimeLimit, OrderEnforcing, PassiveEnvChecker)
_WRAPPER_COUNTERS = ("_elapsed_steps", "_has_reset", "checked_reset", "checked_step", "checked_render")


def pack_tree(x: Any) -> Any:
    """Nested tensors, arrays, tuples, lists, dicts and scalars as data ``torch.load(weights_only=True)``
    reads back; :func:`unpack_tree` restores the same types (arrays stay arrays, tuples stay tuples)."""
    if x is None or isinstance(x, bool | int | float | str):
        return x
    if isinstance(x, torch.Tensor):
        return ("tensor", x.detach().cpu().clone(), x.device.type)
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise TypeError("object arrays cannot be checkpointed")
        return ("ndarray", torch.from_numpy(np.array(x, copy=True, order="C")))
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple | list):
        return ("tuple" if isinstance(x, tuple) else "list", [pack_tree(v) for v in x])
    if isinstance(x, dict):
        return ("dict", {k: pack_tree(v) for k, v in x.items()})
    raise TypeError(f"a {type(x).__name__} cannot be checkpointed (use tensors, arrays, tuples, lists, dicts)")


def unpack_tree(x: Any, device: torch.device | str | None = None) -> Any:
    """Inverse of :func:`pack_tree`; tensors that were not on the CPU go to ``device`` (default: where saved)."""
    if not isinstance(x, tuple):
        return x
    kind, value = x[0], x[1]
    if kind == "tensor":
        if x[2] == "cpu":
            return value.cpu()
        return value if device is None else value.to(device)
    if kind == "ndarray":
        return value.cpu().numpy().copy()
    if kind == "tuple":
        return tuple(unpack_tree(v, device) for v in value)
    if kind == "list":
        return [unpack_tree(v, device) for v in value]
    if kind == "dict":
        return {k: unpack_tree(v, device) for k, v in value.items()}
    raise ValueError(f"unknown packed kind '{kind}'")


def _wrappers(env: gym.Env) -> list[gym.Wrapper]:
    out = []
    while isinstance(env, gym.Wrapper):
        out.append(env)
        env = env.env
    return out


def _time_limit(env: gym.Env) -> gym.wrappers.TimeLimit | None:
    return next((w for w in _wrappers(env) if isinstance(w, gym.wrappers.TimeLimit)), None)


def _capture_wrappers(env: gym.Env) -> list[dict[str, Any]]:
    out = []
    for w in _wrappers(env):
        values = {k: getattr(w, k) for k in _WRAPPER_COUNTERS if isinstance(getattr(w, k, None), bool | int)}
        saver = getattr(w, "checkpoint_state", None)
        data = pack_tree(saver()) if callable(saver) else None
        out.append({"type": type(w).__name__, "counters": values, "data": data})
    return out


def _restore_wrappers(env: gym.Env, saved: list[dict[str, Any]]) -> None:
    for w, s in zip(_wrappers(env), saved, strict=True):
        for k, v in s["counters"].items():
            setattr(w, k, v)
        if s["data"] is not None:
            w.restore_checkpoint_state(unpack_tree(s["data"]))  # type: ignore[attr-defined]


def _capture_one(e: gym.Env) -> dict[str, Any] | None:
    base = e.unwrapped
    saver = getattr(base, "checkpoint_state", None)
    out: dict[str, Any]
    if callable(saver):
        data = saver()
        if data is None:
            return None
        out = {"data": pack_tree(data)}
    else:
        raw = getattr(base, "state", None)
        if raw is None or not hasattr(base, "np_random"):
            return None
        out = {
            "state": torch.from_numpy(np.array(raw, dtype=np.float64)),
            "dtype": str(np.asarray(raw).dtype),
            "steps_beyond_terminated": getattr(base, "steps_beyond_terminated", None),
        }
    out["rng"] = base.np_random.bit_generator.state
    out["wrappers"] = _capture_wrappers(e)
    return out


def _fits(e: gym.Env, s: dict[str, Any]) -> bool:
    """Whether the saved sub-env state ``s`` was captured from an env like ``e``."""
    custom = callable(getattr(e.unwrapped, "checkpoint_state", None))
    if custom != ("data" in s):
        return False
    if "wrappers" in s:
        return [type(w).__name__ for w in _wrappers(e)] == [w["type"] for w in s["wrappers"]]
    return True


def _layers(env: Any) -> list[Any]:
    """``env`` and the vector envs it wraps, outermost first."""
    out = [env]
    while isinstance(out[-1], gym.vector.VectorWrapper):
        out.append(out[-1].env)
    return out


def _saves_itself(layer: Any) -> bool:
    return callable(getattr(layer, "checkpoint_state", None)) and callable(
        getattr(layer, "restore_checkpoint_state", None))


def capture_env_state(env: Any) -> dict[str, Any] | None:
    """Plain-data state (tensors, ints, dicts) of a supported vector env, else None."""
    layers = _layers(env)
    if all(_saves_itself(layer) for layer in layers):
        return {"kind": "layers", "types": [type(layer).__name__ for layer in layers],
                "data": [pack_tree(layer.checkpoint_state()) for layer in layers]}
    if not isinstance(env, gym.vector.SyncVectorEnv):
        return None
    subs = []
    for e in env.envs:
        s = _capture_one(e)
        if s is None:
            return None
        subs.append(s)
    return {
        "kind": "sync",
        "envs": subs,
        "autoreset": torch.from_numpy(np.asarray(env._autoreset_envs, dtype=bool).copy()),
    }


def restore_env_state(env: Any, state: dict[str, Any]) -> bool:
    """Restore what :func:`capture_env_state` saved; False (nothing changed) when ``env`` is not of that kind."""
    if state.get("kind") == "layers":
        layers = _layers(env)
        if [type(layer).__name__ for layer in layers] != state["types"] or not all(map(_saves_itself, layers)):
            return False
        for layer, data in zip(layers, state["data"], strict=True):
            layer.restore_checkpoint_state(unpack_tree(data))
        return True
    if state.get("kind") != "sync" or not isinstance(env, gym.vector.SyncVectorEnv):
        return False
    if len(state["envs"]) != len(env.envs):
        return False
    if not all(_fits(e, s) for e, s in zip(env.envs, state["envs"], strict=True)):
        return False
    for e, s in zip(env.envs, state["envs"], strict=True):
        base = e.unwrapped
        if "data" in s:
            base.restore_checkpoint_state(unpack_tree(s["data"]))
        else:
            base.state = s["state"].numpy().astype(s["dtype"])
            if s["steps_beyond_terminated"] is not None or hasattr(base, "steps_beyond_terminated"):
                base.steps_beyond_terminated = s["steps_beyond_terminated"]
        base.np_random.bit_generator.state = s["rng"]
        if "wrappers" in s:
            _restore_wrappers(e, s["wrappers"])
        else:  # checkpoints written before wrapper counters were saved
            limit = _time_limit(e)
            if limit is not None and s.get("elapsed") is not None:
                limit._elapsed_steps = s["elapsed"]
    env._autoreset_envs = state["autoreset"].numpy().copy()
    return True
