"""The pid file: claimed only when no live master holds it, written without following links,
removed only by the process it names.

Why the care.  The master often runs as root and writes into a directory other users may be
able to write (``/tmp``, a shared run directory).  A predictable temporary name opened with a
plain ``open(name, "w")`` lets anyone who plants a symlink there make root overwrite the link's
target.  So the temporary file gets an unpredictable name and is created with
``O_CREAT | O_EXCL | O_NOFOLLOW``: a planted name (link or not) makes the open fail and the
next name is tried, never followed.  It is then renamed over the pid file; ``rename`` replaces
a symlink at the pid file's path *itself*, so a link planted there cannot redirect the write.
Reading (to find the owner, or before removing) uses ``O_NOFOLLOW | O_NONBLOCK`` and accepts
only a regular file: a link or a FIFO planted at the path names nobody and cannot hang us.

Ownership.  A second ``prefork serve --pidfile P`` must not take ``P`` from a master that still
runs: :func:`live_owner` reads the pid and checks that it is alive *and* a prefork process (its
``/proc/PID/cmdline`` mentions prefork -- the title or the command line), so a stale file whose
pid was reused by an unrelated process does not block a restart.  :func:`remove_pidfile`
removes the file only while it names this process (after a USR2 upgrade it names the new
master, and the old one must leave it alone).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import time
from collections.abc import Iterator
from typing import Any

from prefork.ops.errors import PathError

# The pid file is readable by all, as pid files conventionally are (``ps``, monitoring).
MODE = 0o644
# Temporary names tried before giving up (each is 64 random bits: a clash means a planted name).
TEMP_ATTEMPTS = 16
# More than any pid file holds: a planted huge file is not read whole.
MAX_READ = 64
# How long an empty /proc/PID/cmdline is taken for a process in the middle of exec.
EXEC_WINDOW = 0.2
EXEC_POLL = 0.002
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class PidfileError(PathError):
    """The pid file cannot be claimed or written; ``str()`` is one line naming the pid file."""

    what = "pidfile"


def _candidate_names(path: str) -> Iterator[str]:
    """Unpredictable temporary names next to ``path`` (same directory: rename stays atomic)."""
    directory, base = os.path.split(path)
    for _ in range(TEMP_ATTEMPTS):
        yield os.path.join(directory, f".{base}.{secrets.token_hex(8)}.tmp")


def _write_temp(path: str) -> str:
    """A new file next to ``path`` holding this process's pid; returns its name."""
    data = f"{os.getpid()}\n".encode()
    for tmp in _candidate_names(path):
        try:
            fd = os.open(tmp, _CREATE, MODE)
        except FileExistsError:
            continue  # planted (or, very unlikely, a clash): try another name
        except OSError as exc:
            raise PidfileError(path, exc.strerror or str(exc), exc.errno or 0) from None
        try:
            try:
                os.fchmod(fd, MODE)  # not narrowed by the umask
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            _discard(tmp)
            raise PidfileError(path, exc.strerror or str(exc), exc.errno or 0) from None
        return tmp
    raise PidfileError(path, f"no free temporary name after {TEMP_ATTEMPTS} tries",
                       errno.EEXIST)


def _discard(tmp: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def _install(tmp: str, path: str) -> None:
    """Rename ``tmp`` over ``path``: atomic, and a symlink at ``path`` is replaced itself."""
    try:
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise PidfileError(path, exc.strerror or str(exc), exc.errno or 0) from None


def write_pidfile(path: str) -> None:
    """Write this process's pid to ``path`` atomically, never through a symlink."""
    _install(_write_temp(path), path)


def read_pid(path: str) -> int | None:
    """The pid a regular file at ``path`` holds; None if there is none (or it is a link)."""
    try:
        fd = os.open(path, _READ)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        text = os.read(fd, MAX_READ).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() and 0 < int(text) < 2**31 else None


def is_prefork_process(pid: int) -> bool:
    """True if ``pid`` is alive and looks like a prefork process (title or command line)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    # The command line reads empty for a moment while a process execs (a master just started,
    # or the new master of an upgrade), and for good from a zombie or a kernel thread.
    deadline = time.monotonic() + EXEC_WINDOW
    while True:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
        except FileNotFoundError:
            return False  # exited meanwhile
        except OSError:
            return True  # alive and we cannot tell: assume the worst, it is a master
        if cmdline or time.monotonic() > deadline:
            return b"prefork" in cmdline
        time.sleep(EXEC_POLL)


def live_owner(path: str) -> int | None:
    """The pid of a live prefork process that ``path`` names, other than this one."""
    pid = read_pid(path)
    if pid is None or pid == os.getpid():
        return None
    return pid if is_prefork_process(pid) else None


def claim_pidfile(path: str) -> None:
    """Refuse if a live master holds ``path`` (see :func:`live_owner`); otherwise write it.

    Where no file is there yet it is created with ``link()``, which fails if another start
    created one meanwhile: of two masters started together on a free path, one wins."""
    _refuse_if_held(path)
    tmp = _write_temp(path)
    try:
        os.link(tmp, path)  # exclusive; like rename, never follows a link at ``path``
    except FileExistsError:
        try:
            _refuse_if_held(path)  # someone else's now, or a stale file or link
        except PidfileError:
            _discard(tmp)
            raise
        _install(tmp, path)
        return
    except OSError as exc:
        _discard(tmp)
        raise PidfileError(path, exc.strerror or str(exc), exc.errno or 0) from None
    _discard(tmp)


def _refuse_if_held(path: str) -> None:
    owner = live_owner(path)
    if owner is not None:
        raise PidfileError(path, f"held by a running prefork master (pid {owner})", errno.EEXIST)


def remove_pidfile(path: str) -> None:
    """Remove ``path`` if it is a regular file naming this process."""
    if read_pid(path) != os.getpid():
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


# The setting, read here only: the command claims the file before the start and removes it at
# the end; the master writes it when it takes over (at its start, or as the new master of an
# upgrade) and removes it at its close.  ``server``: a server, or the command's config.


def claim_for(server: Any) -> None:
    """Claim the pid file ``server``'s ``pidfile`` names, if it names one (see claim_pidfile)."""
    if server.pidfile:
        claim_pidfile(server.pidfile)


def write_for(server: Any) -> None:
    """Write this process's pid to ``server``'s pid file, if it has one."""
    if server.pidfile:
        write_pidfile(server.pidfile)


def remove_for(server: Any) -> None:
    """Remove ``server``'s pid file, if it has one and it names this process."""
    if server.pidfile:
        remove_pidfile(server.pidfile)
