"""Generations: begin / queue / ready / finish / abort (with rollback) / cancel."""

from __future__ import annotations

import signal

from master_fakes import FakePool, FakeServer, worker

from prefork.master.generations import Generations


def make(*infos: object) -> tuple[Generations, FakeServer, FakePool]:
    server, pool = FakeServer(), FakePool(*infos)  # type: ignore[arg-type]
    return Generations(server, pool), server, pool  # type: ignore[arg-type]


def test_begin_prepares_the_server_and_counts_a_generation() -> None:
    gens, server, _ = make()
    assert gens.number == 1 and not gens.reloading
    assert gens.begin() is True
    assert gens.number == 2 and gens.reloading
    assert server.calls == [("prepare_reload", None)]
    assert gens.reload is not None and gens.reload.old_generation == 1


def test_begin_during_a_reload_is_queued_not_lost() -> None:
    gens, server, _ = make()
    gens.begin()
    assert gens.begin() is False
    assert gens.queued and gens.number == 2
    assert server.calls == [("prepare_reload", None)]  # prepared once


def test_a_refused_preparation_keeps_the_generation() -> None:
    gens, server, _ = make()
    server.reload_error = ValueError("bad config")
    assert gens.begin() is False
    assert gens.number == 1 and not gens.reloading and not gens.queued


def test_ready_needs_size_workers_of_the_new_generation_all_ready() -> None:
    olds = [worker(1) for _ in range(2)]
    gens, _, pool = make(*olds)
    gens.begin()
    assert not gens.ready(2)  # old workers do not count
    a = pool.add(worker(2, ready=True))
    b = pool.add(worker(2, ready=False))
    assert not gens.ready(2)
    b.ready = True
    assert gens.ready(2)
    assert not gens.ready(3)
    b.stopping = True  # leaving: not part of the generation any more
    assert not gens.ready(2)
    assert a.ready


def test_finish_retires_every_older_worker() -> None:
    old1, old2, leaving = worker(1), worker(1), worker(1, stopping=True)
    gens, _, pool = make(old1, old2, leaving)
    gens.begin()
    new = pool.add(worker(2))
    assert gens.finish() is False
    assert sorted(pool.signals) == sorted([(old1.pid, signal.SIGTERM), (old2.pid, signal.SIGTERM)])
    assert not new.stopping
    assert not gens.reloading and gens.number == 2


def test_finish_reports_a_queued_reload_once() -> None:
    gens, _, _ = make()
    gens.begin()
    gens.begin()
    assert gens.finish() is True
    assert not gens.queued
    gens.begin()
    assert gens.finish() is False


def test_abort_stops_the_new_generation_rolls_back_and_keeps_the_old() -> None:
    old = worker(1)
    gens, server, pool = make(old)
    gens.begin()
    failed = worker(2, ready=False)  # the one that died: already out of the pool
    booting = pool.add(worker(2, ready=False))
    ready = pool.add(worker(2, ready=True))
    assert gens.abort(failed, "exit status 1") is False
    assert sorted(pool.signals) == sorted([(booting.pid, signal.SIGQUIT),
                                           (ready.pid, signal.SIGTERM)])
    assert not old.stopping
    assert server.rollbacks == 1
    assert gens.number == 1 and not gens.reloading


def test_abort_reports_a_queued_reload() -> None:
    gens, _, _ = make()
    gens.begin()
    gens.begin()
    assert gens.abort(worker(2, ready=False), "exit status 1") is True
    assert not gens.queued and gens.number == 1


def test_a_failing_rollback_still_restores_the_old_generation() -> None:
    gens, _, _ = make()
    gens.begin()
    assert gens.reload is not None

    def broken() -> None:
        raise RuntimeError("rollback broke")

    gens.reload.rollback = broken
    gens.abort(worker(2, ready=False), "exit status 1")
    assert gens.number == 1 and not gens.reloading


def test_cancel_forgets_the_reload_and_the_queue_but_keeps_the_number() -> None:
    gens, _, _ = make()
    gens.begin()
    gens.begin()
    gens.cancel()
    assert not gens.reloading and not gens.queued
    assert gens.number == 2  # resuming starts workers of the newest generation
    assert gens.begin() is True and gens.number == 3
