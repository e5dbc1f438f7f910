"""What ``pip install .`` (not editable) installs: every module of the source tree, and a
``prefork`` command that starts.  (A package missing from the build's list once made the
README's first command fail with ModuleNotFoundError on a fresh machine.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_plain_install_has_every_module_and_starts(tmp_path: Path) -> None:
    # From a copy: a build/ left in the checkout by an earlier build would be reused.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "prefork", src / "prefork",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps",
         "--disable-pip-version-check", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-2000:]
    source = {p.relative_to(ROOT).as_posix() for p in (ROOT / "prefork").rglob("*.py")}
    installed = {p.relative_to(target).as_posix() for p in (target / "prefork").rglob("*.py")}
    assert source - installed == set()
    assert (target / "prefork" / "py.typed").exists()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    for argv in (["serve", "--help"], ["jobs", "--help"], ["rpcgen", "--help"]):
        run = subprocess.run([sys.executable, "-m", "prefork", *argv], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path, env=env)
        assert run.returncode == 0, (argv, run.stderr[-2000:])
