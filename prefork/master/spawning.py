"""Starting workers: through the pool -- with preload, through the generation's template,
started on demand -- under the boot guard's back-off.  A worker (or template) that cannot be
started is a boot failure, or, while a reload's new generation is starting, the end of that
reload: the old generation keeps serving.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from prefork.core.contract import WorkerInfo
from prefork.master.boot import BootGuard
from prefork.master.generations import Generations
from prefork.master.policies import boot_limit
from prefork.master.pool import Pool
from prefork.master.templates import Template
from prefork.master.upgrade import describe_status

log = logging.getLogger("prefork.master")

Failure = Callable[[str, str], None]  # who, why


class Spawner:
    """Methods: fill(missing), try_spawn(), on_template_exit(template, status, stopping)."""

    def __init__(
        self, pool: Pool, generations: Generations, boot: BootGuard,
        reloading: Callable[[], bool], abort_reload: Failure,
    ) -> None:
        self.pool = pool
        self.generations = generations
        self.boot = boot
        self.reloading = reloading  # whether the current generation is a reload's new one
        self.abort_reload = abort_reload

    def fill(self, missing: int) -> None:
        """Start up to ``missing`` workers of the current generation, as the boot guard allows
        (none during a back-off, one probe at a time after a failure)."""
        if not self.boot.may_spawn(time.monotonic()):
            return
        for _ in range(self.boot.budget(missing, self.pool.booting())):
            if self.try_spawn() is None:
                break

    def try_spawn(self) -> WorkerInfo | None:
        """Pool.spawn(), with a failure (a pre_fork hook raising, fork() refused by a task
        limit) judged instead of taking the running pool down.  With preload, None until the
        generation's template is ready (it is started here)."""
        generation = self.generations.number
        templates = self.pool.templates
        if templates is not None and not templates.ready(generation):
            templates.start(generation)  # nothing if it is loading already
            return None
        try:
            return self.pool.spawn(generation)
        except Exception as exc:
            log.exception("master (pid %d) cannot start a worker", os.getpid())
            self._failed("a new worker", f"{type(exc).__name__}: {exc}")
            return None

    def deadline(self) -> float | None:
        templates = self.pool.templates
        return templates.deadline(boot_limit(self.pool.server)) if templates else None

    def expire(self, now: float) -> None:
        if self.pool.templates is not None:
            self.pool.templates.expire(now, boot_limit(self.pool.server))

    def on_template_exit(self, template: Template, status: int, stopping: bool) -> None:
        why, generation = describe_status(status), template.generation
        who = f"template of generation {generation} (pid {template.pid})"
        if stopping or generation != self.generations.number:
            log.debug("%s stopped: %s", who, why)  # its generation is over
        elif template.ready:
            log.warning("%s died: %s; a new one loads when a worker is needed", who, why)
        else:
            self._failed(who, why)

    def _failed(self, who: str, why: str) -> None:
        if self.reloading():  # the new generation cannot start: keep the old one
            self.abort_reload(who, why)
        else:
            self.boot.failed(why, who, time.monotonic())
