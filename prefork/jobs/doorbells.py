"""One doorbell per worker slot, and which workers are idle: how the master wakes one idle
worker per new job instead of letting every worker poll the table.

A doorbell is an eventfd, made by the master before the worker of that slot is forked (kept for
the slot's next workers): the worker's ``fileno()``, so its loop (core/pulling.py) waits on it
and claims when it rings.  The idle flags are one byte per slot in an anonymous shared mapping
made before any fork: a worker sets its byte before it tries a claim and clears it once it
holds a job; the master reads them to choose whom to ring.

Why no new job waits.  A worker's bell stays rung while its claims find jobs, so after a job it
tries again at once (no system call), until a claim finds nothing; only then does it drain the
bell, claim once more (a ring between the first claim and the drain is not lost) and wait.  It
sets its idle byte *before* those claims: so if the master, after a job was committed, reads
the byte as busy, the worker's next claim comes after the master's read, hence after the
commit, and sees the job.  A worker the master rang for a job another took just finds nothing
and waits again.

The master's own bell.  While every worker is busy the master does not watch the table at all
(each worker claims again after its job; a wake-up per commit cost the master ~190 us of CPU
per empty job, as much as a worker's own work on the 2-core test machine).  A worker whose claim
found nothing rings the master's bell before it waits: the master then counts the due jobs
once and watches the table again while any worker is idle.
"""

from __future__ import annotations

import contextlib
import mmap
import os

MAX_SLOTS = 4096  # one byte each in the idle map


class Doorbells:
    """Methods: make(slot) (in the master, before that slot's fork), fd(slot), ring(slot),
    drain(slot), set_idle(slot, idle), idle(slot), ring_master(), drain_master(), close();
    ``master_fd``: the master's bell."""

    def __init__(self) -> None:
        self.bells: dict[int, int] = {}
        self.flags = mmap.mmap(-1, MAX_SLOTS)  # MAP_SHARED: the workers write, the master reads
        self.master_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        # The workers ring it through a duplicate: a worker closes every fd the master's loop
        # waits on (master/pool.py), and a write to that number, once SQLite reused it for the
        # database file, wrote 8 bytes into the file ("file is not a database", seen in
        # tests/jobs/test_command.py).
        self._ring_fd = os.dup(self.master_fd)

    def make(self, slot: int) -> int:
        if not 0 <= slot < MAX_SLOTS:
            raise ValueError(f"worker slot {slot} beyond the doorbells' {MAX_SLOTS}")
        fd = self.bells.get(slot)
        if fd is None:
            fd = self.bells[slot] = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.flags[slot] = 0
        return fd

    def fd(self, slot: int) -> int:
        return self.bells[slot]

    def ring(self, slot: int) -> None:
        os.eventfd_write(self.bells[slot], 1)

    def drain(self, slot: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.bells[slot])

    def set_idle(self, slot: int, idle: bool) -> None:
        self.flags[slot] = 1 if idle else 0

    def idle(self, slot: int) -> bool:
        return self.flags[slot] == 1

    def ring_master(self) -> None:
        """A worker found nothing to claim and is about to wait."""
        os.eventfd_write(self._ring_fd, 1)

    def drain_master(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.master_fd)

    def close(self) -> None:
        for fd in self.bells.values():
            os.close(fd)
        self.bells.clear()
        if self.master_fd >= 0:
            os.close(self.master_fd)
            os.close(self._ring_fd)
            self.master_fd = self._ring_fd = -1
