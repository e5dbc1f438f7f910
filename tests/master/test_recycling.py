"""Recycler: the replacement first, the old worker retires once it is ready, at most ``limit``
replacements at once, and a replacement that dies puts the old one back in the queue."""

from __future__ import annotations

import signal

from master_fakes import FakePool, worker

from prefork.core.contract import WorkerInfo
from prefork.master.recycling import Recycler


class Spawner:
    """Stands in for the master's _try_spawn: adds a booting worker to the pool."""

    def __init__(self, pool: FakePool, generation: int = 1) -> None:
        self.pool, self.generation = pool, generation
        self.spawned: list[WorkerInfo] = []
        self.refuse = False

    def __call__(self) -> WorkerInfo | None:
        if self.refuse:
            return None
        info = self.pool.add(worker(self.generation, ready=False))
        self.spawned.append(info)
        return info


def make(*infos: WorkerInfo) -> tuple[Recycler, FakePool, Spawner, list[str]]:
    pool = FakePool(*infos)
    counted: list[str] = []
    return Recycler(pool, counted.append), pool, Spawner(pool), counted  # type: ignore[arg-type]


def test_replacement_first_then_retire_the_old_once_it_is_ready() -> None:
    old = worker()
    recycler, pool, spawn, counted = make(old)
    recycler.due(old, "max_requests")
    recycler.start(spawn, generation=1, limit=1)
    assert len(spawn.spawned) == 1
    new = spawn.spawned[0]
    assert recycler.replacing == {new.pid: old.pid}
    assert recycler.booting()

    recycler.finish()  # the replacement still boots: the old one keeps serving
    assert pool.signals == [] and not old.stopping

    new.ready = True
    recycler.finish()
    assert pool.signals == [(old.pid, signal.SIGTERM)] and old.stopping
    assert counted == ["max_requests"]
    assert not recycler.booting()


def test_due_twice_or_while_stopping_queues_once() -> None:
    a, leaving = worker(), worker(stopping=True)
    recycler, _, _, _ = make(a, leaving)
    recycler.due(a, "max_age")
    recycler.due(a, "max_memory")
    recycler.due(leaving, "max_age")
    assert list(recycler.queue) == [a.pid]
    assert recycler.reasons == {a.pid: "max_age"}


def test_at_most_limit_replacements_at_once() -> None:
    olds = [worker() for _ in range(3)]
    recycler, _, spawn, counted = make(*olds)
    for info in olds:
        recycler.due(info, "max_age")
    recycler.start(spawn, generation=1, limit=2)
    assert len(spawn.spawned) == 2
    assert list(recycler.queue) == [olds[2].pid]

    recycler.start(spawn, generation=1, limit=2)  # still two booting
    assert len(spawn.spawned) == 2

    spawn.spawned[0].ready = True
    recycler.finish()
    recycler.start(spawn, generation=1, limit=2)
    assert len(spawn.spawned) == 3
    assert recycler.replacing[spawn.spawned[2].pid] == olds[2].pid
    assert counted == ["max_age"]


def test_a_replacement_that_dies_requeues_the_old_one_first() -> None:
    old, other = worker(), worker()
    recycler, pool, spawn, counted = make(old, other)
    recycler.due(old, "max_requests")
    recycler.due(other, "max_requests")
    recycler.start(spawn, generation=1, limit=1)
    dead = spawn.spawned[0]
    del pool.workers[dead.pid]
    recycler.forget(dead.pid)
    assert not recycler.booting()
    assert list(recycler.queue) == [old.pid, other.pid]  # at the front: it was first
    assert not old.stopping and pool.signals == []

    recycler.start(spawn, generation=1, limit=1)
    assert recycler.replacing == {spawn.spawned[1].pid: old.pid}
    spawn.spawned[1].ready = True
    recycler.finish()
    assert pool.signals == [(old.pid, signal.SIGTERM)]
    assert counted == ["max_requests"]  # the reason survived the retry


def test_a_replacement_that_dies_after_the_old_one_left_requeues_nothing() -> None:
    old = worker()
    recycler, pool, spawn, _ = make(old)
    recycler.due(old, "max_age")
    recycler.start(spawn, generation=1, limit=1)
    del pool.workers[old.pid]
    recycler.forget(old.pid)
    new = spawn.spawned[0]
    del pool.workers[new.pid]
    recycler.forget(new.pid)
    assert not recycler.queue and not recycler.replacing


def test_a_queued_worker_that_exits_is_forgotten() -> None:
    a, b = worker(), worker()
    recycler, pool, spawn, _ = make(a, b)
    recycler.due(a, "max_age")
    recycler.due(b, "max_age")
    del pool.workers[a.pid]
    recycler.forget(a.pid)
    assert list(recycler.queue) == [b.pid] and a.pid not in recycler.reasons
    recycler.start(spawn, generation=1, limit=5)
    assert list(recycler.replacing.values()) == [b.pid]


def test_start_skips_workers_gone_stopping_or_of_another_generation() -> None:
    gone, stopping, older, due = worker(), worker(), worker(generation=1), worker(generation=2)
    recycler, pool, _, _ = make(gone, stopping, older, due)
    spawn = Spawner(pool, generation=2)
    for info in (gone, stopping, older, due):
        recycler.due(info, "max_age")
    del pool.workers[gone.pid]
    stopping.stopping = True
    recycler.start(spawn, generation=2, limit=5)
    assert list(recycler.replacing.values()) == [due.pid]
    assert not recycler.queue
    assert set(recycler.reasons) == {due.pid}


def test_a_refused_spawn_keeps_the_worker_queued() -> None:
    a, b = worker(), worker()
    recycler, _, spawn, _ = make(a, b)
    recycler.due(a, "max_age")
    recycler.due(b, "max_age")
    spawn.refuse = True
    recycler.start(spawn, generation=1, limit=5)
    assert list(recycler.queue) == [a.pid, b.pid] and not recycler.replacing
    spawn.refuse = False
    recycler.start(spawn, generation=1, limit=5)
    assert sorted(recycler.replacing.values()) == sorted([a.pid, b.pid])


def test_an_old_worker_already_leaving_is_neither_retired_again_nor_counted() -> None:
    old = worker()
    recycler, pool, spawn, counted = make(old)
    recycler.due(old, "max_age")
    recycler.start(spawn, generation=1, limit=1)
    old.stopping = True  # a stop or a pause got there first
    spawn.spawned[0].ready = True
    recycler.finish()
    assert pool.signals == [] and counted == []
    assert not recycler.booting()
