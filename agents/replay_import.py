"""Another run's saved replay as a world model's training data (``train worldmodel --set from_run=RUN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlmorning.errors import RlmError
from rlmorning.replay import ReplayBuffer


def replay_from_run(run: str, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: Any, frame_stack: int,
                    action_dtype: Any, seed: int) -> ReplayBuffer:
    """The replay buffer saved in ``run``'s ``checkpoints/latest.pt`` (e.g. by a DQN run), ready to sample."""
    from rlmorning.run import load_checkpoint  # noqa: PLC0415 (run imports agents lazily too)

    path = Path(run) / "checkpoints" / "latest.pt"
    state = load_checkpoint(path).get("agent", {}).get("replay")
    if state is None:
        raise RlmError(f"'{path}' holds no replay buffer (was the run trained with save_replay: false?)")
    frames = state["frames"]
    if int(frames.shape[0]) != num_envs:
        raise RlmError(f"from_run '{run}' was collected with {int(frames.shape[0])} envs: train with "
                       f"--num-envs {int(frames.shape[0])}")
    buf = ReplayBuffer(int(frames.shape[0] * frames.shape[1]), num_envs, obs_shape, obs_dtype, frame_stack,
                       action_dtype=state["actions"].numpy().dtype, seed=seed)
    if buf.frames.shape != tuple(frames.shape) or buf.frames.dtype != frames.numpy().dtype:
        raise RlmError(f"from_run '{run}' stores frames {tuple(frames.shape[2:])} {frames.numpy().dtype}, "
                       f"this env's are {buf.frames.shape[2:]} {buf.frames.dtype} (a different env?)")
    buf.load_state_dict(state)
    buf.interrupt_episodes()
    return buf
