"""Configs: typed dataclasses, YAML presets in ``configs/``, and ``--set key=value`` overrides.

A run's configuration is one mapping, as written to ``config.yaml`` in the run directory::

    agent: dqn
    env: Breakout
    steps: 50000        # a TrainerConfig key
    lr: 0.0001          # a key of the agent's config dataclass
    model: {codec: vae, batch_size: 32}   # a nested config dataclass: a section of its own keys

A key a config class lists in ``moved_keys`` (old name -> new place) is one line naming the new place; an
existing run's config.yaml is first translated by the class's ``upgrade(flat)`` (``split_config(upgrade=True)``).

Resolution order (later wins): dataclass defaults -> preset (``--config NAME|PATH``, or the agent's
default preset for the env family) -> ``--set`` overrides -> explicit CLI flags (``--steps`` ...).
Unknown keys are errors that name the valid keys; values are checked against the field's type.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rlmorning.errors import RlmError, unknown_name, unreadable


@dataclass
class TrainerConfig:
    """Settings of the training loop itself; nothing here is agent- or Atari-specific."""

    steps: int = 50_000
    """Environment steps to train for, summed over parallel envs (one Atari step = 4 frames)."""
    seed: int = 0
    num_envs: int = 1
    device: str = "auto"
    """auto | cpu | cuda | cuda:N"""
    eval_every: int = 10_000
    eval_episodes: int = 10
    final_eval_episodes: int = 0
    """Episodes of the evaluation at the end of training (0: eval_episodes); Atari 100k reports 100."""
    eval_epsilon: float = 0.05
    """Epsilon of the 'greedy' evaluation policy (Mnih et al. 2015 used 0.05)."""
    eval_sticky_actions: float = 0.0
    """Sticky-action probability in evaluation (Machado et al. 2018 recommend 0.25)."""
    eval_max_frames: int = 108_000
    """Evaluation episode cap in emulator frames (30 minutes of play at 60 Hz)."""
    checkpoint_every: int = 10_000
    log_every: int = 1_000
    heldout_states: int = 500
    """States gathered by a random policy at the start; their mean max-Q is logged at every eval."""
    save_replay: bool = True
    """Store the replay buffer with the checkpoint so --resume continues exactly (large for Atari)."""
    torch_threads: int = 0
    """CPU threads for torch; 0 = auto, resolved when the run starts and written to config.yaml: 1 for small
    networks, the idle cores of this process for Atari-sized frames (rlmorning.threads)."""
    env_kwargs: dict = field(default_factory=dict)
    """Options passed to the env family's factory. Atari: frame_skip, noop_max, episodic_life, clip_rewards,
    sticky_actions, max_frames, frame_size, backend (auto | cpp | python: ale-py's C++ vector env or its Python
    twin, whose state checkpoints hold; auto takes the twin for one env), num_threads (C++ only); MinAtar:
    max_steps; a Gymnasium id: its own keyword arguments."""
    progress: bool = True


def _is_optional(tp: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return True, args[0]
    return False, tp


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotated type ``tp`` and convert where lossless (int->float, '1e5'->int)."""
    optional, tp = _is_optional(tp)
    if value is None:
        if optional:
            return None
        raise RlmError(f"config key '{key}' may not be null")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise RlmError(f"config key '{key}' expects a mapping of its keys ({key}.KEY), got {value!r}")
        return build(tp, value, prefix=f"{key}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise RlmError(f"config key '{key}' expects true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise RlmError(f"config key '{key}' expects an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                f = float(value.replace("_", ""))
            except ValueError:
                f = None
            if f is not None and f.is_integer():
                return int(f)
        raise RlmError(f"config key '{key}' expects an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise RlmError(f"config key '{key}' expects a number, got {value!r}")
        number = None
        if isinstance(value, int | float | str):
            try:
                number = float(value)
            except ValueError:
                pass
            except OverflowError:  # an int too large for a float
                number = math.inf
        if number is None:
            raise RlmError(f"config key '{key}' expects a number, got {value!r}")
        if not math.isfinite(number):
            raise RlmError(f"config key '{key}' expects a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        raise RlmError(f"config key '{key}' expects a string, got {value!r}")
    if tp is dict or typing.get_origin(tp) is dict:
        if isinstance(value, dict):
            return dict(value)
        raise RlmError(f"config key '{key}' expects a mapping, got {value!r}")
    if tp is list or typing.get_origin(tp) is list:
        if isinstance(value, list | tuple):
            return list(value)
        raise RlmError(f"config key '{key}' expects a list, got {value!r}")
    return value


MAX_SEED = 2**31 - 1
"""Largest seed: offsets are added to it (eval envs, held-out states) and some RNGs take only 32-bit seeds."""


def check_seed(name: str, seed: int) -> None:
    """A seed must be in ``[0, MAX_SEED]`` (Gymnasium rejects negative seeds, torch ones beyond 64 bits)."""
    if not 0 <= seed <= MAX_SEED:
        raise RlmError(f"{name} must be an integer in [0, {MAX_SEED}], got {seed}")


def check_probability(name: str, value: float | None) -> None:
    """A probability (``--epsilon``, ``--sticky-actions``) must be in [0, 1]; None means the default."""
    if value is not None and not 0.0 <= value <= 1.0:  # NaN fails too
        raise RlmError(f"{name} must be in [0, 1], got {value}")


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a config dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Instantiate config dataclass ``cls`` from ``values``, type-checked; a nested config dataclass is built from
    its mapping. Keys are named ``prefix + key`` in errors; an unknown key is an error naming the valid ones."""
    types_ = field_types(cls)
    for key in values:
        if key not in types_:
            moved = getattr(cls, "moved_keys", {}).get(key)
            if moved:
                raise RlmError(f"config key '{prefix}{key}' moved: use {moved}")
            raise unknown_name("config key", prefix + key, [prefix + k for k in types_])
    return cls(**{k: coerce(prefix + k, v, types_[k]) for k, v in values.items()})


def parse_set(item: str) -> tuple[str, Any]:
    """Parse one ``--set key=value``; the value is read as YAML (``3e-4``, ``true``, ``[64, 64]``)."""
    if "=" not in item:
        raise RlmError(f"--set expects key=value, got '{item}'")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise RlmError(f"--set expects key=value, got '{item}'")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


COMPONENT_KEYS = ("encoder", "codec", "dynamics", "prior")
"""Keys that name a swappable component; ``<key>_kwargs`` holds that component's arguments."""
_NOTES_SHOWN: set[str] = set()


def apply_overrides(config: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """Apply ``--set`` items to a config; dotted keys set entries of mapping-valued keys, at any depth
    (``encoder_kwargs.channels=[16,32]``, ``model.batch_size=64``, ``model.codec_kwargs.num_codes=32``).

    Where the config names a component (``encoder``, ``model.codec``, ... : :data:`COMPONENT_KEYS`) and the
    overrides end with another name for it, the config's ``<key>_kwargs`` are dropped: they are the old
    component's arguments (the ``atari100k`` preset's ``padding: same`` means nothing to ``impala``). A note
    says so on stderr (once per process) unless the overrides set ``<key>_kwargs`` themselves; such items
    apply whatever their order."""
    parsed = [(key, value, _key_parts(key)) for key, value in map(parse_set, items)]
    final = {tuple(parts): value for _, value, parts in parsed}  # the value that wins for each key
    out = dict(config)
    for parts, value in final.items():
        *heads, last = parts
        node = _get_path(config, heads)
        if last not in COMPONENT_KEYS or not isinstance(node, dict) or last not in node or node[last] == value:
            continue
        stale = node.get(f"{last}_kwargs")
        if not isinstance(stale, dict) or not stale:
            continue
        sibling = (*heads, f"{last}_kwargs")
        _set_path(out, list(sibling), {}, ".".join(sibling))
        if not any(p[:len(sibling)] == sibling for p in final) and _known_component(last, value):
            name = ".".join(sibling)
            _note(f"{'.'.join(parts)}={value} replaces '{node[last]}': its {name} {dict(stale)} are dropped "
                  f"(set {name}.NAME=VALUE for the new one)")
    for key, value, parts in parsed:
        _set_path(out, parts, value, key)
    return out


def _known_component(key: str, value: object) -> bool:
    """False for an encoder name that does not exist (its one-line error comes later; no note before it)."""
    if key != "encoder":
        return True
    from rlmorning.agents.nets.encoders import ENCODERS

    return value == "auto" or value in ENCODERS.names()


def _note(message: str) -> None:
    if message not in _NOTES_SHOWN:
        _NOTES_SHOWN.add(message)
        print(f"note: {message}", file=sys.stderr)


def _key_parts(key: str) -> list[str]:
    parts = key.split(".")
    if not all(parts):
        raise RlmError(f"--set: '{key}' is not a key (empty part between dots)")
    return parts


def _get_path(config: dict[str, Any], parts: list[str]) -> Any:
    node: Any = config
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _set_path(out: dict[str, Any], parts: list[str], value: Any, key: str) -> None:
    """Set ``out[p0][p1]...[pn] = value``, copying each mapping on the way (the input config is not changed)."""
    *heads, last = parts
    node = out
    for i, head in enumerate(heads):
        inner = node.get(head)
        if inner is not None and not isinstance(inner, dict):
            raise RlmError(f"--set {key}: config key '{'.'.join(heads[:i + 1])}' is not a mapping")
        node[head] = dict(inner or {})
        node = node[head]
    node[last] = value


def read_text_file(path: Path) -> str:
    """The UTF-8 text of a file the user named; an unreadable or binary file is one clear line."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(path, exc) from None


def preset_names() -> list[str]:
    """Names of the YAML presets shipped in ``configs/``."""
    root = resources.files("rlmorning.configs")
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_preset(name_or_path: str) -> dict[str, Any]:
    """Load a preset by name (``atari100k``, ``dqn_atari``) or by path to a YAML file (``safe_load``)."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.exists():
        if path.is_dir():
            hint = f"; did you mean '{path / 'config.yaml'}'?" if (path / "config.yaml").is_file() else ""
            raise RlmError(f"config '{name_or_path}' is a folder, not a YAML file{hint}")
        if not path.is_file():
            raise RlmError(f"config file '{name_or_path}' does not exist")
        text = read_text_file(path)
    else:
        names = preset_names()
        if name_or_path not in names:
            raise unknown_name("config preset", name_or_path, names)
        text = (resources.files("rlmorning.configs") / f"{name_or_path}.yaml").read_text()
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RlmError(f"config '{name_or_path}' is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise RlmError(f"config '{name_or_path}' must be a mapping of key: value")
    return data


@dataclass
class RunConfig:
    """A fully resolved run: which agent on which env, the trainer's settings and the agent's."""

    agent: str
    env: str
    trainer: TrainerConfig
    agent_config: Any

    def to_flat(self) -> dict[str, Any]:
        """The flat mapping written to ``config.yaml``."""
        out: dict[str, Any] = {"agent": self.agent, "env": self.env}
        out.update(dataclasses.asdict(self.trainer))
        out.update(dataclasses.asdict(self.agent_config))
        return out


def split_config(flat: dict[str, Any], agent_config_cls: type, upgrade: bool = False,
                 warn: bool = True) -> tuple[TrainerConfig, Any]:
    """Split a run's mapping into TrainerConfig and the agent's config; unknown keys are errors, and a key the
    agent's config lists in ``moved_keys`` is one line naming where it went.

    ``upgrade=True`` (an existing run's config.yaml) first lets the config class translate the keys of an
    earlier version (its ``upgrade(flat)``, which may return a warning line, printed to stderr unless ``warn`` is
    False)."""
    upgrader = getattr(agent_config_cls, "upgrade", None)
    if upgrade and upgrader is not None:
        flat = dict(flat)
        note = upgrader(flat)
        if note and warn:
            print(f"warning: {note}", file=sys.stderr)
    trainer_keys = set(field_types(TrainerConfig))
    agent_keys = set(field_types(agent_config_cls))
    clash = trainer_keys & agent_keys
    if clash:
        raise ValueError(f"{agent_config_cls.__name__} reuses trainer keys: {sorted(clash)}")
    trainer_vals, agent_vals = {}, {}
    for key, value in flat.items():
        if key in ("agent", "env"):
            continue
        if key in trainer_keys:
            trainer_vals[key] = value
        elif key in agent_keys:
            agent_vals[key] = value
        elif key in getattr(agent_config_cls, "moved_keys", {}):
            raise RlmError(f"config key '{key}' moved: use {agent_config_cls.moved_keys[key]}")
        else:
            raise unknown_name("config key", key, trainer_keys | agent_keys)
    return build(TrainerConfig, trainer_vals), build(agent_config_cls, agent_vals)
