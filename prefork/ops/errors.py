"""Errors about a file the operations use (log file, pid file): one line naming the file."""

from __future__ import annotations


class PathError(OSError):
    """``str()`` is ``"<what> <path>: <reason>"``; subclasses set ``what``."""

    what = "file"

    def __init__(self, path: str, reason: str, code: int = 0) -> None:
        super().__init__(code, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.what} {self.path}: {self.reason}"
