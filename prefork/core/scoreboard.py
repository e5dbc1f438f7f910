"""The scoreboard: one fixed-size slot of shared memory per worker.

The master maps an anonymous ``MAP_SHARED`` region before it forks anything, so every worker
inherits the same pages.  Slot ``i`` belongs to the worker whose ``WorkerInfo.slot`` is ``i``:
only that worker writes it while it runs (through a :class:`SlotWriter`); the master writes it
only when no worker owns it (:meth:`Scoreboard.reset` before the fork, :meth:`Scoreboard.clear`
after the reap).  Anyone may read.  No thread, no lock, no system call: a worker stuck in a
handler still shows ``BUSY`` with the monotonic time its request started, and a worker that
died shows whatever it last wrote until the master clears it.  ``CLOCK_MONOTONIC`` is one clock
for the whole system, so the master can compare a worker's times with its own.

Why a sequence counter
----------------------
A slot is several fields, and a reader in another process can look at any moment, also half way
through an update.  Each slot therefore starts with a sequence counter (a seqlock): the writer
makes it odd, writes the fields, makes it even.  A reader reads the counter, the fields, the
counter again, and keeps the snapshot only if both counts are equal and even; otherwise it
retries, for a bounded time.  Writers never wait.

Two details of ``struct`` matter here:

* ``pack_into`` first zero-fills the whole target range, then stores the fields one by one.  If
  the counter were packed that way a reader could catch it at zero -- even, so "stable" -- while
  the fields change.  The counter is therefore stored through a ``memoryview`` cast to ``Q``:
  one aligned 8-byte store, never zero in between.  Zero is never a valid count (slots start at
  :data:`SEQ_START`), so a reader that sees zero treats the slot as being written.
* Native formats (``@``) store each number with one ``memcpy``; the standard-size ones
  (``=``, ``<``) store byte by byte.  Slots are 64 bytes, 64-byte aligned, fields naturally
  aligned: one cache line per worker, and no two workers' slots share a line.

Ordering: on x86-64 (TSO) stores become visible in program order and loads are not reordered
with loads, which is all a seqlock needs; each step here is a separate C call the compiler
cannot reorder across.  Python has no memory fence, so on weakly ordered CPUs (arm64) a reader
could in principle accept a mixed snapshot.  The scoreboard is for supervision and monitoring,
where that is tolerable; nothing here is a correctness lock.

Handler threads (``threads`` > 1) each get a slot of their own, so the one-writer rule holds
per thread: a worker's block is then ``1 + threads`` slots, the worker's own (state, pid,
empty accepts; written by its multiplexer thread) followed by one per handler thread (busy or
idle, its request's start, its count).  :meth:`Scoreboard.read` folds a block into one exact
worker view (BUSY while any thread is, the *oldest* request in flight, the sum of the counts);
:meth:`Scoreboard.thread_slots` gives the threads one by one.  With one thread a block is one
slot, laid out as it always was.

A worker killed in the middle of an update leaves its counter odd.  :meth:`Scoreboard.read`
then gives up after :data:`READ_PATIENCE` seconds and returns the last values it saw with
``consistent=False`` (a stuck slot is never hidden); :meth:`Scoreboard.clear` starts it over.

Cost, measured on CPython 3.11, x86-64, a shared and noisy 2-CPU host, with::

    python -m timeit -s 'from prefork.core.scoreboard import Scoreboard, State
    b = Scoreboard(8); b.reset(3, 0, 1, 0.0); w = b.writer(3)' 'w.begin_request(1.0)'

``begin_request`` 0.19 us, ``end_request`` 0.23 us, ``set_state`` 0.26 us, ``empty_accept``
0.07 us per call; ``read`` 1.6 us in the master.  Without the sequence counter a reader racing
a writer in a tight loop saw about 3% torn slots; with it, none (tests/test_scoreboard.py).
"""

from __future__ import annotations

import dataclasses
import enum
import mmap
import os
import struct
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["READ_PATIENCE", "SEQ_START", "SLOT_SIZE", "Scoreboard", "Slot", "SlotWriter", "State"]


