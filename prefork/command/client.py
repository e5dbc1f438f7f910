"""The control commands of ``prefork``: ``status``, ``top``, ``reload``, ``scale`` and ``stop``,
clients of a running master's control socket (prefork.ops.control).

They tell the truth about the outcome: ``reload`` waits until the new generation serves (exit 0)
or failed to take over (exit 1); ``stop --wait`` returns once the master process has exited
(it holds a pidfd of the master from before the stop, so the pid cannot be reused meanwhile);
``scale`` says when the master set another size than the one asked for.  Bad arguments raise
:class:`UsageError` before anything is sent (the command exits 2).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time
from typing import Any

from prefork.master import sizing
from prefork.ops.control import ControlError, request

CONTROL_SUFFIX = ".ctl"  # the control socket next to a pid file: prefork.pid -> prefork.pid.ctl
RELOAD_TIMEOUT = 60.0  # seconds `prefork reload` waits for the new generation by default
STOP_TIMEOUT = 60.0  # seconds `prefork stop --wait` waits for the master to exit by default
REPLY_MARGIN = 5.0  # seconds a waiting client allows beyond the master's own deadline
EXIT_POLL = 0.05  # seconds between looks at a master's pid, only without pidfds (old kernels)


class UsageError(Exception):
    """A control command's bad input; the message is one line (exit status 2)."""


def control_path(args: argparse.Namespace) -> str:
    if args.control:
        return str(args.control)
    if args.pidfile:
        return str(args.pidfile) + CONTROL_SUFFIX
    raise UsageError(f"{args.command}: give --control PATH or --pidfile PATH to find the master")


def top(path: str, interval: float, count: int) -> int:
    """Redraw the status table every ``interval`` seconds until Ctrl-C (or ``count`` screens)."""
    if interval <= 0:
        raise UsageError("top: --interval must be positive")
    shown = 0
    try:
        while not count or shown < count:
            reply = request(path, {"command": "status"})
            stamp = time.strftime("%H:%M:%S")
            sys.stdout.write(f"\x1b[H\x1b[2Jprefork top  {stamp}  (Ctrl-C quits)\n"
                             + format_status(reply) + "\n")
            sys.stdout.flush()
            shown += 1
            if not count or shown < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return 0


def control_command(args: argparse.Namespace) -> int:
    if args.command == "scale":
        workers = scale_argument(args.workers)  # bad input is refused before anything else
    if args.command in ("reload", "stop") and not args.timeout > 0:
        raise UsageError(f"{args.command}: --timeout must be positive")
    path = control_path(args)
    if args.command == "top":
        return top(path, args.interval, args.count)
    if args.command == "reload":
        return reload(path, args.timeout)
    command: dict[str, Any] = {"command": args.command}
    if args.command == "scale":
        command["workers"] = workers
    pidfd = None
    if args.command == "stop":
        command["graceful"] = not args.quick
        if args.wait:  # held from before the stop, so the pid cannot be another process's
            pidfd = _open_pidfd(_master_pid(path))
    try:
        reply = request(path, command)
        if not reply.get("ok"):
            raise ControlError(str(reply.get("error", "the master refused the command")))
        if args.command == "status" and not args.json:
            print(format_status(reply))
        elif args.command == "status":
            print(json.dumps(reply, indent=2, sort_keys=True))
        elif args.command == "stop" and args.wait:
            return wait_exit(reply["master"]["pid"], pidfd, args.timeout)
        else:
            master = reply.get("master", {})
            print(f"{args.command}: ok (pool size {master.get('size')}, "
                  f"generation {master.get('generation')})")
            if args.command == "scale":
                clamp_note(reply)
    finally:
        if pidfd is not None:
            os.close(pidfd)
    return 0


def scale_argument(text: str) -> int | str:
    """``N`` (an int >= 1) or ``+N``/``-N`` (a string), as the control protocol takes them;
    anything else is a UsageError."""
    text = text.strip()
    sign, digits = (text[0], text[1:]) if text[:1] in ("+", "-") else ("", text)
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 7:
        raise UsageError(f"scale: expected N, +N or -N, not {text[:40]!r}")
    if sign:
        return text
    if int(digits) < 1:
        raise UsageError(f"scale: the pool size must be at least 1, not {digits}")
    return int(digits)


