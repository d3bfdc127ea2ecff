"""Output paths checked before any work starts: a folder that cannot be written, an ``--out`` that is a folder
or has the wrong suffix, each gives one line instead of a traceback after minutes of rendering."""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from rlmorning.errors import RlmError, check_writable_file


def writable_folder(folder: str | Path) -> Path:
    """``folder`` created (with its parents) and proven writable by making and removing a file in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise RlmError(f"cannot write into '{folder}': {exc.strerror or exc}") from None
    return folder


def output_file(path: str | Path, suffixes: Sequence[str], example: str) -> Path:
    """``path`` checked to be a file name with one of ``suffixes`` in a writable folder (created if needed);
    ``example`` is the file name suggested when ``path`` is a folder."""
    path = Path(path)
    check_writable_file(path, example, shown=path)
    if path.suffix.lower() not in suffixes:
        article = "an" if suffixes[0][1:2] in "aeiouhm" else "a"
        raise RlmError(f"--out must be {article} {suffixes[0]} file, got '{path}'")
    writable_folder(path.parent)
    return path
