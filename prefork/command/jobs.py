"""The job pool's commands (prefork/jobs): ``prefork jobs DB_URL module:Handler``, ``prefork
enqueue DB_URL JSON``, ``prefork jobs-cancel DB_URL ID`` and ``prefork jobs-status DB_URL``.

``jobs`` runs a :class:`~prefork.jobs.JobServer` pool on the table at DB_URL (a SQLite path or
``sqlite:///path``, created with its table if missing; or ``postgresql://...``) with the handler
class ``module:Handler``, under the same signals as ``serve`` (TERM graceful, INT/QUIT quick,
HUP a new generation, TTIN/TTOU); the pool settings it takes are those the settings table
marks ``jobs`` (:data:`JOB_KEYS`); ``--mode sync|thread|fork`` runs the same handler in the
stdlib's server instead (prefork/jobs/inprocess.py), stopped by TERM, INT or QUIT.
``enqueue`` adds one job whose payload is the JSON text and
prints its id (``--queue``, ``--priority``, ``--at``, ``--unique``, ``--timeout``);
``jobs-cancel`` cancels a queued or running job; ``jobs-status`` prints the jobs by queue and
state and those running.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import os
import socketserver
import sys
import time
from collections.abc import Callable
from typing import Any

from prefork import __version__
from prefork.command.client import UsageError
from prefork.command.settings import JOB_SETTINGS
from prefork.command.stdlib import serve_stdlib
from prefork.jobs import (
    ForkingJobServer,
    JobServer,
    JobTableServer,
    ThreadingJobServer,
    open_backend,
)
from prefork.master.supervisor import BootError
from prefork.ops.logs import setup_logging

# The settings that `prefork jobs` has flags for (marked ``jobs`` in the table).
JOB_KEYS = JOB_SETTINGS
log = logging.getLogger("prefork.jobs")
MODE_SERVERS: dict[str, type[JobTableServer]] = {
    "sync": JobTableServer, "thread": ThreadingJobServer, "fork": ForkingJobServer,
}
URL_HELP = "the job table: a SQLite file (created if missing) or a postgresql:// URL"


def add_commands(commands: Any, add_flags: Any) -> None:
    """The job sub-commands; ``add_flags(parser, keys)`` adds the settings' flags."""
    jobs = commands.add_parser("jobs", help="run a pool of workers on a job table")
    jobs.add_argument("db", metavar="DB_URL", help=URL_HELP)
    jobs.add_argument("handler", metavar="module:Handler",
                      help="the handler class; self.request is the job")
    jobs.add_argument("--queue", action="append", dest="queues", default=[],
                      help="serve only this queue (repeat for more; default: all)")
    jobs.add_argument("--max-attempts", type=int, help="runs that may raise (default: 5)")
    jobs.add_argument("--max-crashes", type=int, help="worker deaths per job (default: 3)")
    jobs.add_argument("--retention", type=float,
                      help="seconds finished jobs are kept, 0 for ever (default: 7 days)")
    add_flags(jobs, JOB_KEYS)
    add = commands.add_parser("enqueue", help="add a job to a job table")
    add.add_argument("db", metavar="DB_URL", help=URL_HELP)
    add.add_argument("payload", metavar="JSON", help="the job's payload, as JSON")
    add.add_argument("--queue", default="default")
    add.add_argument("--priority", type=int, default=0, help="higher runs first (default: 0)")
    add.add_argument("--at", help="when it becomes due: epoch seconds, +SECONDS from now, or "
                     "an ISO 8601 time (default: now)")
    add.add_argument("--unique", metavar="KEY",
                     help="add nothing if a job with this key is queued or running")
    add.add_argument("--timeout", type=float, help="seconds a run may take before its worker "
                     "is killed")
    cancel = commands.add_parser("jobs-cancel", help="cancel a queued or running job")
    cancel.add_argument("db", metavar="DB_URL", help=URL_HELP)
    cancel.add_argument("job", metavar="ID", type=int)
    status = commands.add_parser("jobs-status", help="jobs by queue and state, and the "
                                 "running ones")
    status.add_argument("db", metavar="DB_URL", help=URL_HELP)
    status.add_argument("--json", action="store_true", help="print JSON")