def clamp_note(reply: dict[str, Any]) -> None:
    """Say so when the master set another size than the one asked for (it keeps the pool
    within [1, max_children])."""
    master, requested = reply.get("master", {}), reply.get("requested")
    size = master.get("size")
    if requested is not None and size is not None and requested != size:
        limit = sizing.bound_name(requested, size)
        print(f"prefork: note: asked for {requested} workers, set {size} ({limit})",
              file=sys.stderr)


def reload(path: str, timeout: float) -> int:
    """Ask for a reload and wait for its outcome: 0 once the new generation serves."""
    reply = request(path, {"command": "reload", "wait": timeout}, timeout + REPLY_MARGIN)
    if not reply.get("ok"):
        raise ControlError(f"reload: {reply.get('error', 'the master refused the command')}")
    master = reply.get("master", {})
    print(f"reload: ok, generation {master.get('generation')} serving "
          f"(pool size {master.get('size')})")
    return 0


def _master_pid(path: str) -> int:
    reply = request(path, {"command": "status"})
    if not reply.get("ok"):
        raise ControlError(str(reply.get("error", "the master refused the command")))
    return int(reply["master"]["pid"])


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (None: it is gone already, or the kernel has no pidfds)."""
    try:
        return os.pidfd_open(pid)
    except (ProcessLookupError, AttributeError, OSError):
        return None


def wait_exit(pid: int, pidfd: int | None, timeout: float) -> int:
    """Wait until process ``pid`` has exited (its pidfd readable; without one, poll)."""
    deadline = time.monotonic() + timeout
    if pidfd is not None:
        exited = bool(select.select([pidfd], [], [], timeout)[0])
    else:
        while (exited := not _exists(pid)) is False and time.monotonic() < deadline:
            time.sleep(EXIT_POLL)
    if not exited:
        raise ControlError(f"stop: the master (pid {pid}) is still running after {timeout:g} s")
    print(f"stop: ok, the master (pid {pid}) exited")
    return 0


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def _fmt(value: Any, spec: str, none: str = "-") -> str:
    return none if value is None else format(value, spec)


def format_restarts(restarts: dict[str, int]) -> str:
    """``crash=1 max_requests=3`` (``none`` for no restarts)."""
    return " ".join(f"{reason}={n}" for reason, n in sorted(restarts.items())) or "none"


def format_status(reply: dict[str, Any]) -> str:
    master = reply["master"]
    lines = [
        f"master pid {master['pid']} [{master['name']}]  size {master['size']}  "
        f"generation {master['generation']}"
        + ("  reloading" if master.get("reloading") else "")
        + ("  paused" if master.get("paused") else "")
        + f"  restarts {format_restarts(master.get('restarts') or {})}",
        f"{'WORKER':>6} {'PID':>7} {'GEN':>3} {'STATE':<8} {'REQS':>8} {'REQ AGE':>8} "
        f"{'RSS MB':>7} {'CPU %':>6} {'UPTIME':>8} {'SHARE':>6}",
    ]
    for w in reply["workers"]:
        state = w["state"]
        if w.get("threads"):  # handler threads: how many are busy
            state = f"{state} {w['busy_threads']}/{len(w['threads'])}"
        lines.append(
            f"{w['worker']:>6} {w['pid']:>7} {w['generation']:>3} {state:<8} "
            f"{w['requests']:>8} {_fmt(w['request_age'], '8.2f'):>8} "
            f"{_fmt(w['rss_mb'], '7.1f'):>7} {_fmt(w['cpu_percent'], '6.1f'):>6} "
            f"{w['uptime']:>8.1f} {100 * w['accept_share']:>5.1f}%"
            + (f"  job {w['job']}" if w.get("job") else "")  # the job pool's
        )
    return "\n".join(lines)
