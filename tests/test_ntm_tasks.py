"""The NTM paper's tasks as environments: structure of each task, scoring, info, options, vector use."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlmorning import envs as envs_mod
from rlmorning.envs.algorithmic.ntm_tasks import (
    NTM_TASK_IDS,
    NTMAssociativeRecallEnv,
    NTMCopyEnv,
    NTMPrioritySortEnv,
    NTMRepeatCopyEnv,
)
from rlmorning.envs.state import capture_env_state, restore_env_state


def play(env: gym.Env, actions: str = "target", **reset_kwargs: object) -> tuple[float, list[dict]]:
    """One episode answering with the targets ('target'), zeros ('zeros'); returns return and infos."""
    env.reset(**reset_kwargs)
    base = env.unwrapped
    total, infos, done = 0.0, [], False
    while not done:
        ep, t = base.episode, base.time
        a = ep.targets[t] if actions == "target" else np.zeros(base.out_dim, np.int8)
        _, r, done, trunc, info = env.step(a)
        assert not trunc
        total += r
        infos.append(info)
    return total, infos


@pytest.mark.parametrize("env_id", NTM_TASK_IDS)
def test_check_env_passes_without_warnings(env_id: str) -> None:
    for mode in (None, "ansi"):
        env = gym.make(env_id, render_mode=mode)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env.unwrapped)
        assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("env_id", NTM_TASK_IDS)
def test_perfect_answers_score_every_bit_and_info_is_consistent(env_id: str) -> None:
    env = gym.make(env_id)
    total, infos = play(env, seed=3)
    ep = env.unwrapped.episode
    scored = ep.mask > 0
    assert total == scored.sum() * env.unwrapped.out_dim
    assert [i["output_mask"] for i in infos] == scored.astype(int).tolist()
    assert all(i["bit_errors"] == 0 for i in infos) and infos[-1]["seq_bit_errors"] == 0
    np.testing.assert_array_equal(np.stack([i["target"] for i in infos]), ep.targets)
    assert not ep.targets[~scored].any() and not ep.inputs[scored].any()  # output phase: zero inputs
    # all-zero answers: the reward of a step is its number of correct bits, the error the rest
    total0, infos0 = play(env, actions="zeros", seed=3)
    assert total0 == sum(i["output_mask"] * env.unwrapped.out_dim - i["bit_errors"] for i in infos0)
    assert infos0[-1]["seq_bit_errors"] == int(ep.targets.sum())


def test_copy_structure_lengths_and_options() -> None:
    env = NTMCopyEnv()
    obs, info = env.reset(seed=0)
    assert env.observation_space.shape == (9,) and env.action_space.n == 8
    assert info == {"target": info["target"], "output_mask": 0, "bit_errors": 0, "seq_bit_errors": 0,
                    "length": info["length"]} and not info["target"].any()
    lengths = set()
    for s in range(200):
        env.reset(seed=s)
        lengths.add(env.episode.length)
    assert lengths == set(range(1, 21))
    seq = np.array([[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0]])
    obs, _ = env.reset(options={"sequence": seq})
    ep = env.episode
    assert len(ep.mask) == 7 and ep.mask.tolist() == [0, 0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(ep.inputs[:3, :8], seq)
    assert ep.inputs[3].tolist() == [0] * 8 + [1]  # the delimiter channel
    assert not ep.inputs[:3, 8].any()
    np.testing.assert_array_equal(ep.targets[4:], seq)
    np.testing.assert_array_equal(obs, ep.inputs[0])
    env.reset(options={"length": 50})
    assert env.episode.length == 50 and len(env.episode.mask) == 101
    wide = gym.make("rlmorning/NTMCopy-v0", bits=4, min_length=30, max_length=30)
    wide.reset(seed=1)
    assert wide.unwrapped.episode.length == 30 and wide.observation_space.shape == (5,)
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"lenght": 3})
    with pytest.raises(ValueError, match="0/1 array"):
        env.reset(options={"sequence": [[2] * 8]})
    with pytest.raises(ValueError, match="max_length"):
        NTMCopyEnv(min_length=5, max_length=2)


def test_repeat_copy_has_count_channel_and_end_marker() -> None:
    env = NTMRepeatCopyEnv(bits=3)
    seq = np.array([[1, 0, 0], [0, 1, 1]])
    env.reset(options={"sequence": seq, "repeats": 3})
    ep = env.episode
    assert env.action_space.n == 4 and env.observation_space.shape == (5,)
    assert len(ep.mask) == (2 + 2) + (2 * 3 + 1)
    assert ep.inputs[2, 3] == 1 and ep.inputs[3, 4] == pytest.approx(0.3)  # delimiter; 3 copies / 10
    out = ep.targets[ep.mask > 0]
    np.testing.assert_array_equal(out[:-1, :3], np.tile(seq, (3, 1)))
    assert out[:-1, 3].sum() == 0 and out[-1].tolist() == [0, 0, 0, 1]
    env.reset(options={"repeats": 40})  # generalisation beyond the training counts
    assert env.observation_space.contains(env.episode.inputs[env.episode.length + 1])
    with pytest.raises(ValueError, match="repeats"):
        env.reset(options={"repeats": 101})


def test_associative_recall_answers_the_item_after_the_query() -> None:
    env = NTMAssociativeRecallEnv(bits=2, item_length=2)
    items = np.array([[[1, 0], [0, 0]], [[0, 1], [1, 1]], [[1, 1], [0, 1]]])
    env.reset(options={"sequence": items, "query": 1})
    ep = env.episode
    k = 2
    assert ep.inputs.shape[1] == 4
    for i in range(3):
        assert ep.inputs[i * (k + 1), 2] == 1  # item delimiter before each item
        np.testing.assert_array_equal(ep.inputs[i * (k + 1) + 1 : (i + 1) * (k + 1), :2], items[i])
    q0 = 3 * (k + 1)
    assert ep.inputs[q0, 3] == 1 and ep.inputs[q0 + k + 1, 3] == 1  # query delimiters around the query
    np.testing.assert_array_equal(ep.inputs[q0 + 1 : q0 + 1 + k, :2], items[1])
    np.testing.assert_array_equal(ep.targets[ep.mask > 0], items[2])
    for s in range(20):  # random episodes: distinct items, query never the last one
        env.reset(seed=s)
        e = env.episode
        first_rows = {e.inputs[i * (k + 1) + 1 : (i + 1) * (k + 1), :2].tobytes() for i in range(e.length)}
        assert len(first_rows) == e.length
    with pytest.raises(ValueError, match="query"):
        env.reset(options={"sequence": items, "query": 2})


def test_priority_sort_outputs_the_highest_priorities_in_order() -> None:
    env = NTMPrioritySortEnv(bits=3, num_outputs=2)
    seq = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    env.reset(options={"sequence": seq, "priorities": [0.1, 0.9, -0.5, 0.4]})
    ep = env.episode
    assert ep.inputs[:4, 3].tolist() == pytest.approx([0.1, 0.9, -0.5, 0.4]) and ep.inputs[4, 4] == 1
    np.testing.assert_array_equal(ep.targets[ep.mask > 0], seq[[1, 3]])
    paper = NTMPrioritySortEnv()
    paper.reset(seed=0)
    assert paper.episode.length == 20 and int(paper.episode.mask.sum()) == 16


def test_vector_env_reports_the_finished_steps_info_in_final_info() -> None:
    vec = envs_mod.make_vector(envs_mod.resolve("rlmorning/NTMCopy-v0"), 2, 0, min_length=1, max_length=1)
    vec.reset(seed=0)
    vec.step(np.zeros((2, 8), np.int8))
    vec.step(np.zeros((2, 8), np.int8))
    _, r, term, _, info = vec.step(np.ones((2, 8), np.int8))  # length 1: the 3rd step is scored, then ends
    assert term.all()
    final = info["final_info"]
    assert final["output_mask"].tolist() == [1, 1] and info["output_mask"].tolist() == [0, 0]
    np.testing.assert_array_equal(r, final["target"].sum(1))
    vec.close()


def test_episode_state_round_trips_through_the_checkpoint_helpers() -> None:
    vec = envs_mod.make_vector(envs_mod.resolve("rlmorning/NTMAssociativeRecall-v0"), 2, 0)
    vec.reset(seed=5)
    for _ in range(4):
        vec.step(vec.action_space.sample())
    saved = capture_env_state(vec)
    assert saved is not None
    rest = [vec.step(np.zeros((2, 6), np.int8)) for _ in range(30)]
    other = envs_mod.make_vector(envs_mod.resolve("rlmorning/NTMAssociativeRecall-v0"), 2, 99)
    assert restore_env_state(other, saved)
    again = [other.step(np.zeros((2, 6), np.int8)) for _ in range(30)]
    for a, b in zip(rest, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    vec.close()
    other.close()


def test_render_and_errors() -> None:
    env = gym.make("rlmorning/NTMCopy-v0", render_mode="ansi")
    env.reset(options={"sequence": [[1, 0, 1, 0, 1, 0, 1, 0]]})
    env.step(np.zeros(8, np.int8))
    text = env.render()
    assert "input" in text and "target" in text and "output" in text and "#" in text
    raw = NTMCopyEnv()
    with pytest.raises(gym.error.ResetNeeded):
        raw.step(np.zeros(8, np.int8))
    raw.reset(seed=0)
    with pytest.raises(ValueError, match="0/1 array"):
        raw.step(np.zeros(7, np.int8))
