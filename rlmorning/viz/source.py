"""What a visualization plays: a loaded policy (a run's checkpoint or an SB3 model) and how to evaluate it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlmorning import envs as envs_mod
from rlmorning.envs import EnvInfo


@dataclass
class PolicySource:
    """A loaded policy and how to evaluate it."""

    agent: Any
    info: EnvInfo
    source: str
    """The run directory, or ``sb3:<path>``."""
    checkpoint: str
    """Path of the checkpoint or model file that was loaded."""
    checkpoint_step: int | None
    epsilon: float
    sticky_actions: float
    max_frames: int
    env_kwargs: dict[str, Any]
    protocol: str
    out_dir: Path
    """Where outputs go by default: the run directory, or the SB3 model's folder."""
    run_dir: Path | None
    num_actions: int
    action_meanings: list[str]
    agent_name: str

    @property
    def frame_skip(self) -> int:
        """Emulator frames per agent step (Atari: 4), for frame axes."""
        if self.info.family != "atari":
            return 1
        return int(self.env_kwargs.get("frame_skip", 4))

    def sidecar_header(self) -> dict[str, Any]:
        """The fields every JSON sidecar starts with: what played, from which checkpoint, how it was scored."""
        return {"source": self.source, "checkpoint": self.checkpoint, "checkpoint_step": self.checkpoint_step,
                "agent": self.agent_name, "env": self.info.display_name, "eval_protocol": self.protocol,
                "epsilon": self.epsilon}

    @property
    def title(self) -> str:
        step = f" @ {self.checkpoint_step:,} steps" if self.checkpoint_step is not None else ""
        return f"{self.info.display_name} | {self.agent_name} | {Path(self.checkpoint).name}{step}"

    def make_env(self, seed: int) -> Any:
        return envs_mod.make_eval(self.info, seed, sticky_actions=self.sticky_actions, max_frames=self.max_frames,
                                  render_rgb=True, **dict(self.env_kwargs))
