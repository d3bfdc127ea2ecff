"""The run directory: everything a training run writes, and safe reading of it back.

``runs/<env>-<agent>-<seed>-<time>/`` holds ``config.yaml`` (resolved), ``checkpoints/latest.pt`` and
``best.pt`` (written atomically: temp file + rename), ``metrics.csv``, TensorBoard events under
``tb/``, ``versions.json`` (package versions and the eval protocol), ``heldout_states.npz``, ``.lock``
(held by the process that trains the run, see :func:`run_lock`), and later ``videos/`` and ``plots/``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import platform
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import torch
import yaml

from rlmorning.config import read_text_file
from rlmorning.errors import RlmError, unreadable

CHECKPOINTS = "checkpoints"
LOCK = ".lock"
RUN_FILES = ("config.yaml", CHECKPOINTS, "metrics.csv", "tb", "versions.json", "heldout_states.npz", LOCK)
"""What a training run writes into its directory: all that ``train --overwrite`` deletes."""
VIEW_OUTPUTS = ("videos", "plots")
"""What the viewing commands (record; plot, plot-q, dream, ...) write into a run: never deleted by ``--overwrite``."""


def new_run_dir(root: str | Path, env_name: str, agent: str, seed: int) -> Path:
    """Create ``root/<env>-<agent>-<seed>-<YYYYmmdd-HHMMSS>`` (unique) and return it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_env = env_name.replace("/", "-")
    base = Path(root) / f"{safe_env}-{agent}-{seed}-{stamp}"
    path, i = base, 1
    while path.exists():
        path, i = Path(f"{base}-{i}"), i + 1
    make_writable_dir(path)
    return path


def make_writable_dir(path: Path) -> None:
    """Create ``path`` (and checkpoints/) or fail with one clear line."""
    try:
        (path / CHECKPOINTS).mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise RlmError(f"cannot write run directory '{path}': {exc.strerror or exc}") from None


def earlier_run_files(path: Path) -> list[str]:
    """What an earlier run left in ``path`` (files in checkpoints/, metrics.csv): a new run there would append
    to its metrics and overwrite its checkpoints."""
    found = []
    ckpts = Path(path) / CHECKPOINTS
    if ckpts.is_dir() and any(ckpts.iterdir()):
        found.append(f"{CHECKPOINTS}/")
    if (Path(path) / "metrics.csv").exists():
        found.append("metrics.csv")
    return found


def _is_run_file(entry: Path) -> bool:
    """An entry of a run directory that training wrote: a :data:`RUN_FILES` name, a temp file of an atomic
    write, TensorBoard events in ``tb/``, checkpoints in ``checkpoints/``."""
    name = entry.name
    if name == ".write-test" or (name.startswith(".") and name.endswith(".tmp")
                                 and any(name.startswith(f".{f}.") for f in RUN_FILES)):
        return True
    if name not in RUN_FILES:
        return False
    if name == CHECKPOINTS and entry.is_dir():
        return all(p.is_file() and (p.suffix == ".pt" or (p.name.startswith(".") and p.name.endswith(".tmp")))
                   for p in entry.iterdir())
    if name == "tb" and entry.is_dir():
        return all(p.is_file() and p.name.startswith("events.out.tfevents.") for p in entry.iterdir())
    return entry.is_file()


def check_overwritable(path: Path) -> None:
    """Refuse ``train --overwrite`` of a folder that holds anything but what a training run writes."""
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise RlmError(f"--overwrite: '{path}' is not a folder")
    other = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir() if not _is_run_file(p))
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        ours = [name for name in other if name.rstrip("/") in VIEW_OUTPUTS]
        kept = (f" ({', '.join(ours)}: what record/plot commands wrote, kept in case you want them)" if ours else "")
        raise RlmError(f"--overwrite deletes only what training writes, but '{path}' also holds {shown}{kept}; "
                       "choose another --run-dir or move them out yourself")


