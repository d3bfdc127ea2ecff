"""The SB3 timing callback shared by the benchmark scripts (``python bench/x.py`` puts bench/ on sys.path)."""

from __future__ import annotations

import time
from typing import Any


def sb3_timer(learning_starts: int) -> Any:
    """An SB3 callback that notes the time and step count at the first step with ``learning_starts`` steps done."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Timer(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.t_start: float | None = None
            self.step_start = 0

        def _on_step(self) -> bool:
            if self.t_start is None and self.num_timesteps >= learning_starts:
                self.t_start, self.step_start = time.perf_counter(), self.num_timesteps
            return True

    return Timer()


def timed_sps(model: Any, timer: Any) -> float:
    """Env steps per second of ``model`` since ``timer`` started (call right after ``model.learn``)."""
    assert timer.t_start is not None
    elapsed = time.perf_counter() - timer.t_start
    return (model.num_timesteps - timer.step_start) / elapsed


def quiet_logger(model: Any) -> None:
    """Give ``model`` a logger that writes nothing: SB3's default one makes an empty ``SB3-<date>`` folder in the
    temp directory on every ``learn``."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
