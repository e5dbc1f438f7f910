"""Dropping privileges: workers run as ``user``/``group``, the master keeps its own.

The master binds the sockets (a port below 1024 needs root), then forks; each worker switches to
the configured user and group as its first act after leading its own process group -- before
the parent-death signal is armed (Linux clears it when the credentials change) and before any
hook or handler runs -- with its supplementary groups reset to just that group.  A worker can
then never regain root: the switch is ``setgroups``, ``setgid``, ``setuid``, in that order
(``setuid`` last, since after it the others would be refused).

Why the master keeps its privileges: it never runs application code (handlers and the
``post_fork`` hook run in workers), and it needs them for what it still does as the service's
owner -- re-reading a root-only config on HUP, reopening root-owned log files on USR1,
re-executing itself on USR2 (the new master binds the control and metrics sockets again),
signalling and reaping workers, and removing its pid file and socket files at exit.
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Any


class PrivilegeError(ValueError):
    """A user or group that cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Credentials:
    """Who the workers run as.  ``uid``/``gid`` of -1 keep the current one."""

    uid: int = -1
    gid: int = -1
    user: str = ""
    group: str = ""

    def __bool__(self) -> bool:
        return self.uid != -1 or self.gid != -1


def resolve(user: str | None, group: str | None) -> Credentials:
    """Look ``user`` and ``group`` up (names or numeric ids).  A user without a group runs in
    the user's primary group.  Raises :class:`PrivilegeError` when one does not exist or this
    process could not switch to it."""
    uid = gid = -1
    user_name = group_name = ""
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except (KeyError, OverflowError):
            raise PrivilegeError(f"user {user!r} does not exist") from None
        uid, gid, user_name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if group:
        try:
            group_entry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except (KeyError, OverflowError):
            raise PrivilegeError(f"group {group!r} does not exist") from None
        gid, group_name = group_entry.gr_gid, group_entry.gr_name
    creds = Credentials(uid, gid, user_name, group_name)
    if creds and os.geteuid() != 0 and (uid not in (-1, os.geteuid())
                                        or gid not in (-1, os.getegid())):
        raise PrivilegeError(
            f"cannot run workers as {describe(creds)}: the master is not root"
        )
    return creds


def of_workers(server: Any) -> Credentials:
    """Who the workers of ``server`` -- a server, or the command's config that builds one --
    run as: its ``user`` and ``group``, resolved.  The one place that reads the two settings:
    the server's constructor and the command's start rules ask here.  Raises
    :class:`PrivilegeError` as :func:`resolve` does."""
    return resolve(server.user, server.group)


def describe(creds: Credentials) -> str:
    parts = []
    if creds.uid != -1:
        parts.append(f"user {creds.user or creds.uid}")
    if creds.gid != -1:
        parts.append(f"group {creds.group or creds.gid}")
    return " and ".join(parts)


def drop(creds: Credentials) -> None:
    """Become ``creds`` for good (in a worker, right after the fork)."""
    if not creds or os.geteuid() != 0:
        return  # nothing to do, or resolve() checked it is already us
    gid = creds.gid if creds.gid != -1 else os.getegid()
    os.setgroups([gid])
    os.setgid(gid)
    if creds.uid != -1:
        os.setuid(creds.uid)


def chown(path: str, creds: Credentials) -> None:
    """Give a file the master creates for the workers (a unix listener) to ``creds``."""
    if creds:
        os.chown(path, creds.uid, creds.gid, follow_symlinks=False)
