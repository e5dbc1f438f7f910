"""The master's phase, and the pool as its policies see it."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence

from prefork.core.contract import WorkerInfo
from prefork.core.scoreboard import Slot
from prefork.master.generations import Generations
from prefork.master.pool import Pool
from prefork.master.recycling import Recycler
from prefork.ops.status import is_stopped, worker_memory_mb


class Phase(enum.Enum):
    BOOTING = "booting"  # the pool is filling; READY not announced yet
    SERVING = "serving"
    RELOADING = "reloading"  # a new generation boots next to the serving one
    PAUSED = "paused"  # WINCH: no workers; HUP or TTIN resume
    STOPPING = "stopping"



class View:
    """A read-only view of the pool for prefork.master.policies (its ``PoolView``)."""

    def __init__(
        self, pool: Pool, generations: Generations, recycler: Recycler,
        size: Callable[[], int], phase: Callable[[], Phase],
    ) -> None:
        self.pool, self.generations, self.recycler = pool, generations, recycler
        self._size, self._phase = size, phase

    @property
    def size(self) -> int:
        return self._size()

    def live(self) -> Sequence[WorkerInfo]:
        return list(self.pool.workers.values())

    def current(self) -> Sequence[WorkerInfo]:
        return self.pool.current(self.generations.number)

    def slot(self, info: WorkerInfo) -> Slot:
        return self.pool.board.read(info.slot)

    def memory_mb(self, pid: int) -> float | None:
        return worker_memory_mb(pid)

    def stopped(self, pid: int) -> bool:
        return is_stopped(pid)

    def steady(self) -> bool:
        """Serving with every current worker ready and no replacement booting."""
        return (
            self._phase() in (Phase.BOOTING, Phase.SERVING)
            and all(w.ready for w in self.current())
            and not self.recycler.booting()
        )
