"""The pid file: written atomically, removed only by the process it names (after a USR2
upgrade the file names the new master, and the old one must leave it alone)."""

from __future__ import annotations

import contextlib
import os


def write_pidfile(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)  # atomic: a reader never sees half a pid


def remove_pidfile(path: str) -> None:
    """Remove ``path`` if it names this process."""
    try:
        with open(path) as f:
            if f.read().strip() != str(os.getpid()):
                return
    except OSError:
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