class State(enum.IntEnum):
    """What a worker is doing, as stored in its slot."""

    EMPTY = 0  # no worker owns the slot
    BOOTING = 1  # forked, not yet accepting
    IDLE = 2  # waiting for a connection
    BUSY = 3  # a request in flight since ``request_started``
    DRAINING = 4  # stopping: finishes what it has, accepts nothing new

    @property
    def label(self) -> str:
        """``busy``, ``idle``, ...: for titles and status output."""
        return self.name.lower()


_STATES = {int(s): s for s in State}
_BUSY, _IDLE = State.BUSY, State.IDLE  # the request path avoids enum attribute lookups
_BUSY_VALUE = int(State.BUSY)

SLOT_SIZE = 64  # bytes; one cache line
SEQ_START = 2  # even and non-zero: zero means "being written" to a reader
# A reader retries READ_SPINS times at once; after that the writer is probably preempted in
# the middle of an update (or dead), so the reader naps READ_NAP seconds between tries -- giving
# its CPU to the writer on a busy host -- for up to READ_PATIENCE seconds (several scheduler
# time slices) before it returns the snapshot marked inconsistent.
READ_SPINS = 16
READ_NAP = 0.0002
READ_PATIENCE = 0.05

# The layout of one slot.  Offsets are fixed; the formats below must agree with them.
#
#   off  field            format
#     0  seq              Q   (through the memoryview only, never pack_into)
#     8  state            I   \
#    12  (pad)            4x   |  the "hot" range: every request touches only this,
#    16  request_started  d    |  in one pack_into
#    24  requests         Q    |
#    32  last_active      d   /
#    40  empty_accepts    Q   (through the memoryview: a single atomic counter store)
#    48  pid              i
#    52  generation       I
#    56  booted_at        d
_OFF_STATE = 8
_OFF_EMPTY = 40
_OFF_PID = 48
_SLOT = struct.Struct("@QI4xdQdQiId")
_BEGIN = struct.Struct("@I4xd")  # state, request_started
_HOT = struct.Struct("@I4xdQd")  # state, request_started, requests, last_active
_BODY = struct.Struct("@I4xdQdQiId")  # everything after seq
_PID = struct.Struct("@i")
assert _SLOT.size == SLOT_SIZE
assert _BODY.size == SLOT_SIZE - 8
_WORDS = SLOT_SIZE // 8  # 8-byte words per slot, for indexing the "Q" view


@dataclass(frozen=True, slots=True)
class Slot:
    """A consistent snapshot of one slot (unless ``consistent`` is False: see the module doc).

    Times are ``time.monotonic()`` values; ``request_started`` is 0.0 when no request is in
    flight.
    """

    index: int
    pid: int
    generation: int
    state: State
    requests: int
    empty_accepts: int
    request_started: float
    last_active: float
    booted_at: float
    consistent: bool = True

    def request_age(self, now: float) -> float | None:
        """Seconds the request in flight has been running at ``now``; None when there is none."""
        if self.request_started <= 0.0:
            return None
        return now - self.request_started


