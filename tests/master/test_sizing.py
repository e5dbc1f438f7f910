"""The pool's size decided in one part (prefork/master/sizing.py): the size a server starts
with, what a reload to 0 keeps, the bounds of a scale and the note that names the bound."""

from __future__ import annotations

from typing import cast

import pytest

from prefork.core.contract import PoolServer
from prefork.master import sizing
from tests.master.master_fakes import FakeServer


def server(**settings: object) -> PoolServer:
    return cast(PoolServer, FakeServer(**settings))


def test_settle_takes_the_keyword_then_the_class_and_zero_is_one_per_cpu() -> None:
    s = server(workers=3, max_children=8)
    sizing.settle(s, None)
    assert s.workers == 3
    sizing.settle(s, 5)
    assert s.workers == 5
    s = server(workers=0, max_children=1)
    sizing.settle(s, None)
    assert s.workers == 1 == sizing.one_per_cpu(1)


@pytest.mark.parametrize(("workers", "error"), [
    (9, "exceeds max_children"), (-1, "positive integer"), (True, "positive integer"),
    (2.0, "positive integer"),
])
def test_settle_refuses_a_size_outside_one_to_max_children(workers: object, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        sizing.settle(server(max_children=8), workers)  # type: ignore[arg-type]


def test_a_reload_to_zero_keeps_the_size_and_a_scale_stays_within_bounds() -> None:
    s = server(workers=3, max_children=4)
    assert (sizing.reloaded(s, 0), sizing.reloaded(s, 2)) == (3, 2)
    assert [sizing.within(s, n) for n in (-2, 0, 1, 4, 100)] == [1, 1, 1, 4, 4]
    assert sizing.adaptive_range(s) == (3, 4) and sizing.slots(s) == 8
    assert sizing.bound_name(100, 4) == "max_children"
    assert sizing.bound_name(0, 1) == "the minimum"
