"""The RPC call counters shared by a pool's workers (prefork/rpc/stats.py)."""

from __future__ import annotations

import os

import prefork.rpc.message as message
from helpers import wait_exit
from prefork.rpc.stats import CallStats, render, reply_status

KEY = (0x20000099, 1, 1)


def count_in_child(stats: CallStats, times: int) -> None:
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(times):
                stats.record(KEY, lambda: "Calc.double", message.success(1, b"\0\0\0\1"))
        finally:
            os._exit(0)
    assert wait_exit(pid) == 0


def test_processes_count_into_one_total_and_the_dead_are_folded() -> None:
    stats = CallStats(rows=3, columns=4)  # row 0 (retired) and two rows for workers
    for times in (5, 7, 11):  # the third child needs the row of a dead one
        count_in_child(stats, times)
    assert stats.calls() == {(*KEY, "Calc.double"): 23}
    assert stats.replies()["success"] == 23
    assert 'prefork_rpc_calls_total{program="536871065",version="1",procedure="1",' \
           'name="Calc.double"} 23' in render(stats)


def test_columns_are_bounded() -> None:
    stats = CallStats(rows=2, columns=2)
    for proc in range(5):
        stats.record((1, 1, proc), lambda: "P.p", None)
    assert sum(stats.calls().values()) == 5  # the last column took the rest
    assert len(stats.calls()) == 2
    assert stats.replies()["dropped"] == 5


def test_reply_status_reads_every_reply() -> None:
    assert reply_status(None) == "dropped"
    assert reply_status(message.success(1, b"")) == "success"
    verifier = message.OpaqueAuth(7, b"abcde")  # a verifier with padding before the status
    assert reply_status(message.accepted(1, message.GARBAGE_ARGS, verifier=verifier)) == \
        "garbage_args"
    assert reply_status(message.prog_mismatch(1, 1, 3)) == "prog_mismatch"
    assert reply_status(message.rpc_mismatch(1)) == "rpc_mismatch"
    assert reply_status(message.auth_error(1, message.AUTH_BADCRED)) == "auth_error"
