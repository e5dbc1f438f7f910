"""View: what the policies see of the pool, and when the pool is steady."""

from __future__ import annotations

import pytest
from master_fakes import FakePool, FakeServer, worker

from prefork.master.generations import Generations
from prefork.master.recycling import Recycler
from prefork.master.view import Phase, View


def make(*infos: object, phase: Phase = Phase.SERVING, size: int = 2) -> tuple[View, Recycler]:
    pool = FakePool(*infos)  # type: ignore[arg-type]
    gens = Generations(FakeServer(), pool)  # type: ignore[arg-type]
    recycler = Recycler(pool, lambda reason: None)  # type: ignore[arg-type]
    return View(pool, gens, recycler, lambda: size, lambda: phase), recycler  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phase", "steady"),
    [(Phase.BOOTING, True), (Phase.SERVING, True), (Phase.RELOADING, False),
     (Phase.PAUSED, False), (Phase.STOPPING, False)],
)
def test_steady_only_while_booting_or_serving(phase: Phase, steady: bool) -> None:
    view, _ = make(worker(), phase=phase)
    assert view.steady() is steady


def test_not_steady_while_a_current_worker_boots() -> None:
    view, _ = make(worker(), worker(ready=False))
    assert not view.steady()
    view, _ = make(worker(), worker(ready=False, stopping=True))  # leaving: not current
    assert view.steady()


def test_not_steady_while_a_replacement_boots() -> None:
    view, recycler = make(worker())
    recycler.replacing[1] = 2
    assert not view.steady()


def test_live_current_and_size() -> None:
    a, leaving, newer = worker(1), worker(1, stopping=True), worker(2)
    view, _ = make(a, leaving, newer, size=5)
    assert view.size == 5
    assert set(w.pid for w in view.live()) == {a.pid, leaving.pid, newer.pid}
    assert list(view.current()) == [a]  # generation 1, not leaving
