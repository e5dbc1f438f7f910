"""Counters of RPC calls shared by every worker of a pool, read by the master for /metrics.

The master serves ``/metrics`` from what it can read without asking a worker, so the counters
live in memory mapped ``MAP_SHARED`` before the fork (make the table where the handler
classes are made, in the master).  Counting must cost a call next to nothing, so no lock is
taken per call: each worker process claims a **row** of its own once (under a lock), and only
it writes there; the master sums the rows.  A dead worker's row is folded into row 0 (the
retired total) when a new worker needs a row, so totals never go down.  Within a worker, a
``threading.Lock`` keeps its handler threads from losing an increment.

Columns are procedures, identified by (program, version, procedure) and named
``Class.method`` for the labels; a worker claims a column (under the lock) the first time it
serves that procedure, so the layout does not depend on the code each generation loads.
Calls to a program, version or procedure that does not exist count only by reply status --
a client cannot fill the table with made-up numbers.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import tempfile
import threading
from collections.abc import Callable, Iterator

import prefork.rpc.message as message

STATUSES = ("success", "prog_unavail", "prog_mismatch", "proc_unavail", "garbage_args",
            "system_err", "rpc_mismatch", "auth_error", "dropped")
_DENIED = {message.RPC_MISMATCH: "rpc_mismatch", message.AUTH_ERROR: "auth_error"}
_KEY = struct.Struct(">IIII48s")  # used, prog, vers, proc, name
_PID = struct.Struct(">q")
_COUNT = struct.Struct(">Q")
RETIRED = -1  # row 0's owner: the totals of workers that are gone
Key = tuple[int, int, int]
# This process's pid, kept current across fork: record() compares it on every call, and
# os.getpid() would be a system call each time.
_this_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _this_pid.__setitem__(0, os.getpid()))


def reply_status(reply: bytes | None) -> str:
    """Which of STATUSES a reply message (or None: no reply) is."""
    if reply is None:
        return "dropped"
    if struct.unpack_from(">I", reply, 8)[0] == message.MSG_DENIED:
        return _DENIED.get(struct.unpack_from(">I", reply, 12)[0], "auth_error")
    verf_length = struct.unpack_from(">I", reply, 16)[0]
    stat = struct.unpack_from(">I", reply, 20 + verf_length + (-verf_length % 4))[0]
    return STATUSES[stat] if stat < 6 else "system_err"


class CallStats:
    """``rows`` worker rows of ``columns`` procedure counters and one counter per status."""

    def __init__(self, rows: int = 256, columns: int = 256) -> None:
        self.rows, self.columns = rows, columns
        self.keys_size = columns * _KEY.size
        self.row_size = _PID.size + (columns + len(STATUSES)) * _COUNT.size
        fd, path = tempfile.mkstemp(prefix="prefork-rpc-stats-")
        os.unlink(path)  # a real file, for the byte-range lock
        os.ftruncate(fd, self.keys_size + rows * self.row_size)
        self.fd = fd
        self.map = mmap.mmap(fd, self.keys_size + rows * self.row_size, mmap.MAP_SHARED)
        _PID.pack_into(self.map, self.keys_size, RETIRED)
        self.thread_lock = threading.Lock()
        self._pid = 0  # the process whose row and columns are cached below
        self._row = 0
        self._column: dict[Key, int] = {}

    # -- in a worker ----------------------------------------------------------------------

    def record(self, key: Key | None, name: Callable[[], str], reply: bytes | None) -> None:
        """Count one call: under ``key`` (an existing procedure; ``name()`` names it, asked
        the first time only) if given, and under its reply's status."""
        with self.thread_lock:
            if self._pid != _this_pid[0]:
                self._claim_row()
            base = self._row + _PID.size
            if key is not None:
                column = self._column.get(key)
                if column is None:
                    column = self._column[key] = self._claim_column(key, name())
                self._add(base + column * _COUNT.size)
            status = STATUSES.index(reply_status(reply))
            self._add(base + (self.columns + status) * _COUNT.size)

    def _add(self, offset: int) -> None:
        _COUNT.pack_into(self.map, offset, _COUNT.unpack_from(self.map, offset)[0] + 1)

    def _locked(self) -> _FileLock:
        return _FileLock(self.fd)

    def _claim_row(self) -> None:
        pid = os.getpid()
        with self._locked():
            rows = list(self._row_offsets())
            free = next((r for r in rows if _PID.unpack_from(self.map, r)[0] == 0), None)
            if free is None:
                free = next((r for r in rows if not _alive(_PID.unpack_from(self.map, r)[0])),
                            None)
                if free is not None:
                    self._retire(free)
            if free is None:  # every row taken by a live process: count in row 0
                free = self.keys_size
                self._column = {}
            else:
                _PID.pack_into(self.map, free, pid)
            self._pid, self._row, self._column = pid, free, {}

    def _retire(self, row: int) -> None:
        """Fold a dead worker's row into row 0 and clear it (under the lock)."""
        for index in range(self.columns + len(STATUSES)):
            offset = _PID.size + index * _COUNT.size
            count = _COUNT.unpack_from(self.map, row + offset)[0]
            if count:
                total = _COUNT.unpack_from(self.map, self.keys_size + offset)[0]
                _COUNT.pack_into(self.map, self.keys_size + offset, total + count)
                _COUNT.pack_into(self.map, row + offset, 0)
        _PID.pack_into(self.map, row, 0)

    def _claim_column(self, key: Key, name: str) -> int:
        with self._locked():
            for column, used, found in self._keys():
                if used and found == key:
                    return column
                if not used:
                    _KEY.pack_into(self.map, column * _KEY.size, 1, *key,
                                   name.encode()[:48])
                    return column
        return self.columns - 1  # full: the last column counts the rest

    # -- in the master ----------------------------------------------------------------------

    def _row_offsets(self) -> Iterator[int]:
        return (self.keys_size + i * self.row_size for i in range(1, self.rows))

    def _keys(self) -> Iterator[tuple[int, int, Key]]:
        for column in range(self.columns):
            used, prog, vers, proc, _ = _KEY.unpack_from(self.map, column * _KEY.size)
            yield column, used, (prog, vers, proc)

    def _total(self, index: int) -> int:
        offset = _PID.size + index * _COUNT.size
        return sum(_COUNT.unpack_from(self.map, self.keys_size + r * self.row_size + offset)[0]
                   for r in range(self.rows))

    def calls(self) -> dict[tuple[int, int, int, str], int]:
        """(program, version, procedure, name) -> calls, summed over every worker."""
        out = {}
        for column, used, key in self._keys():
            if used:
                name = _KEY.unpack_from(self.map, column * _KEY.size)[4].rstrip(b"\0")
                prog, vers, proc = key
                out[prog, vers, proc, name.decode(errors="replace")] = self._total(column)
        return out

    def replies(self) -> dict[str, int]:
        """Reply status -> calls, summed over every worker."""
        return {status: self._total(self.columns + i) for i, status in enumerate(STATUSES)}


class _FileLock:
    """An exclusive lock on the whole file, between processes."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    if pid <= 0:
        return pid == 0 or pid == RETIRED
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _label(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(stats: CallStats) -> str:
    """The Prometheus text of the counters (appended to the master's /metrics)."""
    out = ["# HELP prefork_rpc_calls_total RPC calls by program, version and procedure.",
           "# TYPE prefork_rpc_calls_total counter"]
    for (prog, vers, proc, name), count in sorted(stats.calls().items()):
        out.append(f'prefork_rpc_calls_total{{program="{prog}",version="{vers}",'
                   f'procedure="{proc}",name="{_label(name)}"}} {count}')
    out += ["# HELP prefork_rpc_replies_total RPC calls by reply status (dropped: no reply).",
            "# TYPE prefork_rpc_replies_total counter"]
    out.extend(f'prefork_rpc_replies_total{{status="{status}"}} {count}'
               for status, count in stats.replies().items())
    return "\n".join(out) + "\n"
