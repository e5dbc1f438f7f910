"""A small multi-process load client for raw TCP and UDP echo services (loopback only).

``python scripts/echo_load.py tcp 127.0.0.1:9000 -p 2 -d 10``

TCP: each operation is one connection -- connect, send one line, read the echoed line, close --
so every operation goes through the server's accept path, as HTTP/1.0 does under wrk.
UDP: each operation sends one datagram and waits for its echo; no reply within ``--timeout``
counts as an error (a lost datagram), not as latency.

Each client process runs a closed loop (one operation in flight) for ``--duration`` seconds;
the parent merges the latencies and prints requests/s and p50/p90/p99 in ms (``--json`` for a
machine-readable line).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import time
from dataclasses import asdict, dataclass

PAYLOAD = b"x" * 63 + b"\n"
LOOPBACK = ("127.0.0.1", "::1", "localhost")


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


def parse_target(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    if host not in LOOPBACK:
        raise SystemExit(f"echo_load: {host!r} is not a loopback address; refusing")
    return host, int(port)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _tcp_once(addr: tuple[str, int], timeout: float) -> bool:
    with socket.socket(_family(addr[0]), socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(addr)
        sock.sendall(PAYLOAD)
        got = b""
        while not got.endswith(b"\n"):
            chunk = sock.recv(4096)
            if not chunk:
                return False
            got += chunk
        return got == PAYLOAD


def _client(
    kind: str,
    addr: tuple[str, int],
    duration: float,
    timeout: float,
    out: mp.SimpleQueue,  # type: ignore[type-arg]
) -> None:
    latencies: list[float] = []
    errors = 0
    udp = None
    if kind == "udp":
        udp = socket.socket(_family(addr[0]), socket.SOCK_DGRAM)
        udp.settimeout(timeout)
        udp.connect(addr)
    end = time.monotonic() + duration
    now = time.monotonic()
    while now < end:
        start = now
        try:
            if udp is not None:
                udp.send(PAYLOAD)
                ok = udp.recv(65536) == PAYLOAD
            else:
                ok = _tcp_once(addr, timeout)
        except OSError:
            ok = False
        now = time.monotonic()
        if ok:
            latencies.append(now - start)
        else:
            errors += 1
    if udp is not None:
        udp.close()
    out.put((latencies, errors))


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def run_load(
    kind: str, target: str, processes: int = 2, duration: float = 10.0, timeout: float = 2.0
) -> LoadResult:
    """Drive ``target`` with ``processes`` closed-loop clients for ``duration`` seconds."""
    if kind not in ("tcp", "udp"):
        raise ValueError(f"kind must be tcp or udp, not {kind!r}")
    addr = parse_target(target)
    ctx = mp.get_context("fork")
    out: mp.SimpleQueue = ctx.SimpleQueue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_client, args=(kind, addr, duration, timeout, out), daemon=True)
        for _ in range(processes)
    ]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    latencies: list[float] = []
    errors = 0
    for _ in procs:
        lat, err = out.get()
        latencies.extend(lat)
        errors += err
    for proc in procs:
        proc.join(timeout + 5)
    seconds = time.monotonic() - started
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 3),
        rps=len(latencies) / duration,
        p50_ms=percentile(latencies, 0.50) * 1000,
        p90_ms=percentile(latencies, 0.90) * 1000,
        p99_ms=percentile(latencies, 0.99) * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Multi-process TCP/UDP echo load client (loopback only)."
    )
    parser.add_argument("kind", choices=["tcp", "udp"])
    parser.add_argument("target", help="HOST:PORT on loopback")
    parser.add_argument("-p", "--processes", type=int, default=2, help="client processes")
    parser.add_argument("-d", "--duration", type=float, default=10.0, help="seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="per-operation timeout, s")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    result = run_load(args.kind, args.target, args.processes, args.duration, args.timeout)
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(
            f"{result.requests} ok, {result.errors} errors in {args.duration:.1f} s: "
            f"{result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p90 {result.p90_ms:.2f} ms, "
            f"p99 {result.p99_ms:.2f} ms"
        )


if __name__ == "__main__":
    main()
