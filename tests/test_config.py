"""Config resolution: typed coercion, --set overrides, presets, precedence and DQN validation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from rlmorning import api
from rlmorning import config as config_module
from rlmorning.agents import AGENTS, AgentSetting, DQNAgent, DQNConfig
from rlmorning.agents.nets.encoders import ENCODERS
from rlmorning.config import (
    TrainerConfig,
    apply_overrides,
    coerce,
    field_types,
    load_preset,
    parse_set,
    preset_names,
    split_config,
)
from rlmorning.errors import RlmError

FAMILY_ENV = {"atari": "Breakout", "minatar": "MinAtar/Breakout", "gym": "CartPole-v1"}


def env_for_preset(name: str) -> str:
    """An env of the family a preset is written for."""
    if "minatar" in name:
        return "MinAtar/Breakout"
    if "atari" in name:
        return "Breakout"
    return "CartPole-v1"


# ------------------------------------------------------------------------------------------- coerce
@pytest.mark.parametrize("value", ["5e4", "50000", "50_000", 50000.0, 50000])
def test_coerce_int_accepts_lossless_values(value):
    out = coerce("steps", value, int)
    assert out == 50000
    assert type(out) is int


@pytest.mark.parametrize("value", [2.5, "2.5", "abc", True, [1], "1e-3"])
def test_coerce_int_rejects_non_integers(value):
    with pytest.raises(RlmError, match="'steps' expects an integer"):
        coerce("steps", value, int)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("true", True), ("True", True), ("yes", True), ("1", True),
     ("false", False), ("no", False), ("0", False), ("FALSE", False)],
)
def test_coerce_bool(value, expected):
    assert coerce("double", value, bool) is expected


@pytest.mark.parametrize("value", ["maybe", 1, 0, 1.0, "on"])
def test_coerce_bool_rejects(value):
    with pytest.raises(RlmError, match="'double' expects true/false"):
        coerce("double", value, bool)


def test_coerce_float():
    out = coerce("lr", 1, float)
    assert out == 1.0 and type(out) is float
    assert coerce("lr", "3e-4", float) == pytest.approx(3e-4)
    assert coerce("lr", 0.5, float) == 0.5
    for bad in ("abc", True, [0.1], {"a": 1}):
        with pytest.raises(RlmError, match="'lr' expects a number"):
            coerce("lr", bad, float)


def test_coerce_str_dict_list_and_null():
    assert coerce("encoder", "mlp", str) == "mlp"
    with pytest.raises(RlmError, match="'encoder' expects a string"):
        coerce("encoder", 5, str)
    src = {"hidden": [64]}
    out = coerce("encoder_kwargs", src, dict)
    assert out == src and out is not src
    with pytest.raises(RlmError, match="expects a mapping"):
        coerce("encoder_kwargs", [64], dict)
    assert coerce("xs", (1, 2), list[int]) == [1, 2]
    with pytest.raises(RlmError, match="expects a list"):
        coerce("xs", "1,2", list)
    assert coerce("maybe", None, int | None) is None
    assert coerce("maybe", "7", int | None) == 7
    with pytest.raises(RlmError, match="may not be null"):
        coerce("steps", None, int)


# ---------------------------------------------------------------------------------- --set overrides
def test_parse_set_reads_yaml_values():
    assert parse_set("lr=3e-4") == ("lr", "3e-4")  # YAML 1.1 keeps this a string; coerce makes it a float
    assert parse_set("lr=0.001") == ("lr", 0.001)
    assert parse_set("double=true") == ("double", True)
    assert parse_set(" steps =100") == ("steps", 100)
    assert parse_set("encoder_kwargs.hidden=[64, 64]") == ("encoder_kwargs.hidden", [64, 64])
    assert parse_set("encoder=") == ("encoder", "")
    assert parse_set("a=b=c") == ("a", "b=c")
    assert parse_set("x=[1,") == ("x", "[1,")  # invalid YAML stays the raw string


@pytest.mark.parametrize("item", ["lr", "=5", "  =5", ""])
def test_parse_set_errors(item):
    with pytest.raises(RlmError, match="--set expects key=value"):
        parse_set(item)


def test_apply_overrides_flat_and_dotted():
    base = {"lr": 0.1, "encoder_kwargs": {"depth": 2}}
    out = apply_overrides(base, ["lr=0.5", "encoder_kwargs.hidden=[64,64]", "double=yes"])
    assert out == {"lr": 0.5, "encoder_kwargs": {"depth": 2, "hidden": [64, 64]}, "double": True}
    assert base == {"lr": 0.1, "encoder_kwargs": {"depth": 2}}  # input not mutated
    # a dotted key creates the mapping when absent; later items win
    out = apply_overrides({}, ["encoder_kwargs.hidden=[8]", "encoder_kwargs.hidden=[16]"])
    assert out == {"encoder_kwargs": {"hidden": [16]}}
    with pytest.raises(RlmError):
        apply_overrides({}, ["no_equals_sign"])


def test_switching_a_component_drops_the_kwargs_of_the_old_one(capsys: pytest.CaptureFixture[str]) -> None:
    config_module._NOTES_SHOWN.clear()
    base = {"encoder": "nature", "encoder_kwargs": {"padding": "same"}, "model": {"codec": "vae",
                                                                             "codec_kwargs": {"depth": 2}}}
    out = apply_overrides(base, ["encoder=impala"])
    assert out["encoder_kwargs"] == {} and base["encoder_kwargs"] == {"padding": "same"}
    assert "encoder_kwargs {'padding': 'same'} are dropped" in capsys.readouterr().err
    apply_overrides(base, ["encoder=impala"])
    assert capsys.readouterr().err == ""  # the same note once per process (a sweep resolves many trials)
    apply_overrides(base, ["encoder=nosuch"])  # no note about a name whose one-line error comes next
    assert capsys.readouterr().err == ""
    # kwargs for the new encoder apply whatever their order, and then there is nothing to note
    config_module._NOTES_SHOWN.clear()
    for items in (["encoder_kwargs.channels=[8]", "encoder=impala"], ["encoder=impala", "encoder_kwargs.channels=[8]"]):
        assert apply_overrides(base, items)["encoder_kwargs"] == {"channels": [8]}
    assert capsys.readouterr().err == ""
    # the value that wins counts: back to the config's own encoder keeps its kwargs (a sweep grid after --set)
    assert apply_overrides(base, ["encoder=impala", "encoder=nature"])["encoder_kwargs"] == {"padding": "same"}
    assert apply_overrides(base, ["encoder=nature"])["encoder_kwargs"] == {"padding": "same"}
    assert capsys.readouterr().err == ""
    nested = apply_overrides(base, ["model.codec=grid-ae"])["model"]
    assert nested == {"codec": "grid-ae", "codec_kwargs": {}} and base["model"]["codec_kwargs"] == {"depth": 2}
    # kwargs kept where the config does not name the component (they were for its default), or the key is no
    # component (a run's env and env_kwargs)
    assert apply_overrides({"encoder_kwargs": {"hidden": [8]}}, ["encoder=mlp"])["encoder_kwargs"] == {"hidden": [8]}
    assert apply_overrides({"env": "A", "env_kwargs": {"x": 1}}, ["env=B"])["env_kwargs"] == {"x": 1}


@pytest.mark.parametrize("encoder", sorted(set(ENCODERS.names()) - {"nature"}))
def test_the_atari100k_preset_runs_with_every_other_encoder(encoder: str) -> None:
    cfg = api.resolve_run_config("dqn", "Breakout", config="atari100k", overrides=[f"encoder={encoder}"])
    assert (cfg.agent_config.encoder, cfg.agent_config.encoder_kwargs) == (encoder, {})
    setting = AgentSetting(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), gym.spaces.Discrete(4), num_envs=1,
                           frame_stack=4, total_steps=1000, device=torch.device("cpu"), seed=0)
    agent = AGENTS.get("dqn").factory(cfg.agent_config, setting)  # the preset's padding=same no longer reaches it
    assert agent.online(torch.zeros(1, 4, 84, 84)).shape == (1, 4)


def test_dotted_override_reaches_the_agent_config():
    cfg = api.resolve_run_config("dqn", "CartPole-v1", overrides=["encoder_kwargs.hidden=[64,64]"])
    assert cfg.agent_config.encoder_kwargs == {"hidden": [64, 64]}
    assert isinstance(cfg.agent_config.encoder_kwargs, dict)


def test_nested_section_overrides_and_errors():
    cfg = api.resolve_run_config("dqn", "MinAtar/Breakout", config="dyna_minatar",
                                 overrides=["model.batch_size=64", "model.codec_kwargs.depth=2", "model.mode=simple"])
    m = cfg.agent_config.model
    assert (m.batch_size, m.codec_kwargs, m.mode, m.codec) == (64, {"depth": 2}, "simple", "vae")
    assert cfg.to_flat()["model"]["batch_size"] == 64  # written to config.yaml as a nested mapping
    plain = api.resolve_run_config("dqn", "MinAtar/Breakout", overrides=["model.codec=vae"])
    assert plain.agent_config.model.dynamics == "gru"  # one key of the section turns it on, the rest defaults
    assert api.resolve_run_config("dqn", "MinAtar/Breakout").agent_config.model is None
    with pytest.raises(RlmError, match=r"^unknown config key 'model.batchsize'. Did you mean 'model.batch_size'\?"):
        api.resolve_run_config("dqn", "MinAtar/Breakout", config="dyna_minatar", overrides=["model.batchsize=3"])
    with pytest.raises(RlmError, match="^config key 'model.seq_len' expects an integer, got 'x'$"):
        api.resolve_run_config("dqn", "MinAtar/Breakout", config="dyna_minatar", overrides=["model.seq_len=x"])
    with pytest.raises(RlmError, match="^config key 'model' expects a mapping"):
        api.resolve_run_config("dqn", "MinAtar/Breakout", overrides=["model=vae-gru"])
    with pytest.raises(RlmError, match="'lr' is not a mapping"):
        apply_overrides({"lr": 0.1}, ["lr.x=1"])


@pytest.mark.parametrize(("item", "new"), [("model_batch_size=64", "model.batch_size"),
                                           ("world_model=vae-gru", "model.codec and model.dynamics"),
                                           ("world_model_kwargs.latent_dim=8", "its keys inside model"),
                                           ("imagined_ratio=0.5", "model.imagined_ratio"),
                                           ("model_mode=simple", "model.mode")])
def test_flat_world_model_keys_name_their_new_place(item, new):
    with pytest.raises(RlmError) as exc:
        api.resolve_run_config("dqn", "MinAtar/Breakout", config="dyna_minatar", overrides=[item])
    msg = str(exc.value)
    assert msg.startswith(f"config key '{item.split('=')[0].split('.')[0]}' moved: use {new}") and "\n" not in msg


def test_an_older_runs_flat_world_model_keys_are_translated(capsys):
    from rlmorning.agents.dyna import DynaDQNConfig

    old = {"lr": 0.1, "world_model": "vae-mdn-gru", "world_model_kwargs": {"latent_dim": 8}, "model_mode": "simple",
           "model_batch_size": 16, "imagined_ratio": 1.0, "kstep_every": 0}
    _, cfg = split_config(old, DynaDQNConfig, upgrade=True)
    m = cfg.model
    assert (m.codec, m.dynamics, m.latent_dim, m.mode, m.batch_size, m.kstep_every) == ("vae", "mdn-gru", 8, "simple",
                                                                                         16, 0)
    assert capsys.readouterr().err.count("\n") == 1  # one warning line
    # a model-free run's config.yaml held every flat key at its default: dropped without a word
    _, cfg = split_config({"lr": 0.1, "world_model": "", "model_batch_size": 32}, DynaDQNConfig, upgrade=True)
    assert cfg.model is None and capsys.readouterr().err == ""
    with pytest.raises(RlmError, match="moved"):  # a preset or --set is not translated
        split_config({"world_model": ""}, DynaDQNConfig)


# -------------------------------------------------------------------------------------- split_config
def test_split_config_unknown_key_suggests_close_match():
    with pytest.raises(RlmError) as exc:
        split_config({"lerning_starts": 10}, DQNConfig)
    msg = str(exc.value)
    assert "'lerning_starts'" in msg
    assert "Did you mean 'learning_starts'?" in msg
    assert "\n" not in msg


def test_split_config_routes_keys_and_types():
    trainer, agent = split_config(
        {"agent": "dqn", "env": "X", "steps": "1e3", "lr": 1, "double": "true", "eval_epsilon": 0}, DQNConfig
    )
    assert isinstance(trainer, TrainerConfig) and isinstance(agent, DQNConfig)
    assert trainer.steps == 1000 and type(trainer.steps) is int
    assert trainer.eval_epsilon == 0.0 and type(trainer.eval_epsilon) is float
    assert agent.lr == 1.0 and type(agent.lr) is float
    assert agent.double is True
    with pytest.raises(RlmError, match="'batch_size' expects an integer"):
        split_config({"batch_size": 2.5}, DQNConfig)


def test_trainer_and_dqn_keys_do_not_clash():
    assert not set(field_types(TrainerConfig)) & set(field_types(DQNConfig))


# ------------------------------------------------------------------------------------------- presets
def test_preset_names_are_the_shipped_files():
    names = preset_names()
    assert {"atari100k", "dqn_atari", "dqn_classic", "dqn_minatar"} <= set(names)
    assert names == sorted(names)


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_builds(name):
    data = load_preset(name)
    assert isinstance(data, dict) and data
    agent = data.get("agent", "dqn")
    spec = AGENTS.get(agent)
    valid = set(field_types(TrainerConfig)) | set(field_types(spec.config_cls))
    assert set(data) - {"agent", "env"} <= valid, f"{name}: unknown keys {set(data) - valid - {'agent', 'env'}}"
    family = next((fam for fam, preset in spec.presets.items() if preset == name), None)
    env = data.get("env") or FAMILY_ENV.get(family) or env_for_preset(name)
    cfg = api.resolve_run_config(agent, env, config=name)
    assert isinstance(cfg.agent_config, spec.config_cls)
    flat = cfg.to_flat()
    for key, value in data.items():
        if key in ("agent", "env"):
            continue
        if isinstance(value, dict) and dataclasses.is_dataclass(getattr(cfg.agent_config, key, None)):
            for sub, sub_value in value.items():  # a nested section: the preset's entries, over the defaults
                assert flat[key][sub] == sub_value, (name, f"{key}.{sub}")
            continue
        assert flat[key] == value, (name, key)
    if agent == "dqn":  # the DQN config built from the preset passes DQN's own validation
        from rlmorning.agents.dqn import _validate

        _validate(cfg.agent_config)


def test_dqn_presets_exist():
    assert {"atari100k", "dqn_atari", "dqn_classic", "dqn_minatar"} <= set(preset_names())
    for name in ("atari100k", "dqn_atari", "dqn_classic", "dqn_minatar"):
        assert load_preset(name).get("agent") == "dqn"


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(RlmError) as exc:
        load_preset("atari100")
    msg = str(exc.value)
    assert "unknown config preset 'atari100'" in msg
    assert "Did you mean 'atari100k'?" in msg
    for name in preset_names():
        assert name in msg
    with pytest.raises(RlmError, match="unknown config preset"):
        api.resolve_run_config("dqn", "CartPole-v1", config="nope")


def test_load_preset_from_yaml_path(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("agent: dqn\nlr: 0.0005\nsteps: 1234\nencoder_kwargs:\n  hidden: [32]\n")
    assert load_preset(str(path)) == {"agent": "dqn", "lr": 0.0005, "steps": 1234,
                                      "encoder_kwargs": {"hidden": [32]}}
    cfg = api.resolve_run_config("dqn", "CartPole-v1", config=str(path))
    assert cfg.trainer.steps == 1234
    assert cfg.agent_config.lr == 0.0005
    assert cfg.agent_config.encoder_kwargs == {"hidden": [32]}
    # keys absent from the YAML file keep the dataclass defaults (the family preset is NOT merged in)
    assert cfg.agent_config.train_freq == DQNConfig().train_freq


def test_load_preset_path_errors(tmp_path: Path):
    with pytest.raises(RlmError, match="does not exist"):
        load_preset(str(tmp_path / "missing.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [1, 2\n")
    with pytest.raises(RlmError, match="not valid YAML") as exc:
        load_preset(str(bad))
    assert "\n" not in str(exc.value)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(RlmError, match="must be a mapping"):
        load_preset(str(lst))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_preset(str(empty)) == {}
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("lr: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(RlmError, match="not valid YAML"):
        load_preset(str(unsafe))


def test_preset_for_another_agent_is_rejected(tmp_path: Path):
    path = tmp_path / "other.yaml"
    path.write_text("agent: ppo\nlr: 0.1\n")
    with pytest.raises(RlmError, match="is for agent 'ppo'"):
        api.resolve_run_config("dqn", "CartPole-v1", config=str(path))


# ---------------------------------------------------------------------------------------- precedence
def test_family_default_presets():
    classic = load_preset("dqn_classic")
    cfg = api.resolve_run_config("dqn", "CartPole-v1")
    assert cfg.agent_config.lr == classic["lr"] != DQNConfig().lr
    assert cfg.agent_config.encoder == "mlp"
    atari = api.resolve_run_config("dqn", "Breakout")
    assert atari.trainer.steps == load_preset("dqn_atari")["steps"]
    minatar = api.resolve_run_config("dqn", "MinAtar/Breakout")
    assert minatar.agent_config.optimizer == "rmsprop"
    assert minatar.agent_config.encoder == "minatar"


def test_resolution_precedence(tmp_path: Path):
    defaults_only = tmp_path / "empty.yaml"
    defaults_only.write_text("{}\n")
    d = api.resolve_run_config("dqn", "CartPole-v1", config=str(defaults_only))
    assert d.trainer == TrainerConfig()
    assert d.agent_config == AGENTS.get("dqn").config_cls()  # DQN with no world model

    preset = load_preset("dqn_classic")
    p = api.resolve_run_config("dqn", "CartPole-v1")  # defaults < preset
    assert p.trainer.steps == preset["steps"]
    assert p.agent_config.batch_size == preset["batch_size"]
    assert p.trainer.eval_max_frames == TrainerConfig().eval_max_frames  # not in the preset: default

    s = api.resolve_run_config(  # preset < --set
        "dqn", "CartPole-v1", overrides=["steps=777", "batch_size=16", "seed=3"]
    )
    assert (s.trainer.steps, s.agent_config.batch_size, s.trainer.seed) == (777, 16, 3)
    assert s.agent_config.lr == preset["lr"]

    f = api.resolve_run_config(  # --set < explicit flags; None flags are ignored
        "dqn", "CartPole-v1", overrides=["steps=777", "seed=3"], steps=999, seed=None, num_envs=2, device="cpu"
    )
    assert f.trainer.steps == 999
    assert f.trainer.seed == 3
    assert f.trainer.num_envs == 2 and f.trainer.device == "cpu"


def test_resolve_rejects_bad_counts():
    with pytest.raises(RlmError, match="steps must be >= 1"):
        api.resolve_run_config("dqn", "CartPole-v1", steps=0)
    with pytest.raises(RlmError, match="num_envs must be >= 1"):
        api.resolve_run_config("dqn", "CartPole-v1", num_envs=0)
    with pytest.raises(RlmError, match="unknown agent 'dqm'. Did you mean 'dqn'"):
        api.resolve_run_config("dqm", "CartPole-v1")


def test_to_flat_round_trips_through_yaml():
    cfg = api.resolve_run_config("dqn", "CartPole-v1", overrides=["encoder_kwargs.hidden=[64,64]"])
    flat = yaml.safe_load(yaml.safe_dump(cfg.to_flat(), sort_keys=False))
    assert flat["agent"] == "dqn" and flat["env"] == "CartPole-v1"
    trainer, agent = split_config(flat, AGENTS.get("dqn").config_cls)
    assert trainer == cfg.trainer and agent == cfg.agent_config


def test_atari100k_values():
    cfg = api.resolve_run_config("dqn", "Breakout", config="atari100k")
    a, t = cfg.agent_config, cfg.trainer
    assert a.n_step == 10
    assert a.train_freq == 1
    assert a.learning_starts == 1600
    assert a.double is True and a.dueling is True
    assert t.steps == 100_000
    assert a.target_update_period == 1
    assert a.optimizer_eps == pytest.approx(1.5e-4)
    assert a.eps_decay_steps == 5000
    assert a.eps_decay_start == 1600 and a.eps_end == 0.01  # Dopamine: decay after min_replay_history
    assert a.augment == "shift+intensity" and a.augment_pad == 4 and a.augment_intensity == 0.05
    assert a.gamma == 0.99 and a.batch_size == 32 and a.lr == 1e-4 and a.loss == "huber"
    assert a.max_grad_norm == 0 and a.encoder == "nature"
    assert t.eval_epsilon == 0.001 and t.final_eval_episodes == 100 and t.eval_sticky_actions == 0.0
    assert t.eval_max_frames == 108_000  # 27,000 agent steps


# ------------------------------------------------------------------------------------ DQN validation
def make_dqn(**overrides):
    cfg = dataclasses.replace(DQNConfig(encoder="mlp", buffer_size=100), **overrides)
    obs_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    return DQNAgent(cfg, AgentSetting(obs_space, gym.spaces.Discrete(2), total_steps=100))


def test_dqn_builds_with_valid_config():
    agent = make_dqn()
    assert agent.num_actions == 2


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"optimizer": "sgd"}, r"'optimizer' must be one of adam, rmsprop, got 'sgd'"),
        ({"loss": "l1"}, r"'loss' must be one of huber, mse"),
        ({"precision": "fp16"}, r"'precision' must be one of fp32, bf16"),
        ({"batch_size": 0}, r"'batch_size' must be >= 1, got 0"),
        ({"n_step": 0}, r"'n_step' must be >= 1"),
        ({"train_freq": -1}, r"'train_freq' must be >= 1"),
        ({"tau": 0.0}, r"'tau' must be in \(0, 1\]"),
        ({"gamma": 1.5}, r"'gamma' must be in \[0, 1\]"),
        ({"lr": 0.0}, r"'lr' must be > 0"),
    ],
)
def test_dqn_validation_errors(overrides, pattern):
    with pytest.raises(RlmError, match=pattern):
        make_dqn(**overrides)


def test_dqn_rejects_continuous_actions():
    cfg = DQNConfig(encoder="mlp", buffer_size=100)
    with pytest.raises(RlmError, match="discrete action space"):
        DQNAgent(cfg, AgentSetting(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), gym.spaces.Box(-1.0, 1.0, (1,)),
                                   total_steps=10))
