"""The package installs and runs on every supported Python: CPython 3.11 and 3.12.

For each of them found (pyenv's ``~/.pyenv/versions/3.1x.*`` or ``python3.1x`` on PATH), a venv
under ``.venv-pythons/`` (ignored by git) gets the package as a user would install it: a wheel
built from a copy of the sources, with only the runtime dependencies, pinned by
``constraints.txt``. Then ``python -m search_sessions demo`` must print the tutorial's answer.
The venv is reused: rebuilt (about 12 s with pip's cache) when pyproject.toml or
constraints.txt change, and the package alone reinstalled when src/ changes. Versions not
installed are skipped.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".venv-pythons"
SUPPORTED = ["3.11", "3.12"]
VERSION = "import sys; print('%d.%d' % sys.version_info[:2], sys.implementation.name)"


def find_python(version: str) -> str | None:
    """A CPython ``version`` interpreter, or None. Candidates are run, not just looked up:
    a pyenv shim is on PATH even when its version is not selected, and then fails."""
    pyenv = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates = sorted(glob.glob(f"{pyenv}/versions/{version}.*/bin/python3"), reverse=True)
    candidates.append(f"python{version}")
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", VERSION], capture_output=True, text=True, timeout=30
            )
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.split() == [version, "cpython"]:
            return candidate
    return None


def digest(files: list[Path], *extra: str) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for p in files:
        h.update(b"\0" + str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def source_files() -> list[Path]:
    """Everything the installed package is built from, but the dependency pins."""
    files = [ROOT / "README.md"]
    files += sorted(p for p in (ROOT / "src").rglob("*") if p.is_file() and not _skipped(p))
    return files


def _skipped(p: Path) -> bool:
    return any(part == "__pycache__" or part.endswith(".egg-info") for part in p.parts)


def install(python: str, version: str, scratch: Path) -> Path:
    """The cached venv for ``version`` with the current sources installed; returns its python.

    A new venv when the dependencies (pyproject.toml, constraints.txt) or the base Python
    change; otherwise, when only the sources changed, just the package is reinstalled."""
    CACHE.mkdir(exist_ok=True)
    venv = CACHE / version
    deps_key = digest([ROOT / "pyproject.toml", ROOT / "constraints.txt"], python)
    key = deps_key + " " + digest(source_files())
    stamp = venv / ".installed"
    venv_python = venv / "bin" / "python"
    with open(CACHE / f"{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run building the same venv
        old = stamp.read_text() if stamp.exists() else ""
        if old == key:
            return venv_python
        # Build from a copy: an in-tree build leaves build/ behind, and setuptools would
        # put files since deleted from src/ into the next wheel.
        src = scratch / "src-copy"
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
        shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        pip = [str(venv_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        pip += ["-c", str(ROOT / "constraints.txt")]
        if old.split(" ")[0] == deps_key:
            pip += ["--no-deps", "--force-reinstall"]
        else:
            stamp.unlink(missing_ok=True)
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
        out = subprocess.run([*pip, str(src)], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"pip install on Python {version} failed:\n{out.stderr}"
        stamp.write_text(key)
    return venv_python


@pytest.mark.timeout(900)
@pytest.mark.parametrize("version", SUPPORTED)
def test_the_demo_runs_on_each_supported_python(version: str, tmp_path: Path) -> None:
    python = find_python(version)
    if python is None:
        pytest.skip(
            f"CPython {version} is not installed (looked for ~/.pyenv/versions/{version}.*"
            f"/bin/python3 and python{version} on PATH)"
        )
    venv_python = install(python, version, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    run = [str(venv_python), "-c", VERSION + "; import search_sessions as s; print(s.__file__)"]
    out = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, env=env, check=True)
    got, where = out.stdout.splitlines()
    assert got.split() == [version, "cpython"]
    assert Path(where).is_relative_to(CACHE / version), f"imported from {where}, not the venv"

    run = [str(venv_python), "-m", "search_sessions", "demo"]
    out = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    searches = re.findall(r"^search\s+user=\d+ query='(\w+)' ctr=(\S+)", out.stdout, re.M)
    assert searches == [("dogs", "1.0"), ("cats", "1.0"), ("fruit", "0.0")], out.stdout
    assert sum(line.startswith("session ") for line in out.stdout.splitlines()) == 2