class Scoreboard:
    """Shared slots for ``slots`` workers.  Create it in the master before the first fork.

    Master: reset(index, pid, generation, now) before forking the slot's worker, clear(index)
    after reaping it, read(index) / snapshot() / thread_slots(index) at any time, close() at
    the end.  Worker: writer(index) once after the fork, thread_writer(index, t) for each
    handler thread t in 1..threads, then the SlotWriter methods.
    """

    def __init__(self, slots: int, threads: int = 1) -> None:
        if slots < 1:
            raise ValueError(f"a scoreboard needs at least one slot, not {slots}")
        if threads < 1:
            raise ValueError(f"a worker needs at least one thread, not {threads}")
        self.slots = slots
        self.threads = threads
        self.stride = threads + 1 if threads > 1 else 1  # physical slots per worker
        self._map = mmap.mmap(
            -1, slots * self.stride * SLOT_SIZE, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS
        )
        self._seq = memoryview(self._map).cast("Q")
        for index in range(slots * self.stride):
            self._seq[index * _WORDS] = SEQ_START
        self.read_retries = 0  # retries this process needed so far (a torn read avoided each)

    # -- reading ------------------------------------------------------------------------------

    def read(self, index: int) -> Slot:
        """A consistent snapshot of slot ``index`` (see the module doc for the exception); with
        handler threads, the worker's view of its whole block (see the module doc)."""
        self._check(index)
        if self.stride == 1:
            return self._read(index, index)
        return _fold(self._read(index * self.stride, index), self.thread_slots(index))

    def thread_slots(self, index: int) -> list[Slot]:
        """The handler threads of worker slot ``index``, one snapshot each (none with one
        thread: the worker's slot is its thread's)."""
        self._check(index)
        base = index * self.stride
        return [self._read(base + t, index) for t in range(1, self.stride)]

    def _read(self, phys: int, index: int) -> Slot:
        counts, word, offset, buf = self._seq, phys * _WORDS, phys * SLOT_SIZE, self._map
        end = offset + SLOT_SIZE
        spins, deadline = 0, 0.0
        while True:
            # Count, one memcpy of the slot, count: the window between the two loads of the
            # count is that short, so a reader gets through even while its writer updates in
            # a tight loop.  Decoding happens afterwards, on the private copy.
            count = counts[word]
            raw = buf[offset:end]
            if count & 1 == 0 and count != 0 and counts[word] == count:
                return _slot(index, _SLOT.unpack(raw), consistent=True)
            self.read_retries += 1
            spins += 1
            if spins >= READ_SPINS:
                now = time.monotonic()
                if deadline == 0.0:
                    deadline = now + READ_PATIENCE
                elif now > deadline:
                    return _slot(index, _SLOT.unpack(raw), consistent=False)
                time.sleep(READ_NAP)  # perhaps the writer waits for this CPU

    def snapshot(self) -> list[Slot]:
        """Every slot that is not EMPTY, in index order (and any slot left inconsistent, so
        a worker killed mid-update is not hidden)."""
        slots = map(self.read, range(self.slots))
        return [s for s in slots if s.state is not State.EMPTY or not s.consistent]

    # -- master-side writes (only while no worker owns the slot) ------------------------------

    def reset(self, index: int, pid: int, generation: int, now: float) -> None:
        """Prepare the slot for a new worker: BOOTING, counters zero, booted_at=now.

        Call it before the fork, when ``pid`` is not known yet (pass 0): the worker stamps its
        own pid when it takes its writer.
        """
        self._check(index)
        base = index * self.stride
        self._write_body(base, (State.BOOTING, 0.0, 0, now, 0, pid, generation, now))
        for phys in range(base + 1, base + self.stride):  # the threads, until they start
            self._write_body(phys, (State.EMPTY, 0.0, 0, 0.0, 0, pid, generation, now))

    def clear(self, index: int) -> None:
        """Mark the slot EMPTY and zero it, after its worker has been reaped."""
        self._check(index)
        base = index * self.stride
        for phys in range(base, base + self.stride):
            self._write_body(phys, (State.EMPTY, 0.0, 0, 0.0, 0, 0, 0, 0.0))

    def _write_body(self, phys: int, body: tuple[int | float, ...]) -> None:
        word = phys * _WORDS
        seq = self._seq[word]
        # A worker killed mid-update leaves the count odd: open a new odd count past it.
        opened = seq + 1 if seq & 1 == 0 else seq + 2
        self._seq[word] = opened
        _BODY.pack_into(self._map, phys * SLOT_SIZE + _OFF_STATE, *body)
        self._seq[word] = opened + 1

    # -- worker side --------------------------------------------------------------------------

    def writer(self, index: int, pid: int | None = None) -> SlotWriter:
        """The writer for slot ``index``; call it once in the worker, after the fork.

        It stamps ``pid`` (default: this process) into the slot and keeps the slot's state.
        """
        self._check(index)
        return SlotWriter(self, index * self.stride, os.getpid() if pid is None else pid)

    def thread_writer(self, index: int, thread: int) -> SlotWriter:
        """The writer of handler thread ``thread`` (1..threads) of worker slot ``index``; call
        it in the worker, and use it from that thread only.  The slot starts IDLE."""
        self._check(index)
        if not 1 <= thread < self.stride:
            raise IndexError(f"thread {thread} out of range 1..{self.stride - 1}")
        writer = SlotWriter(self, index * self.stride + thread, os.getpid())
        writer.set_state(State.IDLE, time.monotonic())
        return writer

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Unmap this process's view (other processes keep theirs).  Writers stop working."""
        if self._map.closed:
            return
        self._seq.release()
        self._map.close()

    def __enter__(self) -> Scoreboard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.slots

    def _check(self, index: int) -> None:
        if not 0 <= index < self.slots:
            raise IndexError(f"scoreboard slot {index} out of range 0..{self.slots - 1}")