def clear_run_dir(path: Path) -> None:
    """Delete what a training run wrote into ``path`` (checked by :func:`check_overwritable`), but ``.lock``."""
    check_overwritable(path)
    try:
        for entry in Path(path).iterdir():
            if entry.name == LOCK:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    except OSError as exc:
        raise RlmError(f"--overwrite: cannot delete the run in '{path}': {_reason(exc)}") from None


@contextlib.contextmanager
def run_lock(run: str | Path) -> Iterator[None]:
    """Hold ``RUN/.lock`` (``fcntl.flock``, exclusive) while a process trains the run: a second training of
    the same run is one clear line. The kernel releases the lock when the process ends, even on kill -9."""
    import fcntl

    run = Path(run)
    try:
        fd = os.open(run / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RlmError(f"cannot write run directory '{run}': {_reason(exc)}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 200, 0).decode(errors="replace").split()
            pid = owner[0] if owner else "?"
            host = f" on {owner[1]}" if len(owner) > 1 and owner[1] != socket.gethostname() else ""
            raise RlmError(f"run '{run}' is being trained by process {pid}{host}; wait for it to finish or stop "
                           "it first") from None
        except OSError as exc:
            raise RlmError(f"cannot lock run directory '{run}': {_reason(exc)}") from None
        with contextlib.suppress(OSError):  # who holds it, for the message above (the lock works without)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _reason(exc: OSError) -> str:
    """``[Errno 28] No space left on device``, without the file name."""
    if exc.errno is not None and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc) or type(exc).__name__


def write_yaml(path: Path, data: dict[str, Any]) -> None:
    atomic_write_bytes(path, yaml.safe_dump(data, sort_keys=False).encode())


def check_run_dir(path: str | Path) -> Path:
    """``path`` as a Path when it is a folder; a one-line RlmError saying what it is otherwise."""
    p = Path(path)
    if p.is_dir():
        return p
    if p.exists():
        raise RlmError(f"'{path}' is not a run directory (it is a file)")
    raise RlmError(f"run directory '{path}' does not exist")


def read_config(run: Path) -> dict[str, Any]:
    """The resolved config of a run directory (``safe_load``)."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        raise RlmError(f"'{run}' is not a run directory (no config.yaml)")
    text = read_text_file(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise RlmError(f"'{path}' is not valid YAML") from None
    if not isinstance(data, dict) or "agent" not in data or "env" not in data:
        raise RlmError(f"'{path}' does not look like an rlmorning config")
    return data


def write_versions(run: Path, extra: dict[str, Any]) -> None:
    """``versions.json``: rlmorning, torch, gymnasium, ale-py versions, Python, machine, plus ``extra``."""
    info: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    for pkg in ("rlmorning", "torch", "gymnasium", "ale-py", "numpy"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    info.update(extra)
    atomic_write_bytes(Path(run) / "versions.json", json.dumps(info, indent=2).encode())


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_read_umask()
"""The mode ``open()`` would give a new file under the process's umask (read once, at import: changing the
umask is process-wide, so it is not done while other threads may create files)."""


def _temp_beside(path: Path) -> tuple[int, str]:
    """A temp file in ``path``'s folder, with the mode a plain ``open()`` would give it (``mkstemp`` makes
    files 0600, which would leave run files unreadable to the user's group, e.g. a shared TensorBoard)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with contextlib.suppress(OSError):  # a file system without modes (some mounts): keep mkstemp's
        os.fchmod(fd, _FILE_MODE)
    return fd, tmp


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and an atomic rename."""
    path = Path(path)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file, then rename: a crash never leaves a half-written checkpoint. A failed
    write (disk full, read-only folder) removes the temp file, keeps the previous checkpoint and is one line."""
    path = Path(path)
    tmp: str | None = None
    try:
        fd, tmp = _temp_beside(path)
        with os.fdopen(fd, "wb") as fh:  # a file object: torch passes the OSError of a failed write through
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise RlmError(f"could not write checkpoint '{path}': {_reason(exc)}") from None
        raise


CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by the trainer; :func:`check_format` refuses others with one line."""


def check_format(ckpt: dict[str, Any], path: Path) -> None:
    """One clear line for a checkpoint written with another layout (an older or newer rlmorning)."""
    fmt = ckpt.get("format")
    if fmt != CHECKPOINT_FORMAT:
        raise RlmError(f"{path}: checkpoint format {fmt!r} is not readable by this rlmorning (it reads format "
                       f"{CHECKPOINT_FORMAT}); use the rlmorning version that wrote it")


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; missing or corrupt files give one clear line.

    ``mmap=True`` maps tensors from the file instead of reading them (cheap peeks at a large checkpoint)."""
    path = Path(path)
    if not path.is_file():
        raise RlmError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as exc:  # torch raises many types for corrupt files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        detail = "" if first.startswith("Weights only load failed") else f": {first[:160]}"
        raise RlmError(f"checkpoint '{path}' is corrupt or not an rlmorning checkpoint{detail}") from None
    if not isinstance(state, dict) or "agent" not in state:
        raise RlmError(f"checkpoint '{path}' is not an rlmorning checkpoint")
    return state


def checkpoint_step(path: Path) -> int:
    """The env step a checkpoint was saved at, without reading its tensors (a replay buffer may be GBs)."""
    state = load_checkpoint(path, mmap=True)
    try:
        return int(state["train"]["step"])
    except (KeyError, TypeError, ValueError):
        raise RlmError(f"checkpoint '{path}' has no training step (not written by rlmorning's trainer)") from None


def find_checkpoint(run: Path, which: str = "latest") -> Path:
    """``best``/``latest`` inside a run directory, or a path; errors name what exists."""
    run = Path(run)
    if which not in ("best", "latest"):
        if not Path(which).is_file():
            raise RlmError(f"checkpoint '{which}' does not exist (use best, latest or a path to a .pt file)")
        return Path(which)
    path = run / CHECKPOINTS / f"{which}.pt"
    if path.is_file():
        return path
    other = run / CHECKPOINTS / ("latest.pt" if which == "best" else "best.pt")
    if other.is_file():
        return other
    raise RlmError(f"run '{run}' has no checkpoints yet (looked for {path})")


METRIC_ALIASES = {"eval_return": "eval_return_mean", "return": "train_return"}
"""Short metric names the plotting, report and sweep commands accept for metrics.csv columns."""


class MetricsCSV:
    """``metrics.csv``: one row per log/eval point; new columns are added when first seen."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.columns: list[str] = []
        if self.path.is_file():
            with _reading(self.path) as fh:
                header = fh.readline().strip()
            self.columns = header.split(",") if header else []

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (used on resume: those steps will be redone)."""
        rows = self.read(self.path)
        try:
            keep = [r for r in rows if float(r.get("step") or 0) <= step]
        except ValueError as exc:
            raise RlmError(f"'{self.path}' is not a metrics CSV: {exc}") from None
        self._rewrite(keep)

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        lines: list[str] = []
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow(r)
        lines.append(buf.getvalue())
        atomic_write_bytes(self.path, "".join(lines).encode())

    def write(self, row: dict[str, Any]) -> None:
        try:
            new = [k for k in row if k not in self.columns]
            if new:
                old_rows = self.read(self.path) if self.path.is_file() else []
                self.columns += new
                self._rewrite(old_rows)
            with self.path.open("a", newline="") as fh:
                csv.DictWriter(fh, fieldnames=self.columns, extrasaction="ignore").writerow(
                    {k: _fmt(v) for k, v in row.items()}
                )
        except OSError as exc:  # disk full, folder made read-only
            raise RlmError(f"could not write '{self.path}': {_reason(exc)}") from None

    @staticmethod
    def read(path: Path) -> list[dict[str, str]]:
        """The rows of a metrics.csv; a binary or unreadable file is one clear line."""
        with _reading(path) as fh:
            return list(csv.DictReader(fh))


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[TextIO]:
    """Open a CSV file for reading; OS, decoding and CSV errors while it is read become one-line RlmErrors."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            yield fh
    except (OSError, UnicodeDecodeError) as exc:
        raise unreadable(path, exc) from None
    except csv.Error as exc:
        raise RlmError(f"'{path}' is not a valid CSV file: {exc}") from None


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v