def load_handler(spec: str) -> type[socketserver.BaseRequestHandler]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"the handler must be given as module:Handler, not {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"cannot load {spec}: {exc}") from exc
    if not (isinstance(obj, type) and issubclass(obj, socketserver.BaseRequestHandler)):
        raise UsageError(f"{spec} is not a socketserver.BaseRequestHandler subclass")
    return obj


def parse_at(text: str | None, now: float) -> float | None:
    """``--at``: epoch seconds, ``+SECONDS``, or an ISO 8601 time (local if it has no zone)."""
    if text is None:
        return None
    try:
        if text.startswith("+"):
            return now + float(text[1:])
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.datetime.fromisoformat(text).timestamp()
    except ValueError as exc:
        raise UsageError(f"--at {text!r}: not epoch seconds, +SECONDS or ISO 8601") from exc


def run_jobs(args: argparse.Namespace) -> int:
    handler = load_handler(args.handler)
    mode = args.mode or "prefork"
    tunables = {key: value for key in JOB_KEYS
                if key not in ("log_level", "mode") and (value := getattr(args, key)) is not None}
    if mode != "prefork":
        pool_only = sorted(key for key in tunables if key != "workers")
        if pool_only:
            flags = ", ".join("--" + key.replace("_", "-") for key in pool_only)
            raise UsageError(f"{flags}: the pool's, not --mode {mode}'s")
        if args.retention is not None:
            raise UsageError(f"--retention: the pool prunes, not --mode {mode}")
    setup_logging(args.log_level or "info")
    for key in ("max_attempts", "max_crashes", "retention"):
        if getattr(args, key) is not None:
            tunables[key] = getattr(args, key)
    if args.queues:
        tunables["queues"] = tuple(args.queues)
    if mode != "prefork":
        return run_in_process(mode, args.db, handler, tunables)
    server_class = type("Jobs", (JobServer,), tunables)
    with server_class(args.db, handler) as server:
        try:
            server.serve_forever()
        except BootError as exc:
            print(f"prefork: {exc}", file=sys.stderr)
            return BootError.exit_status
    return 0


def run_in_process(mode: str, db: str, handler: type[socketserver.BaseRequestHandler],
                   tunables: dict[str, Any]) -> int:
    """``--mode sync|thread|fork``: the stdlib's server on the table, stopped by TERM, INT or
    QUIT as ``serve`` stops its stdlib modes (prefork/jobs/inprocess.py)."""
    server_class = type("Jobs", (MODE_SERVERS[mode],), tunables)
    with server_class(db, handler) as server:
        log.info("prefork %s: jobs of %s with %s (mode %s, pid %d)", __version__, db,
                 handler.__name__, mode, os.getpid())
        serve_stdlib(server)
    return 0


def run_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise UsageError(f"the payload is not JSON: {exc}") from exc
    run_at = parse_at(args.at, time.time())
    db = open_backend(args.db)
    try:
        job_id = db.enqueue(payload, queue=args.queue, priority=args.priority, run_at=run_at,
                            unique=args.unique, timeout=args.timeout)
    finally:
        db.close()
    if job_id is None:
        print(f"prefork: a job with key {args.unique!r} is already queued or running",
              file=sys.stderr)
        return 1
    print(job_id)
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    db = open_backend(args.db)
    try:
        state = db.cancel(args.job)
    finally:
        db.close()
    if state is None:
        print(f"prefork: job {args.job} is not queued or running", file=sys.stderr)
        return 1
    print("cancelled" if state == "cancelled" else "cancelling: its master stops its worker")
    return 0


def run_status(args: argparse.Namespace) -> int:
    db = open_backend(args.db)
    try:
        counts, running = db.counts(), db.running()
    finally:
        db.close()
    if args.json:
        print(json.dumps({"queues": counts, "running": running}, indent=2))
        return 0
    states = ("queued", "running", "done", "failed", "dead", "cancelled")
    print(f"{'queue':<16}" + "".join(f"{s:>10}" for s in states))
    for queue in sorted(counts):
        print(f"{queue:<16}" + "".join(f"{counts[queue].get(s, 0):>10}" for s in states))
    now = time.time()
    for job in running:
        print(f"running: job {job['id']} ({job['queue']}) attempt {job['attempts']} for "
              f"{now - job['started_at']:.1f} s, generation {job['generation']}, "
              f"owner {job['owner']}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "jobs": run_jobs, "enqueue": run_enqueue, "jobs-cancel": run_cancel,
    "jobs-status": run_status,
}
