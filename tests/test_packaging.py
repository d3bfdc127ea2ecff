"""The wheel maps agents/, envs/, configs/ into the rlmorning package and ships nothing at top level."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# build outputs and caches (see .gitignore) are not part of the source tree
IGNORED = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".git", "runs", "sweeps",
                                 ".pytest_cache", ".ruff_cache", ".hypothesis", ".venv", "*.pyc")


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)
    assert res.returncode == 0, f"{cmd}\nstdout:\n{res.stdout[-3000:]}\nstderr:\n{res.stderr[-3000:]}"
    return res


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean copy of the source tree (a snapshot: files others edit meanwhile do not race the checks).

    The wheel is built from the copy, not the repository itself: an in-tree setuptools build writes
    ``build/`` into the repository and would reuse stale files from an earlier build's ``build/lib``.
    """
    src = tmp_path_factory.mktemp("src") / "rlmorning-src"
    shutil.copytree(REPO, src, ignore=IGNORED)
    return src


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built once with ``pip wheel --no-deps --no-build-isolation``."""
    src = source
    out = tmp_path_factory.mktemp("wheelhouse")
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out)])
    wheels = list(out.glob("rlmorning-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target", str(target),
         str(wheel)])
    return target


def test_wheel_contents(wheel, wheel_names):
    for path in ("rlmorning/__init__.py", "rlmorning/cli.py", "rlmorning/agents/dqn.py",
                 "rlmorning/envs/atari.py", "rlmorning/envs/stack.py", "rlmorning/configs/atari100k.yaml"):
        assert path in wheel_names, path
    top = {n.split("/", 1)[0] for n in wheel_names}
    assert all(t == "rlmorning" or t.endswith(".dist-info") for t in top), top
    for bad in ("agents/", "envs/", "configs/", "tests/", "bench/"):
        assert not any(n.startswith(bad) for n in wheel_names), bad
    top_level = next(n for n in wheel_names if n.endswith(".dist-info/top_level.txt"))
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read(top_level).decode().split() == ["rlmorning"]
        entry_points = zf.read(top_level.replace("top_level.txt", "entry_points.txt")).decode()
    assert "rlmorning = rlmorning.cli:main" in entry_points


def test_wheel_holds_every_source_package(source, wheel_names):
    """Every package directory under a mapped source folder (and its .py and preset files) is shipped;
    catches a subpackage missing from pyproject's explicit ``packages`` list."""
    tool = tomllib.loads((source / "pyproject.toml").read_text())["tool"]["setuptools"]
    names = set(wheel_names)
    missing, checked = [], 0
    for package, folder in tool["package-dir"].items():
        root = source / folder
        for init in root.rglob("__init__.py"):
            pkg_dir = init.parent
            if "__pycache__" in pkg_dir.parts:
                continue
            rel = pkg_dir.relative_to(root)
            # a folder that is itself mapped elsewhere is checked under its own mapping
            if rel.parts and f"{package}.{'.'.join(rel.parts)}" in tool["package-dir"]:
                continue
            dest = "/".join([*package.split("."), *rel.parts])
            for f in pkg_dir.iterdir():
                if f.suffix == ".py" or (package == "rlmorning.configs" and f.suffix == ".yaml"):
                    checked += 1
                    if f"{dest}/{f.name}" not in names:
                        missing.append(f"{dest}/{f.name}")
    assert checked > 20, checked
    assert not missing, f"source files missing from the wheel: {missing}"


