"""Load for the benchmark: ``wrk`` for HTTP, ``scripts/echo_load.py`` for raw TCP and UDP echo,
and the kernel's listen-queue overflow counter.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from dataclasses import asdict
from typing import Any

from bench_contenders import HOST
from echo_load import run_load

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot parse wrk time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(
    port: int, duration: float, connections: int, threads: int = 1, close: bool = False,
    scheme: str = "http",
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "bench: wrk not found. Install it from the OS packages: `apt-get install wrk` "
            "(Debian/Ubuntu), `dnf install wrk` (Fedora), `brew install wrk` (macOS)."
        )
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--latency",
            "--timeout",
            "5s",
            *(["-H", "Connection: close"] if close else []),
            f"{scheme}://{HOST}:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration + 60,
    ).stdout
    result: dict[str, Any] = {"raw": out}
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    result["rps"] = float(rps.group(1)) if rps else 0.0
    result["requests"] = int(total.group(1)) if total else 0
    for pct, key in (("50", "p50_ms"), ("90", "p90_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[key] = _ms(match.group(1)) if match else float("nan")
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["errors"] = (sum(map(int, errors.groups())) if errors else 0) + (
        int(non2xx.group(1)) if non2xx else 0
    )
    return result


def drive(load: str, port: int, duration: float, args: argparse.Namespace) -> dict[str, Any]:
    if load == "wrk":
        return run_wrk(port, duration, args.connections)
    if load in ("wrk-ka", "wrk-close", "wrk-tls", "wrk-tls-close"):  # issue 10: wrk -t2 -c32
        return run_wrk(port, duration, 32, threads=2, close=load.endswith("close"),
                       scheme="https" if load.startswith("wrk-tls") else "http")
    res = run_load(load, f"{HOST}:{port}", processes=args.clients, duration=duration)
    return asdict(res)


def listen_overflows() -> int:
    """TcpExt ListenOverflows (system-wide): SYNs dropped because an accept queue was full."""
    with open("/proc/net/netstat") as fh:
        lines = fh.read().splitlines()
    for head, values in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            pairs = dict(zip(head.split()[1:], values.split()[1:], strict=False))
            return int(pairs.get("ListenOverflows", 0))
    return 0
