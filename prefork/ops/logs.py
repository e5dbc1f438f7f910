"""Logging set-up for the command, and reopening log files on SIGUSR1 (for logrotate)."""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import cast

from prefork.ops.errors import PathError

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


class LogFileError(PathError):
    """The log file cannot be opened; ``str()`` is one line naming it."""

    what = "log file"


def setup_logging(level: str, log_file: str | None = None) -> None:
    """One handler on the root logger: stderr, or ``log_file`` (appended to).

    Raises :class:`LogFileError` when ``log_file`` cannot be opened."""
    handler: logging.Handler
    if log_file:
        try:
            handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise LogFileError(log_file, exc.strerror or str(exc), exc.errno or 0) from None
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))


def reopen_log_files() -> int:
    """Reopen every FileHandler of every logger at its path: after logrotate moved the file,
    the next record goes to a new file.  The new file is opened before the old one is closed,
    so a handler that cannot open it (a worker running as another user, a missing directory)
    keeps writing to the old one and says so once.  Returns how many were reopened."""
    handlers: list[logging.Handler] = list(logging.getLogger().handlers)
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            handlers.extend(logger.handlers)
    count = 0
    for handler in {id(h): h for h in handlers}.values():
        if isinstance(handler, logging.FileHandler):
            try:
                stream = open(handler.baseFilename, handler.mode,  # noqa: SIM115 - handler owns it
                              encoding=handler.encoding, errors=handler.errors)
            except OSError as exc:
                logging.getLogger("prefork").warning(
                    "pid %d cannot reopen %s: %s; still writing to the old file",
                    os.getpid(), handler.baseFilename, exc.strerror or exc)
                continue
            old = handler.setStream(cast(io.TextIOWrapper, stream))
            if old is not None:
                old.close()
            count += 1
    return count


def stack_dump_stream() -> object:
    """Where a hung worker's stack goes: the first log handler with a real file, else stderr."""
    for handler in logging.getLogger().handlers:
        stream = getattr(handler, "stream", None)
        if stream is not None and hasattr(stream, "fileno"):
            try:
                stream.fileno()
            except (OSError, ValueError):
                continue
            return stream
    return sys.stderr