def test_installed_wheel_imports_from_its_own_tree(installed: Path, tmp_path: Path):
    code = (
        "import os, sys\n"
        "import rlmorning, rlmorning.agents, rlmorning.envs, rlmorning.configs, rlmorning.cli\n"
        "target = os.path.realpath(sys.argv[1])\n"
        "for mod in (rlmorning, rlmorning.agents, rlmorning.envs, rlmorning.configs):\n"
        "    assert os.path.realpath(mod.__file__).startswith(target + os.sep), mod.__file__\n"
        "from rlmorning.config import preset_names\n"
        "assert 'atari100k' in preset_names(), preset_names()\n"
        "for name in ('agents', 'envs'):\n"
        "    try:\n"
        "        __import__(name)\n"
        "    except ModuleNotFoundError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(f'top-level {name!r} is importable')\n"
        # the console entry point works from the wheel, presets included (package data)
        "assert rlmorning.cli.main(['configs']) == 0\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    res = run([sys.executable, "-c", code, str(installed)], cwd=tmp_path, env=env)
    lines = res.stdout.split()
    assert lines[-1] == "ok"
    assert "atari100k" in lines and "dqn_classic" in lines


def test_editable_install_maps_subpackages():
    import rlmorning.agents
    import rlmorning.configs
    import rlmorning.envs

    assert Path(rlmorning.agents.__file__).resolve() == REPO / "agents" / "__init__.py"
    assert Path(rlmorning.envs.__file__).resolve() == REPO / "envs" / "__init__.py"
    assert Path(rlmorning.configs.__file__).resolve() == REPO / "configs" / "__init__.py"
    from rlmorning.agents.dqn import DQNConfig
    from rlmorning.envs.atari import make_atari_vector

    assert Path(sys.modules[DQNConfig.__module__].__file__).resolve() == REPO / "agents" / "dqn.py"
    assert Path(sys.modules[make_atari_vector.__module__].__file__).resolve() == REPO / "envs" / "atari.py"


def test_import_asks_openmp_for_a_short_spin_unless_the_user_chose() -> None:
    """Long spins collapse beside a busy process, no spin slows every kernel (rlmorning.threads): a short
    spin by default; a user who sets either variable keeps exactly what they set."""
    code = ("import os, rlmorning, torch; "
            "print(os.environ.get('OMP_WAIT_POLICY', '-'), os.environ.get('GOMP_SPINCOUNT', '-'))")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}

    def chosen(**extra: str) -> str:
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    assert chosen() == "PASSIVE 1000"
    assert chosen(OMP_WAIT_POLICY="ACTIVE") == "ACTIVE -"
    assert chosen(GOMP_SPINCOUNT="INFINITE") == "- INFINITE"


def test_default_threads_one_for_small_nets_idle_cores_for_atari_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    import rlmorning.threads as threads

    assert threads.available_cores() == len(os.sched_getaffinity(0))
    assert threads.default_torch_threads((4,)) == 1 and threads.default_torch_threads((4, 10, 10)) == 1
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "idle_cores", lambda: 3)
    assert threads.default_torch_threads((4, 84, 84)) == 3
    monkeypatch.setattr(threads, "idle_cores", lambda: 0)  # every core busy: still one thread
    assert threads.default_torch_threads((4, 84, 84)) == 1
    monkeypatch.setattr(threads, "idle_cores", lambda: None)  # no /proc/stat: all cores
    assert threads.default_torch_threads((4, 84, 84)) == 4


def test_idle_cores_sees_a_busy_core() -> None:
    import subprocess as sp

    from rlmorning.threads import idle_cores

    cores = sorted(os.sched_getaffinity(0))
    busy = sp.Popen([sys.executable, "-c", "while True: pass"],
                    preexec_fn=lambda: os.sched_setaffinity(0, {cores[0]}))
    try:
        import time

        time.sleep(0.3)
        free = idle_cores(0.5)
    finally:
        busy.kill()
        busy.wait()
    assert free is not None and free <= len(cores) - 1


def test_bench_scripts_import_rlmorning_before_torch() -> None:
    """OpenMP reads its waiting variables when torch loads: a benchmark that imports torch first times
    torch's waiting, not rlmorning's (rlmorning.threads)."""
    late = []
    for script in sorted((REPO / "bench").glob("*.py")):
        lines = script.read_text().splitlines()
        first = {name: next((i for i, line in enumerate(lines) if line.startswith(prefixes)), None)
                 for name, prefixes in (("torch", ("import torch", "from torch")),
                                        ("rlmorning", ("import rlmorning", "from rlmorning")))}
        if first["torch"] is not None and (first["rlmorning"] is None or first["rlmorning"] > first["torch"]):
            late.append(script.name)
    assert late == []
