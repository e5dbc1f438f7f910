"""A duplicate request cache for RPC over UDP, shared by every worker of a pool.

A UDP client that gets no reply in time sends the same call again; with several workers reading
one socket, the retransmission can reach another worker while the first still runs the call.
Procedures that are not idempotent must not run twice, so the workers share this cache: a table
of slots in a file mapped with ``MAP_SHARED``, created *before the fork* (make it a class
attribute of the handler, evaluated at import in the master), so every worker maps the same
pages.  Each slot is guarded by a POSIX byte-range lock on the file (between processes) and one
``threading.Lock`` (between a worker's threads).

A call is identified by a digest of the client's address and the whole datagram, so only an
exact retransmission matches.  :meth:`DuplicateCache.begin` says what to do with a datagram:
run it (the slot is now "in progress"), drop it (the same call is running somewhere), or send
the stored reply again (it ran already).  :meth:`DuplicateCache.finish` stores the reply.  The
table is a fixed size: a newer call takes the slot of an older one that hashes there.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import tempfile
import threading
from typing import Any

EMPTY, RUNNING, DONE = 0, 1, 2
_SLOT = struct.Struct(">B3xI16s")  # state, reply length, key
RUN = "run"
DROP = "drop"


class DuplicateCache:
    """``slots`` entries of replies up to ``max_reply`` bytes, shared across fork."""

    def __init__(self, slots: int = 1024, max_reply: int = 8192) -> None:
        self.slots, self.max_reply = slots, max_reply
        self.slot_size = _SLOT.size + max_reply
        fd, path = tempfile.mkstemp(prefix="prefork-rpc-drc-")
        os.unlink(path)  # anonymous, but a real file: byte-range locks work on it
        os.ftruncate(fd, slots * self.slot_size)
        self.fd = fd
        self.map = mmap.mmap(fd, slots * self.slot_size, mmap.MAP_SHARED)
        self.thread_lock = threading.Lock()

    @staticmethod
    def key(client_address: Any, datagram: bytes | bytearray | memoryview) -> bytes:
        digest = hashlib.blake2b(repr(client_address).encode(), digest_size=16)
        digest.update(datagram)
        return digest.digest()

    def _where(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "big") % self.slots * self.slot_size

    def _locked(self, offset: int, op: int) -> None:
        fcntl.lockf(self.fd, op, _SLOT.size, offset)

    def begin(self, key: bytes) -> str | bytes:
        """RUN (the caller runs the call, then calls finish), DROP, or the reply to resend."""
        offset = self._where(key)
        with self.thread_lock:
            self._locked(offset, fcntl.LOCK_EX)
            try:
                state, length, stored = _SLOT.unpack_from(self.map, offset)
                if stored == key and state == RUNNING:
                    return DROP
                if stored == key and state == DONE:
                    start = offset + _SLOT.size
                    return bytes(self.map[start:start + length])
                _SLOT.pack_into(self.map, offset, RUNNING, 0, key)
                return RUN
            finally:
                self._locked(offset, fcntl.LOCK_UN)

    def finish(self, key: bytes, reply: bytes | None) -> None:
        """Store ``reply`` for retransmissions (None, or too long to keep: forget the call)."""
        offset = self._where(key)
        with self.thread_lock:
            self._locked(offset, fcntl.LOCK_EX)
            try:
                if _SLOT.unpack_from(self.map, offset)[2] != key:
                    return  # a newer call took the slot meanwhile
                if reply is None or len(reply) > self.max_reply:
                    _SLOT.pack_into(self.map, offset, EMPTY, 0, bytes(16))
                    return
                start = offset + _SLOT.size
                self.map[start:start + len(reply)] = reply
                _SLOT.pack_into(self.map, offset, DONE, len(reply), key)
            finally:
                self._locked(offset, fcntl.LOCK_UN)
