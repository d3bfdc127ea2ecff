"""User-facing errors: one clear line, no traceback.

Anything a user can cause (a bad name, a bad config key, a missing checkpoint, too little RAM) raises
:class:`RlmError`; the CLI prints its message on one line and exits with status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class RlmError(Exception):
    """An error caused by user input or the user's machine; the CLI prints it without a traceback."""


class TrainingTerminated(KeyboardInterrupt):
    """SIGTERM during training (``kill``, a batch scheduler's preemption): handled like Ctrl-C (the trainer
    finishes the step and saves ``latest.pt``); the CLI exits with status 143."""


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> RlmError:
    """Build the standard 'unknown X' error listing the valid names and a close match if there is one."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return RlmError(f"unknown {kind} '{name}'.{hint} Valid: {', '.join(valid)}")


def unreadable(path: object, exc: OSError | UnicodeDecodeError) -> RlmError:
    """The one-line error for a file that cannot be read (an OS error) or is not UTF-8 text (a binary file)."""
    if isinstance(exc, UnicodeDecodeError):
        return RlmError(f"'{path}' is not a text file (byte {exc.object[exc.start]:#04x} is not UTF-8)")
    return RlmError(f"cannot read '{path}': {exc.strerror or exc}")


def check_writable_file(path: Path, example: str = "report.md", shown: object = None) -> None:
    """Fail with one line, before any work, when ``path`` is a folder or lies under a file; ``example`` is a file
    name to suggest inside the folder, ``shown`` how the messages name ``path`` (default: ``path`` itself)."""
    shown = path if shown is None else shown
    if path.is_dir():
        raise RlmError(f"--out '{shown}' is a folder; give a file name such as '{path / example}'")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise RlmError(f"cannot write '{shown}': '{parent}' is a file, not a folder")
            break
