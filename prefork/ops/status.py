"""What the master knows about its workers, for people and policies: status rows from the
scoreboard and psutil, and the memory figure the ``max_memory`` recycling policy compares.

Everything here is read by the master without asking the workers anything: the scoreboard is
shared memory and psutil reads ``/proc``.  psutil is imported when first needed: ``import
prefork`` (and a master without memory limits, status or metrics) does not load it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from prefork.core.contract import WorkerInfo
from prefork.core.scoreboard import Scoreboard, Slot, State

STOPPED = ("stopped", "tracing-stop")  # psutil.STATUS_STOPPED, STATUS_TRACING_STOP


def worker_memory_mb(pid: int) -> float | None:
    """Resident memory of a worker in MiB (``None`` if it is gone).  RSS, not USS: USS needs a
    walk of ``/proc/PID/smaps`` that costs milliseconds per worker."""
    import psutil

    try:
        return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)
    except psutil.Error:
        return None


def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP, a debugger): it runs no code, handles no
    signal but SIGKILL and SIGCONT, and its scoreboard slot says what it was doing then."""
    import psutil

    try:
        return psutil.Process(pid).status() in STOPPED
    except psutil.Error:
        return False


def status_rows(board: Scoreboard, workers: Iterable[WorkerInfo]) -> list[dict[str, Any]]:
    """One dict per live worker: the table behind ``prefork status``."""
    import psutil

    now = time.monotonic()
    infos = sorted(workers, key=lambda w: w.age)
    slots: dict[int, Slot] = {w.slot: board.read(w.slot) for w in infos}
    total = sum(s.requests for s in slots.values()) or 1
    rows = []
    for info in infos:
        slot = slots[info.slot]
        try:
            state = State(slot.state).label
        except ValueError:  # a torn read of a slot whose worker died mid-update
            state = "?"
        row: dict[str, Any] = {
            "worker": info.age,
            "pid": info.pid,
            "generation": info.generation,
            "state": state,
            "requests": slot.requests,
            "empty_accepts": slot.empty_accepts,
            "request_age": slot.request_age(now),
            "uptime": now - info.started,
            "accept_share": slot.requests / total,
            "rss_mb": None,
            "cpu_percent": None,
            "cpu_seconds": None,
        }
        threads = board.thread_slots(info.slot)
        if threads:  # handler threads (threads > 1): each one, and how many are busy
            row["threads"] = [
                {"thread": number, "state": t.state.label, "requests": t.requests,
                 "request_age": t.request_age(now)}
                for number, t in enumerate(threads, 1)
            ]
            row["busy_threads"] = sum(1 for t in threads if t.state is State.BUSY)
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(info.pid)
            with proc.oneshot():
                if proc.status() in STOPPED:
                    row["state"] = "stopped"
                row["rss_mb"] = proc.memory_info().rss / (1024 * 1024)
                cpu = proc.cpu_times()
                row["cpu_seconds"] = cpu.user + cpu.system
                row["cpu_percent"] = 100.0 * (cpu.user + cpu.system) / max(row["uptime"], 1e-3)
        rows.append(row)
    return rows


def status_report(
    master: dict[str, Any], board: Scoreboard, workers: Iterable[WorkerInfo], retired: int,
) -> dict[str, Any]:
    """The reply to ``prefork status`` (and the source of the metrics): the ``master`` header
    completed with the requests served so far (``retired``: by workers already gone), and a
    row per worker."""
    rows = status_rows(board, workers)
    header = {**master, "requests_total": retired + sum(r["requests"] for r in rows)}
    return {"master": header, "workers": rows}
