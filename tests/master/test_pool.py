"""Pool, lightly and without forking: reports through the real pipe, the views, the choice of
whom to retire, and which fds a child must close.  Signals are recorded, not sent."""

from __future__ import annotations

import os
import select
import selectors
import signal
from collections.abc import Iterator

import pytest
from master_fakes import FakeServer, worker

from prefork.core.contract import REPORT, REPORT_READY, REPORT_RECYCLE, WorkerInfo
from prefork.master.pool import Pool


@pytest.fixture
def pool() -> Iterator[Pool]:
    with selectors.DefaultSelector() as selector:
        p = Pool(FakeServer(max_children=3), selector, (), lambda: (1001, 1002))  # type: ignore[arg-type]
        sent: list[tuple[int, int]] = []
        p.signal = lambda info, sig: sent.append((info.pid, sig))  # type: ignore[method-assign]
        p.sent = sent  # type: ignore[attr-defined]
        try:
            yield p
        finally:
            p.workers.clear()
            p.close()


def add(pool: Pool, info: WorkerInfo) -> WorkerInfo:
    pool.workers[info.pid] = info
    return info


def test_the_scoreboard_has_room_for_two_generations(pool: Pool) -> None:
    assert pool.board.slots == 6


def test_read_reports_marks_ready_and_skips_strangers(pool: Pool) -> None:
    a = add(pool, worker(ready=False))
    b = add(pool, worker(ready=True))
    assert pool.read_reports() == []  # nothing written
    os.write(pool.report_w, REPORT.pack(a.pid, REPORT_READY) + REPORT.pack(12345678, REPORT_READY)
             + REPORT.pack(b.pid, REPORT_RECYCLE))
    assert pool.read_reports() == [(a, REPORT_READY), (b, REPORT_RECYCLE)]
    assert a.ready


def test_a_partial_record_waits_for_the_rest(pool: Pool) -> None:
    a = add(pool, worker(ready=False))
    record = REPORT.pack(a.pid, REPORT_READY)
    os.write(pool.report_w, record[:3])
    assert pool.read_reports() == [] and not a.ready
    os.write(pool.report_w, record[3:])
    assert pool.read_reports() == [(a, REPORT_READY)] and a.ready


def test_current_and_booting(pool: Pool) -> None:
    one = add(pool, worker(1))
    add(pool, worker(1, stopping=True))
    two = add(pool, worker(2, ready=False))
    assert pool.current(1) == [one]
    assert pool.current(2) == [two]
    assert pool.booting() == 1


def test_retire_surplus_retires_the_youngest(pool: Pool) -> None:
    infos = [add(pool, worker(1, age=age)) for age in (1, 2, 3, 4)]
    add(pool, worker(2, age=9))  # another generation: not counted
    pool.retire_surplus(1, 2)
    assert sorted(pool.sent) == sorted((w.pid, signal.SIGTERM) for w in infos[2:])  # type: ignore[attr-defined]
    assert [w.stopping for w in infos] == [False, False, True, True]
    pool.retire_surplus(1, 2)  # the leaving ones no longer count
    assert len(pool.sent) == 2  # type: ignore[attr-defined]


def test_dump_then_kill_asks_for_the_stack_and_sets_the_deadline(pool: Pool) -> None:
    a = add(pool, worker())
    pool.dump_then_kill(a, kill_at=123.0)
    assert pool.sent == [(a.pid, signal.SIGUSR2)]  # type: ignore[attr-defined]
    assert a.kill_at == 123.0 and a.stopping


def test_a_child_closes_the_masters_fds_but_keeps_its_own_ends(pool: Pool) -> None:
    fds = pool._child_close_fds()
    assert {pool.alive_w, pool.report_r, 1001, 1002} <= set(fds)
    assert pool.alive_r not in fds and pool.report_w not in fds


def test_a_worker_that_reported_ready_then_exited_is_reaped_as_ready(pool: Pool) -> None:
    # The race of issue 11 point 8: the loop read the pipe (nothing yet), the worker then
    # reported ready, took a request and died, and the exit was judged before the report was
    # read -- a boot failure.  reap() reads the pipe once it sees an exit.
    pid = os.fork()
    if pid == 0:  # the "worker": report ready, then exit at once
        try:
            os.write(pool.report_w, REPORT.pack(os.getpid(), REPORT_READY))
        finally:
            os._exit(1)
    info = add(pool, worker(ready=False))
    del pool.workers[info.pid]
    info.pid = pid
    pool.workers[pid] = info
    pidfd = os.pidfd_open(pid)
    try:
        assert select.select([pidfd], [], [], 30)[0], "the child did not exit"
    finally:
        os.close(pidfd)
    pool.kill_group = lambda info: None  # type: ignore[method-assign]  # its group is its own
    ((reaped, status),) = pool.reap()
    assert reaped is info and os.waitstatus_to_exitcode(status) == 1
    assert info.ready  # judged after its report: a crash, not a boot failure
    assert pool.read_reports() == [(info, REPORT_READY)]  # still delivered, once
    assert pool.read_reports() == []
