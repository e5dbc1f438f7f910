"""Process titles, so ``ps`` and ``top`` show what each process of the pool is doing.

    prefork: master [web] 4 workers 127.0.0.1:8000
    prefork: master [web] paused 127.0.0.1:8000
    prefork: worker 3 [web] busy 1523 req

The format functions are pure (and tested); :func:`set_title` is the only side effect.  It
remembers the last title it set in this process and skips the call when nothing changed, so a
caller may call it on every state change.  Without the ``setproctitle`` package it does nothing.

``setproctitle`` rewrites the memory that holds the process's ``argv`` (Linux shows it in
``/proc/PID/cmdline``), which a forked child shares copy-on-write: a child's first call changes
only the child.  The cache is per process for the same reason -- after a fork the child's cache
says the master's title, which is also the child's title at that moment.

Cost, measured on CPython 3.11, x86-64, a shared and noisy host, with::

    python -m timeit -s 'from prefork import titles; import itertools
    c = itertools.count()' 'titles.set_title(titles.worker_title(3, "web", "busy", next(c)))'

0.9 us for a changing worker title, formatting included (``worker_title`` alone 0.27 us, the
``setproctitle`` call about 0.5 us); an unchanged title costs 0.03 us, the cache hit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "PREFIX", "available", "counted", "master_title", "name_of", "set_title", "title",
    "worker_title",
]

_setproctitle: Callable[[str], None] | None
try:
    from setproctitle import setproctitle as _setproctitle
except ImportError:  # optional at run time: titles are a convenience
    _setproctitle = None

PREFIX = "prefork"

# Control characters (a newline in a configured name, a NUL that would cut the title short)
# become spaces.
_CLEAN = {code: " " for code in (*range(32), 127)}

_last: str | None = None


def _clean(text: str) -> str:
    return text if text.isprintable() else text.translate(_CLEAN)


def _name_part(name: str) -> str:
    return f" [{_clean(name)}]" if name else ""


def name_of(server: Any) -> str:
    """The name ``server``'s titles show (and ``prefork status``): its ``name`` setting, the
    one place that reads it ("": none; the command's server has the APP when none is set)."""
    return str(server.name)


def counted(count: int, noun: str) -> str:
    """``1 worker``, ``2 workers``, ``0 workers``: a count as people write it."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def master_title(name: str, workers: int, listeners: Sequence[str], state: str = "") -> str:
    """``prefork: master [NAME] 4 workers 127.0.0.1:8000`` (one worker is ``1 worker``; no
    ``[NAME]`` when ``name`` is empty; listeners separated by spaces).  ``state``: ``paused``
    replaces the count (there are no workers); another state (``reloading``, ``stopping``)
    follows it."""
    where = "".join(f" {_clean(listener)}" for listener in listeners)
    what = "paused" if state == "paused" else counted(workers, "worker")
    if state and state != "paused":
        what += f" {state}"
    return f"{PREFIX}: master{_name_part(name)} {what}{where}"


def template_title(name: str, generation: int) -> str:
    """``prefork: template [NAME] generation 2``: the process a preloaded generation forks
    its workers from."""
    return f"{PREFIX}: template{_name_part(name)} generation {generation}"


def worker_title(number: int, name: str, state: str, requests: int) -> str:
    """``prefork: worker 3 [NAME] busy 1523 req``; ``state`` as :attr:`State.label` gives it."""
    return f"{PREFIX}: worker {number}{_name_part(name)} {state} {requests} req"


def available() -> bool:
    """True when titles can really be set (the ``setproctitle`` package is importable)."""
    return _setproctitle is not None


def title() -> str | None:
    """The last title :func:`set_title` set in this process, or None."""
    return _last


def set_title(text: str) -> bool:
    """Set this process's title to ``text``; True if a call was made, False if skipped (the
    title did not change, or ``setproctitle`` is missing)."""
    global _last
    if text == _last or _setproctitle is None:
        return False
    _setproctitle(text)
    _last = text
    return True


TITLE_INTERVAL = 0.5  # seconds between per-request title changes under load


def _busy() -> str:
    return "busy"


class WorkerTitle:
    """A worker's title, changed per request but rate-limited: setproctitle costs a prctl()
    system call, and twice a request would be 2 of ~5 system calls of a small UDP request.  A
    request after a quiet spell shows ``busy``; under load the title changes at most every
    TITLE_INTERVAL; a skipped change is ``due`` at the end of the interval, and the worker's
    wait for work wakes for it (``lapsed``), so an idle title is never left stale.  The
    scoreboard (``prefork status``) is always exact.

    ``label(state)`` gives what the title shows: (state text, requests served)."""

    def __init__(self, number: int, name: str, label: Callable[[str], tuple[str, int]]) -> None:
        self.number, self.name, self.label = number, name, label
        self.state, self.at = "", 0.0
        self.due = 0.0  # when a skipped change is shown, if the worker is waiting; 0: none
        self.idle_since = 0.0  # when the last request ended
        self.busy: Callable[[], str] = _busy  # the words for "busy" (the server's busy_title)

    def show(self, state: str) -> None:
        text, requests = self.label(self.busy() if state == "busy" else state)
        set_title(worker_title(self.number, self.name, text, requests))
        self.state, self.at, self.due = state, time.monotonic(), 0.0

    def request(self, state: str, now: float) -> None:
        """``busy`` as a request begins, ``idle`` as it ends (rate-limited)."""
        if state == "busy":
            due = now - self.idle_since >= TITLE_INTERVAL
        else:
            self.idle_since = now
            due = self.state == "busy"
        if due or now - self.at >= TITLE_INTERVAL:
            self.show(state)
        else:
            self.due = self.at + TITLE_INTERVAL

    def lapsed(self, waiting: bool) -> None:
        """The worker's wait for work timed out while a change was ``due`` (it waits at most
        TITLE_INTERVAL then, so the change is late by less than that): show it now if its time
        has come (``idle``, with the last count, if ``waiting``)."""
        if time.monotonic() >= self.due:
            if waiting:
                self.show("idle")
            self.due = 0.0
