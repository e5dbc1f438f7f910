"""``prefork jobs DB_PATH module:Handler`` and ``prefork enqueue DB_PATH JSON`` (prefork/jobs).

``jobs`` runs a :class:`~prefork.jobs.JobServer` pool on the SQLite file at DB_PATH (created,
with its table, if missing) with the handler class ``module:Handler``, under the same signals
as ``serve`` (TERM graceful, INT/QUIT quick, HUP a new generation, TTIN/TTOU); the pool
settings it takes are :data:`JOB_KEYS`, from the settings table.  ``enqueue`` adds one job
whose payload is the JSON text and prints its id.
"""

from __future__ import annotations

import argparse
import importlib
import json
import socketserver
import sys
from typing import Any

from prefork.command.client import UsageError
from prefork.jobs import JobServer, connect, enqueue
from prefork.master.supervisor import BootError
from prefork.ops.logs import setup_logging

# The settings (prefork/command/settings.py) that `prefork jobs` has flags for.
JOB_KEYS = ("workers", "graceful_timeout", "request_timeout", "max_requests",
            "max_requests_jitter", "max_age", "max_memory", "log_level")


def add_commands(commands: Any, add_flags: Any) -> None:
    """The ``jobs`` and ``enqueue`` sub-commands; ``add_flags(parser, keys)`` adds the
    settings' flags."""
    jobs = commands.add_parser("jobs", help="run a pool of workers on a SQLite job table")
    jobs.add_argument("db", metavar="DB_PATH", help="the SQLite file (created if missing)")
    jobs.add_argument("handler", metavar="module:Handler",
                      help="the handler class; self.request is the job")
    add_flags(jobs, JOB_KEYS)
    add = commands.add_parser("enqueue", help="add a job to a SQLite job table")
    add.add_argument("db", metavar="DB_PATH")
    add.add_argument("payload", metavar="JSON", help="the job's payload, as JSON")
    add.add_argument("--queue", default="default")
    add.add_argument("--priority", type=int, default=0, help="higher runs first (default: 0)")


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


def run_jobs(args: argparse.Namespace) -> int:
    handler = load_handler(args.handler)
    setup_logging(args.log_level or "info")
    tunables = {key: value for key in JOB_KEYS
                if key != "log_level" and (value := getattr(args, key)) is not None}
    server_class = type("Jobs", (JobServer,), tunables)
    with server_class(args.db, handler) as server:
        try:
            server.serve_forever()
        except BootError as exc:
            print(f"prefork: {exc}", file=sys.stderr)
            return BootError.exit_status
    return 0


def run_enqueue(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise UsageError(f"the payload is not JSON: {exc}") from exc
    db = connect(args.db)
    try:
        print(enqueue(db, payload, queue=args.queue, priority=args.priority))
    finally:
        db.close()
    return 0