def _slot(index: int, values: tuple[Any, ...], consistent: bool) -> Slot:
    _, state, started, requests, active, empty, pid, generation, booted = values
    # Only a torn read (consistent=False) can show a value that is no state.
    return Slot(
        index, pid, generation, _STATES.get(state, State.EMPTY), requests, empty,
        started, active, booted, consistent,
    )


def _fold(worker: Slot, threads: list[Slot]) -> Slot:
    """One worker's view of its block: BUSY while a thread is (DRAINING and BOOTING stay),
    the oldest request in flight, the sum of the requests, the latest activity."""
    started = [s.request_started for s in threads if s.request_started > 0.0]
    state = State.BUSY if worker.state is State.IDLE and started else worker.state
    return dataclasses.replace(
        worker, state=state, requests=worker.requests + sum(s.requests for s in threads),
        request_started=min(started, default=worker.request_started),
        last_active=max([worker.last_active, *(s.last_active for s in threads)]),
        consistent=worker.consistent and all(s.consistent for s in threads),
    )


class SlotWriter:
    """The only writer of one slot, living in its worker.  Not thread-safe: one thread writes.

    Methods: set_state(state, now), begin_request(now), end_request(now), empty_accept().
    Each update is two counter stores around one ``pack_into``; the writer keeps its own copy
    of the sequence count and the counters, so it never reads shared memory.  (The methods
    avoid global and enum lookups on purpose: this is the request path.)
    """

    def __init__(self, board: Scoreboard, phys: int, pid: int) -> None:
        current = board._read(phys, phys // board.stride)
        self.index = phys // board.stride
        self._map = board._map
        self._seqv = board._seq
        self._word = phys * _WORDS
        self._offset = phys * SLOT_SIZE
        self._hot_offset = self._offset + _OFF_STATE
        self._empty_word = (self._offset + _OFF_EMPTY) // 8
        seq = self._seqv[self._word]
        self._seq = seq if seq & 1 == 0 else seq + 1
        self.state = current.state
        self.requests = current.requests
        self.empty_accepts = current.empty_accepts
        self.request_started = current.request_started
        self._stamp_pid(pid)

    def _stamp_pid(self, pid: int) -> None:
        seq = self._seq
        self._seqv[self._word] = seq + 1
        _PID.pack_into(self._map, self._offset + _OFF_PID, pid)
        self._seqv[self._word] = self._seq = seq + 2

    def set_state(self, state: State, now: float) -> None:
        """Any state change other than a request's; ``last_active`` becomes ``now``.

        A request in flight stays visible (``request_started`` is kept), so a worker told to
        drain while busy shows DRAINING with the age of its last request.
        """
        self.state = state
        seq = self._seq + 1
        self._seqv[self._word] = seq
        _HOT.pack_into(self._map, self._hot_offset, state, self.request_started, self.requests,
                       now)
        self._seqv[self._word] = self._seq = seq + 1

    def begin_request(self, now: float) -> None:
        """A request was accepted at ``now``: BUSY, ``request_started=now``."""
        self.state = _BUSY
        self.request_started = now
        seq = self._seq + 1
        self._seqv[self._word] = seq
        # (The Struct's method looked up on it: one held on the instance is a lookup by name.)
        _BEGIN.pack_into(self._map, self._hot_offset, _BUSY_VALUE, now)
        self._seqv[self._word] = self._seq = seq + 1

    def end_request(self, now: float) -> None:
        """The request is done: IDLE (DRAINING stays DRAINING), one more served, idle since now."""
        state = self.state
        if state is _BUSY:
            self.state = state = _IDLE
        requests = self.requests = self.requests + 1
        self.request_started = 0.0
        seq = self._seq + 1
        self._seqv[self._word] = seq
        _HOT.pack_into(self._map, self._hot_offset, state, 0.0, requests, now)
        self._seqv[self._word] = self._seq = seq + 1

    def empty_accept(self) -> None:
        """An accept found nothing (another worker took the connection).

        A single aligned 8-byte store, atomic on its own, so no sequence bump.
        """
        self.empty_accepts += 1
        self._seqv[self._empty_word] = self.empty_accepts
