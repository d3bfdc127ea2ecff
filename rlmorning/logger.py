"""Logging: metrics.csv, TensorBoard and a live progress bar (rich)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rlmorning.run import MetricsCSV

_console = Console(stderr=True)


class Logger:
    """Writes each row to ``metrics.csv`` and TensorBoard, and shows the latest values on the bar."""

    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.csv = MetricsCSV(self.run_dir / "metrics.csv")
        self._tb = None
        self._progress: Progress | None = None
        self._task = None
        self._last: dict[str, float] = {}
        self._plain = False  # print one line per log row when stderr is not a terminal

    @property
    def tb(self) -> Any:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"))
        return self._tb

    def truncate_after(self, step: int) -> None:
        if self.csv.path.is_file():
            self.csv.truncate_after(step)

    def log(self, step: int, wall_time: float, values: dict[str, float], eval_protocol: str | None = None) -> None:
        row: dict[str, Any] = {"step": step, "wall_time": wall_time, **values}
        if eval_protocol is not None:
            row["eval_protocol"] = eval_protocol
        self.csv.write(row)
        for k, v in values.items():
            if isinstance(v, int | float):
                self.tb.add_scalar(k, v, step)
        self._last.update({k: v for k, v in values.items() if k in _SHOWN})
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, info=self._info())
        if self._plain:  # a line per row, with this row's values only (an evaluation row: its own line)
            shown = self._info({k: v for k, v in values.items() if k in _SHOWN})
            if shown:
                print(f"step {step}: {shown}", file=sys.stderr, flush=True)

    def _info(self, values: dict[str, Any] | None = None) -> str:
        """``sps 25  ret 3.2  eval 4 ...`` of ``values`` (default: the latest of each, for the progress bar)."""
        values = self._last if values is None else values
        return "  ".join(f"{label} {values[key]:.3g}" for key, label in _SHOWN.items() if key in values)

    def start_progress(self, total: int, completed: int, enabled: bool = True) -> None:
        if not enabled:
            return
        if not _console.is_terminal:  # logs and CI: one plain line per metrics row
            self._plain = True
            return
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
            console=_console, transient=False,
        )
        self._task = self._progress.add_task("train", total=total, completed=completed, info="")
        self._progress.start()

    def advance(self, step: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=step)

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        if self._tb is not None:
            self._tb.flush()

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)

    def close(self) -> None:
        self.stop_progress()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


_SHOWN = {"sps": "sps", "train_return": "ret", "eval_return_mean": "eval", "loss": "loss", "epsilon": "eps"}
