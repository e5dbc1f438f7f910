"""Logging set-up for the command, and reopening log files on SIGUSR1 (for logrotate)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from typing import Any, cast

from prefork.ops import accesslog
from prefork.ops.errors import PathError

FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
LOGGER = "prefork"  # the parent of every logger of prefork's (prefork.master, prefork.wsgi...)
MARK = "_prefork_handler"  # on the handler setup_logging installed, to find it again
_CAPTURE: list[logging.Handler] = []  # the log file handler, when --capture-output
_CAPTURED: list[int] = []  # the pid whose fds 1 and 2 are on it (a fork must ask again)


class LogFileError(PathError):
    """The log file cannot be opened; ``str()`` is one line naming it."""

    what = "log file"


def setup_logging(level: str, log_file: str | None = None, *, root: bool = False,
                  capture_output: bool = False) -> None:
    """One handler, on prefork's own logger (``prefork``, which then no longer propagates), or
    with ``root`` on the root logger: stderr, or ``log_file`` (appended to).

    An application that configures logging for itself keeps it: prefork's lines do not reach
    its handlers twice, and its own lines go where it says (with ``root``, where prefork's go).
    With ``capture_output`` (and a ``log_file``), each process that calls
    :func:`capture_output` -- the workers, at start -- has its stdout and stderr on the file.

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
    own, top = logging.getLogger(LOGGER), logging.getLogger()
    for logger in (own, top):
        for old in [h for h in logger.handlers if getattr(h, MARK, False)]:
            logger.removeHandler(old)
            old.close()
    setattr(handler, MARK, True)
    target = top if root else own
    target.addHandler(handler)
    target.setLevel(getattr(logging, level.upper()))
    own.propagate = root
    if root:
        own.setLevel(logging.NOTSET)
    _CAPTURE[:] = [handler] if capture_output and isinstance(handler, logging.FileHandler) else []


# The command's settings of the log, read here only (``config``: the command's Config): the
# command sets the log up from them, its runner checks them and gives the workers' user the
# files the workers reopen; the workers capture their output as setup_logging() left it.


def setup_for(config: Any) -> None:
    """:func:`setup_logging` as ``config`` says: its log_level, log_file, log_root and
    capture_output.  Raises :class:`LogFileError`."""
    setup_logging(config.log_level, config.log_file, root=config.log_root,
                  capture_output=config.capture_output)


def refusal(config: Any) -> str | None:
    """Why ``config``'s log settings cannot work together, in one line; None when they can."""
    if config.capture_output and not config.log_file:
        return "--capture-output needs --log-file"
    return None


def reopened_files(config: Any) -> list[str]:
    """The files ``config`` logs to that a worker reopens on USR1 (the log and the access log;
    not stdout, ``-``): the workers' user must own them."""
    return [path for path in (config.log_file, config.access_logfile) if path and path != "-"]


def capture_output() -> None:
    """In this process, put stdout and stderr (fds 1 and 2) on the log file, if asked
    (``setup_logging(capture_output=True)``); again after every reopen (USR1)."""
    if not _CAPTURE:
        return
    stream = cast(logging.FileHandler, _CAPTURE[0]).stream
    if stream is None:
        return
    for std in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            std.flush()
    stream.flush()
    for fd in (1, 2):
        os.dup2(stream.fileno(), fd)
    _CAPTURED[:] = [os.getpid()]


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
    if os.getpid() in _CAPTURED:
        capture_output()  # stdout and stderr follow the file to its new inode
    try:
        count += accesslog.reopen()  # (not a logging handler: ops/accesslog.py)
    except OSError as exc:
        logging.getLogger("prefork").warning(
            "pid %d cannot reopen the access log: %s; still writing to the old file",
            os.getpid(), exc.strerror or exc)
    return count


def stack_dump_stream() -> object:
    """Where a hung worker's stack goes: the first log handler with a real file, else stderr."""
    for handler in [*logging.getLogger(LOGGER).handlers, *logging.getLogger().handlers]:
        stream = getattr(handler, "stream", None)
        if stream is not None and hasattr(stream, "fileno"):
            try:
                stream.fileno()
            except (OSError, ValueError):
                continue
            return stream
    return sys.stderr
