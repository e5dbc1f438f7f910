"""Jobs: socketserver's own ``BaseServer`` example -- requests read from a SQL table -- as a job
queue under the pool (docs/jobs.md).  :class:`JobServer` claims a job in ``get_request()``, its
handler runs it (``self.request`` is the :class:`Job`), ``shutdown_request()`` finishes it and
``handle_error()`` schedules a retry; the master re-queues exactly the jobs of a worker that
died, at once, with the reason on the row.  The same handler runs in the stdlib's modes too:
:class:`JobTableServer` (sync), :class:`ThreadingJobServer`, :class:`ForkingJobServer`."""

from __future__ import annotations

from prefork.jobs.backends import Backend
from prefork.jobs.forking import ForkingJobServer
from prefork.jobs.inprocess import JobTableServer, ThreadingJobServer
from prefork.jobs.queue import Job, connect, enqueue, open_backend
from prefork.jobs.server import JobServer

__all__ = ["Backend", "ForkingJobServer", "Job", "JobServer", "JobTableServer",
           "ThreadingJobServer", "connect", "enqueue", "open_backend"]
