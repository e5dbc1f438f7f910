"""Side-by-side benchmark of prefork against a bare floor, gunicorn and the stdlib servers.

Run from the repository root::

    python scripts/bench.py                 # default run, a few minutes
    python scripts/bench.py --quick         # short smoke (~2 minutes on 2 CPUs)
    python scripts/bench.py --rounds 3 --duration 10 --chart docs/benchmarks.png

Every contender is started on loopback, warmed up, driven by the same client, and stopped, in
one run; rounds rotate the order so that drift on a shared machine hits everyone alike.  The
numbers that matter are the ratios to prefork in the same run, not the absolute figures.

HTTP load comes from ``wrk`` (``apt-get install wrk``); raw TCP and UDP echo load from
``scripts/echo_load.py``.  Per-worker memory needs ``psutil``; the chart needs ``matplotlib``.

Contenders (same worker count): ``prefork``; ``floor``, the bare fork-and-accept loop of
``scripts/bare_floor.py`` running the same handler class; ``gunicorn`` sync workers serving the
equivalent WSGI app; the stdlib ``sync``, ``thread`` and ``fork`` servers (``prefork serve
--mode``) with the same handler.

Operations measured on prefork (gunicorn alongside for context): respawn-to-accepting after
SIGKILL of a worker, SIGTERM-to-exit of an idle server, wake-ups per second of an idle master,
throughput during repeated SIGHUP reloads, and spurious wake-ups per accepted connection with 8
workers (parsed from the workers' debug exit lines).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from echo_load import run_load

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = "127.0.0.1"
READY_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
PRELOAD_REQUESTS = 10_000

POOLS = ("prefork", "floor", "gunicorn", "gunicorn-preload")  # contenders with N workers
EXIT_LINE = re.compile(
    r"worker (\d+) \(pid (\d+)\) exiting \(([^)]*)\): (\d+) requests, (\d+) empty accepts"
)


# -- workloads and contenders -------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    app: str
    wsgi: str | None
    load: str  # "wrk", "tcp" or "udp"
    contenders: tuple[str, ...]


WORKLOADS: dict[str, Workload] = {
    w.key: w
    for w in (
        Workload(
            "http",
            "HTTP hello (BaseHTTPRequestHandler)",
            "workers.http_hello:Hello",
            "workers.http_hello:wsgi_app",
            "wrk",
            ("prefork", "floor", "gunicorn", "sync", "thread", "fork"),
        ),
        Workload(
            "tcp",
            "raw TCP echo (one connection per line)",
            "workers.echo:LineEcho",
            None,
            "tcp",
            ("prefork", "floor", "sync", "thread", "fork"),
        ),
        Workload(
            "udp",
            "UDP echo",
            "workers.udp_echo:DatagramEcho",
            None,
            "udp",
            ("prefork", "floor", "sync", "thread", "fork"),
        ),
        Workload(
            "cpu",
            "CPU-bound (~4 ms pure Python per request)",
            "workers.cpu:Burn",
            "workers.cpu:wsgi_app",
            "wrk",
            ("prefork", "floor", "gunicorn", "sync", "thread", "fork"),
        ),
        Workload(
            "preload",
            "HTTP hello with a 100 MB structure preloaded",
            "scripts.bench_preload:Hello",
            "scripts.bench_preload:wsgi_app",
            "wrk",
            ("prefork", "floor", "gunicorn-preload", "gunicorn"),
        ),
    )
}


def contender_argv(
    name: str, work: Workload, port: int, workers: int, debug: bool = False
) -> list[str]:
    udp = work.load == "udp"
    hostport = f"{HOST}:{port}"
    if name == "floor":
        return [
            PY,
            str(ROOT / "scripts" / "bare_floor.py"),
            work.app,
            "-b",
            hostport,
            "-w",
            str(workers),
            *(["--udp"] if udp else []),
        ]
    if name.startswith("gunicorn"):
        assert work.wsgi is not None, work
        preload = ["--preload"] if name == "gunicorn-preload" else []
        return [
            PY,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-b",
            hostport,
            "-k",
            "sync",
            "--log-level",
            "warning",
            *preload,
            work.wsgi,
        ]
    bind = f"udp://{hostport}" if udp else hostport
    argv = [PY, "-m", "prefork", "serve", work.app, "-b", bind]
    if name == "prefork":
        argv += ["-w", str(workers), "--mode", "prefork"]
    else:
        argv += ["--mode", name]
    if debug:
        argv += ["--log-level", "debug"]
    return argv


# -- running a server ---------------------------------------------------------------------------


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def http_get(port: int, timeout: float = 5.0, path: str = "/") -> bytes:
    """One HTTP/1.0 GET; returns the whole response (raises OSError on failure)."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {HOST}\r\n\r\n".encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data.startswith(b"HTTP/1.") or b" 200 " not in data.split(b"\r\n", 1)[0]:
        raise OSError(f"bad response {data[:60]!r}")
    return data


def probe(load: str, port: int) -> bool:
    try:
        if load == "udp":
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(0.2)
                sock.sendto(b"ping\n", (HOST, port))
                return sock.recv(64) == b"ping\n"
        if load == "tcp":
            with socket.create_connection((HOST, port), timeout=1) as sock:
                sock.sendall(b"ping\n")
                return sock.recv(64) == b"ping\n"
        http_get(port, timeout=2)
        return True
    except OSError:
        return False


@dataclass
class Server:
    name: str
    argv: list[str]
    port: int
    load: str
    workers: int  # children to wait for; 0 for in-process servers
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> Server:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        )
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.started = time.monotonic()
        deadline = self.started + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: {self.tail()}")
            if len(self.children()) >= self.workers and probe(self.load, self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {READY_TIMEOUT} s: {self.tail()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children()
        except psutil.Error:
            return []

    def tail(self, lines: int = 5) -> str:
        text = self.log_path.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:])

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> float:
        """Stop the server; returns seconds from the signal to the master's exit."""
        assert self.proc is not None
        leftovers = [self.proc_info(), *self.children()]
        with contextlib.suppress(psutil.Error):
            leftovers += psutil.Process(self.pid).children(recursive=True)
        # Wait on a pidfd: Popen.wait(timeout) polls with growing sleeps (0.5 ms doubling to
        # 50 ms), which would round a 20 ms exit up to 31.5 ms.
        pidfd = os.pidfd_open(self.pid)
        start = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(sig)
        try:
            select.select([pidfd], [], [], STOP_TIMEOUT)
            elapsed = time.monotonic() - start
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait()
            elapsed = time.monotonic() - start
        finally:
            os.close(pidfd)
        # Workers lead their own process groups: make sure none outlives the run.
        for proc in leftovers:
            if proc is not None:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        return elapsed

    def proc_info(self) -> psutil.Process | None:
        try:
            return psutil.Process(self.pid)
        except psutil.Error:
            return None


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.returncode is None:
            server.stop()


# -- load ---------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"cannot parse wrk time {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(port: int, duration: float, connections: int, threads: int = 1) -> dict[str, Any]:
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
            f"http://{HOST}:{port}/",
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


def uss_mb(proc: psutil.Process) -> float:
    return proc.memory_full_info().uss / 2**20


# -- throughput runs ----------------------------------------------------------------------------


@dataclass
class Sample:
    workload: str
    contender: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    listen_overflows: int
    extra: dict[str, Any] = field(default_factory=dict)


def measure_one(work: Workload, name: str, rnd: int, args: argparse.Namespace, tmp: Path) -> Sample:
    port = free_port(socket.SOCK_DGRAM if work.load == "udp" else socket.SOCK_STREAM)
    pool = name in POOLS
    server = Server(
        name,
        contender_argv(name, work, port, args.workers),
        port,
        work.load,
        args.workers if pool else 0,
        tmp / f"{work.key}-{name}-{rnd}.log",
    )
    with running(server):
        served = 0
        if args.warmup > 0:
            served += drive(work.load, port, args.warmup, args).get("requests", 0)
        before = listen_overflows()
        res = drive(work.load, port, args.duration, args)
        overflows = listen_overflows() - before
        served += res["requests"]
        extra: dict[str, Any] = {}
        if work.key == "preload":
            while served < PRELOAD_REQUESTS:
                served += drive(work.load, port, 1.0, args)["requests"]
            extra["requests_before_uss"] = served
            if pool:
                uss = [uss_mb(child) for child in server.children()]
                extra["worker_uss_mb"] = [round(u, 1) for u in uss]
            with contextlib.suppress(psutil.Error):
                master = psutil.Process(server.pid)
                extra["master_uss_mb"] = round(uss_mb(master), 1)
                extra["master_rss_mb"] = round(master.memory_info().rss / 2**20, 1)
    sample = Sample(
        work.key,
        name,
        rnd,
        res["rps"],
        res["p50_ms"],
        res["p99_ms"],
        res["errors"],
        res["requests"],
        overflows,
        extra,
    )
    print(
        f"  {work.key:8} {name:17} round {rnd}: {sample.rps:9.0f} req/s  p50 {sample.p50_ms:7.2f}"
        f" ms  p99 {sample.p99_ms:8.2f} ms  errors {sample.errors}  overflows {overflows}"
        + (f"  {extra}" if extra else ""),
        flush=True,
    )
    return sample


def run_workloads(args: argparse.Namespace, tmp: Path) -> list[Sample]:
    samples: list[Sample] = []
    for key in args.workloads:
        work = WORKLOADS[key]
        contenders = [
            c
            for c in work.contenders
            if c in args.contenders or (c == "gunicorn-preload" and "gunicorn" in args.contenders)
        ]
        print(f"{work.title}: {', '.join(contenders)}", flush=True)
        for rnd in range(args.rounds):
            shift = rnd % len(contenders)
            for name in contenders[shift:] + contenders[:shift]:
                try:
                    samples.append(measure_one(work, name, rnd, args, tmp))
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    print(f"  {key} {name}: FAILED: {exc}", flush=True)
    return samples


def cpu_ceiling(repeats: int = 50) -> dict[str, float]:
    """Seconds of CPU one CPU-bound request's work takes here (best of ``repeats``, measured in
    this process while nothing else of ours runs), and the req/s all usable CPUs could give
    with zero server, client and kernel overhead: the physical ceiling of the cpu workload."""
    sys.path.insert(0, str(ROOT))
    from workers.cpu import DEFAULT_N, burn

    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        burn(DEFAULT_N)
        best = min(best, time.process_time() - start)
    cpus = len(os.sched_getaffinity(0))
    return {"burn_ms": best * 1000, "cpus": cpus, "ceiling_rps": cpus / best}


def summarize(samples: list[Sample]) -> dict[str, dict[str, dict[str, Any]]]:
    """Median per (workload, contender), and the ratio to prefork in the same workload."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for s in samples:
        table.setdefault(s.workload, {}).setdefault(s.contender, {"runs": []})["runs"].append(s)
    for rows in table.values():
        for row in rows.values():
            runs: list[Sample] = row.pop("runs")
            row["rps"] = statistics.median(r.rps for r in runs)
            row["p50_ms"] = statistics.median(r.p50_ms for r in runs)
            row["p99_ms"] = statistics.median(r.p99_ms for r in runs)
            row["errors"] = sum(r.errors for r in runs)
            row["listen_overflows"] = sum(r.listen_overflows for r in runs)
            row["rounds"] = len(runs)
            row["rps_runs"] = [round(r.rps, 1) for r in runs]
            uss = [u for r in runs for u in r.extra.get("worker_uss_mb", [])]
            if uss:
                row["worker_uss_mb_mean"] = round(statistics.mean(uss), 1)
                row["worker_uss_mb_max"] = round(max(uss), 1)
            masters = [r.extra["master_uss_mb"] for r in runs if "master_uss_mb" in r.extra]
            if masters:
                row["master_uss_mb"] = round(statistics.median(masters), 1)
        base = rows.get("prefork", {}).get("rps")
        for row in rows.values():
            row["vs_prefork"] = row["rps"] / base if base else None
    return table


# -- operations ---------------------------------------------------------------------------------

HELLO = WORKLOADS["http"]


def pool_server(name: str, workers: int, tmp: Path, tag: str, debug: bool = False) -> Server:
    port = free_port()
    return Server(
        name,
        contender_argv(name, HELLO, port, workers, debug=debug),
        port,
        "wrk",
        workers,
        tmp / f"ops-{tag}-{name}.log",
    )


def respawn_times(name: str, repeats: int, tmp: Path) -> list[float]:
    """1-worker pool: SIGKILL the worker, wait until it is gone (pidfd), then time until a
    request is answered -- the connection waits in the backlog until a new worker accepts."""
    times: list[float] = []
    with running(pool_server(name, 1, tmp, "respawn")) as server:
        for _ in range(repeats):
            children = server.children()
            if len(children) != 1:
                time.sleep(0.05)
                continue
            worker = children[0].pid
            pidfd = os.pidfd_open(worker)
            try:
                start = time.monotonic()
                os.kill(worker, signal.SIGKILL)
                select.select([pidfd], [], [], 5)
                http_get(server.port, timeout=10)
                times.append(time.monotonic() - start)
            finally:
                os.close(pidfd)
            # Let the new worker finish booting before the next round.
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and len(server.children()) != 1:
                time.sleep(0.01)
            time.sleep(0.1)
    return times


def idle_stop_times(name: str, workers: int, repeats: int, tmp: Path) -> list[float]:
    times = []
    for i in range(repeats):
        server = pool_server(name, workers, tmp, f"stop{i}").start()
        time.sleep(0.5)  # idle: no request in flight, workers waiting in accept
        times.append(server.stop())
    return times


def ctx_switches(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        text = fh.read()
    return sum(int(v) for v in re.findall(r"(?:non)?voluntary_ctxt_switches:\s+(\d+)", text))


def idle_wakeups(name: str, workers: int, seconds: float, tmp: Path) -> dict[str, float]:
    """Context switches per second of the master (and mean per worker) over an idle window,
    read from /proc/PID/status; each sleep-wake cycle costs one voluntary switch."""
    with running(pool_server(name, workers, tmp, "idle")) as server:
        time.sleep(1.0)
        kids = [c.pid for c in server.children()]
        m0, w0 = ctx_switches(server.pid), [ctx_switches(p) for p in kids]
        time.sleep(seconds)
        m1, w1 = ctx_switches(server.pid), [ctx_switches(p) for p in kids]
    per_worker = [(b - a) / seconds for a, b in zip(w0, w1, strict=True)]
    return {
        "master_per_s": (m1 - m0) / seconds,
        "worker_per_s_mean": statistics.mean(per_worker) if per_worker else float("nan"),
    }


def reload_probe(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Does SIGHUP start a new generation?  If so, compare throughput during reloads."""
    with running(pool_server("prefork", args.workers, tmp, "reload-probe")) as server:
        old = {c.pid for c in server.children()}
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        replaced = False
        while time.monotonic() < deadline:
            now = {c.pid for c in server.children()}
            if len(now - old) >= args.workers and not (now & old):
                replaced = True
                break
            time.sleep(0.05)
        alive = server.proc is not None and server.proc.poll() is None
    if not replaced:
        return {
            "implemented": False,
            "master_survived_sighup": alive,
            "note": "not yet measurable: reload not implemented",
        }
    with running(pool_server("prefork", args.workers, tmp, "reload-steady")) as server:
        steady = run_wrk(server.port, args.duration, args.connections)
    with running(pool_server("prefork", args.workers, tmp, "reload-hup")) as server:
        stop = threading.Event()
        hups = 0

        def hupper() -> None:
            nonlocal hups
            while not stop.wait(args.duration / 5):
                os.kill(server.pid, signal.SIGHUP)
                hups += 1

        thread = threading.Thread(target=hupper, daemon=True)
        thread.start()
        during = run_wrk(server.port, args.duration, args.connections)
        stop.set()
        thread.join()
    return {
        "implemented": True,
        "steady_rps": steady["rps"],
        "reload_rps": during["rps"],
        "ratio": during["rps"] / steady["rps"] if steady["rps"] else None,
        "sighups": hups,
        "errors_during": during["errors"],
    }


def spurious_wakeups(workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    server = pool_server("prefork", workers, tmp, f"spurious{workers}", debug=True)
    with running(server):
        run_wrk(server.port, args.warmup, args.connections)
        res = run_wrk(server.port, args.duration, args.connections)
        server.stop()
    rows = [tuple(map(int, (m[0], m[1], m[3], m[4]))) for m in EXIT_LINE.findall(server.log_text())]
    requests = sum(r[2] for r in rows)
    empty = sum(r[3] for r in rows)
    return {
        "workers": workers,
        "workers_reporting": len(rows),
        "requests": requests,
        "empty_accepts": empty,
        "per_accept": empty / requests if requests else None,
        "per_worker_requests": sorted(r[2] for r in rows),
        "rps": res["rps"],
    }


def run_operations(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    ops: dict[str, Any] = {}
    others = ["gunicorn"] if "gunicorn" in args.contenders else []
    for name in ["prefork", *others]:
        times = respawn_times(name, args.repeats, tmp)
        ops.setdefault("respawn_ms", {})[name] = [round(t * 1000, 2) for t in times]
        print(
            f"  respawn-to-accepting {name}: median {statistics.median(times) * 1000:.1f} ms,"
            f" max {max(times) * 1000:.1f} ms ({len(times)} kills)",
            flush=True,
        )
        stops = idle_stop_times(name, args.workers, max(3, args.repeats // 2), tmp)
        ops.setdefault("idle_stop_ms", {})[name] = [round(t * 1000, 2) for t in stops]
        print(
            f"  idle SIGTERM-to-exit {name}: median {statistics.median(stops) * 1000:.1f} ms,"
            f" max {max(stops) * 1000:.1f} ms",
            flush=True,
        )
        wake = idle_wakeups(name, args.workers, args.idle_seconds, tmp)
        ops.setdefault("idle_wakeups", {})[name] = wake
        print(
            f"  idle wake-ups {name}: master {wake['master_per_s']:.2f}/s, "
            f"worker {wake['worker_per_s_mean']:.2f}/s",
            flush=True,
        )
    ops["reload"] = reload_probe(args, tmp)
    print(f"  reload: {ops['reload']}", flush=True)
    ops["spurious"] = []
    for workers in sorted({args.workers, 8}):
        res = spurious_wakeups(workers, args, tmp)
        ops["spurious"].append(res)
        per = res["per_accept"]
        print(
            f"  spurious wake-ups, {workers} workers: {res['empty_accepts']} empty accepts /"
            f" {res['requests']} requests = {per if per is None else round(per, 4)}"
            f" (per worker {res['per_worker_requests']})",
            flush=True,
        )
    return ops


# -- reporting ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    versions = {}
    for tool, cmd in (
        ("wrk", ["wrk", "--version"]),
        ("gunicorn", [PY, "-m", "gunicorn", "--version"]),
    ):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            versions[tool] = (out.stdout or out.stderr).splitlines()[0].strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        **versions,
    }


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(data: dict[str, Any]) -> str:
    out = []
    for key, rows in data["results"].items():
        work = WORKLOADS[key]
        preload = key == "preload"
        head = "| contender | req/s | vs prefork | p50 ms | p99 ms | errors | listen overflows |"
        sep = "|---|---:|---:|---:|---:|---:|---:|"
        if preload:
            head += " worker USS MB (mean/max) | master USS MB |"
            sep += "---:|---:|"
        out += [f"### {work.title}", "", head, sep]
        for name in work.contenders:
            row = rows.get(name)
            if row is None:
                continue
            line = (
                f"| {name} | {fmt(row['rps'])} | {fmt(row['vs_prefork'], '.2f')}x | "
                f"{fmt(row['p50_ms'], '.2f')} | {fmt(row['p99_ms'], '.2f')} | {row['errors']} | "
                f"{row['listen_overflows']} |"
            )
            if preload:
                uss = (
                    f"{row['worker_uss_mb_mean']} / {row['worker_uss_mb_max']}"
                    if "worker_uss_mb_mean" in row
                    else "-"
                )
                line += f" {uss} | {row.get('master_uss_mb', '-')} |"
            out.append(line)
        out.append("")
    ops = data.get("operations")
    if ops:
        out += ["### Operations", "", "| measurement | prefork | gunicorn |", "|---|---:|---:|"]

        def med(values: list[float]) -> str:
            return f"{statistics.median(values):.1f} (max {max(values):.1f})" if values else "-"

        for label, key in (
            ("respawn-to-accepting after SIGKILL, ms", "respawn_ms"),
            ("idle SIGTERM-to-exit, ms", "idle_stop_ms"),
        ):
            vals = ops.get(key, {})
            out.append(
                f"| {label} | {med(vals.get('prefork', []))} | {med(vals.get('gunicorn', []))} |"
            )
        wake = ops.get("idle_wakeups", {})
        for who, label in (
            ("master_per_s", "idle master wake-ups/s"),
            ("worker_per_s_mean", "idle worker wake-ups/s (mean)"),
        ):
            cells = [
                fmt(wake[n][who], ".2f") if n in wake else "-" for n in ("prefork", "gunicorn")
            ]
            out.append(f"| {label} | {cells[0]} | {cells[1]} |")
        rel = ops.get("reload", {})
        if rel.get("implemented"):
            out.append(
                f"| throughput during SIGHUP reloads / steady | {rel['ratio']:.2f}x "
                f"({rel['sighups']} HUPs, {rel['errors_during']} errors) | - |"
            )
        elif rel:
            out.append(
                "| throughput during SIGHUP reloads / steady | "
                "**not yet measurable: reload not implemented** | - |"
            )
        ceiling = ops.get("cpu_ceiling")
        if ceiling:
            out.append(
                f"| CPU-bound ceiling: {ceiling['cpus']} CPUs / {ceiling['burn_ms']:.2f} ms of "
                f"work per request, req/s | {ceiling['ceiling_rps']:.0f} | - |"
            )
        for sp in ops.get("spurious", []):
            out.append(
                f"| spurious wake-ups per accepted connection, {sp['workers']} workers | "
                f"{fmt(sp['per_accept'], '.4f')} ({sp['empty_accepts']} / "
                f"{sp['requests']}) | - |"
            )
        out.append("")
    return "\n".join(out)


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    keys = [k for k in WORKLOADS if k in results]
    names = ["prefork", "floor", "gunicorn", "gunicorn-preload", "sync", "thread", "fork"]
    names = [n for n in names if any(n in results[k] for k in keys)]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, key in enumerate(keys):
            row = results[key].get(name)
            if row and row.get("vs_prefork") is not None:
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(row["vs_prefork"])
        ax.bar(xs, ys, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    short = {
        "http": "HTTP hello",
        "tcp": "TCP echo",
        "udp": "UDP echo",
        "cpu": "CPU-bound",
        "preload": "HTTP, 100 MB preloaded",
    }
    ax.set_xticks(range(len(keys)), [short.get(k, k) for k in keys])
    ax.set_ylabel("throughput relative to prefork (same run)")
    meta = data["machine"]
    ax.set_title(
        f"prefork benchmark, {data['config']['workers']} workers, "
        f"{meta['usable_cpus']} CPUs, {meta['date']}"
    )
    ax.legend(ncols=4, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}")


# -- main ---------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark prefork against a bare fork-and-accept floor, gunicorn sync and "
        "the stdlib servers, side by side on loopback.",
    )
    parser.add_argument("--quick", action="store_true", help="short smoke (~2 min on 2 CPUs)")
    parser.add_argument("-w", "--workers", type=int, default=2, help="workers per pool (2)")
    parser.add_argument(
        "-d",
        "--duration",
        type=float,
        default=None,
        help="seconds of load per contender (5; --quick 2)",
    )
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds (1)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="rounds per workload, order rotated; medians reported (1)",
    )
    parser.add_argument("-c", "--connections", type=int, default=16, help="wrk connections (16)")
    parser.add_argument(
        "--clients", type=int, default=2, help="client processes for TCP/UDP echo load (2)"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--contenders",
        default="prefork,floor,gunicorn,sync,thread,fork",
        help="comma-separated subset of contenders",
    )
    parser.add_argument("--no-ops", action="store_true", help="skip the operations")
    parser.add_argument("--repeats", type=int, default=None, help="respawn kills (10; quick 5)")
    parser.add_argument(
        "--idle-seconds", type=float, default=None, help="idle window for wake-ups (10; quick 4)"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-results.json"),
        help="where to write the results (bench-results.json)",
    )
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here")
    parser.add_argument("--chart", type=Path, default=None, help="write a PNG chart here")
    parser.add_argument(
        "--from-json",
        type=Path,
        default=None,
        help="do not run: redo the tables/chart from an earlier JSON file",
    )
    args = parser.parse_args()
    quick = args.quick
    args.duration = args.duration or (2.0 if quick else 5.0)
    args.warmup = (0.5 if quick else 1.0) if args.warmup is None else args.warmup
    args.repeats = args.repeats or (5 if quick else 10)
    args.idle_seconds = args.idle_seconds or (4.0 if quick else 10.0)
    args.workloads = [w for w in args.workloads.split(",") if w]
    args.contenders = [c for c in args.contenders.split(",") if c]
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    return args


def main() -> None:
    args = parse_args()
    if args.from_json:
        data = json.loads(args.from_json.read_text())
    else:
        with tempfile.TemporaryDirectory(prefix="prefork-bench-") as tmpdir:
            tmp = Path(tmpdir)
            start = time.monotonic()
            samples = run_workloads(args, tmp)
            ops = {} if args.no_ops else run_operations(args, tmp)
            if "cpu" in args.workloads:
                ops["cpu_ceiling"] = cpu_ceiling()
                print(f"  cpu workload ceiling: {ops['cpu_ceiling']}", flush=True)
            config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
            data = {
                "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
                "machine": machine(),
                "config": config,
                "results": summarize(samples),
                "operations": ops,
                "samples": [asdict(s) for s in samples],
                "elapsed_s": round(time.monotonic() - start, 1),
            }
        args.json.write_text(json.dumps(data, indent=1, default=str))
        print(f"results written to {args.json} ({data['elapsed_s']} s)")
    text = markdown(data)
    print()
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.chart:
        chart(data, args.chart)


if __name__ == "__main__":
    main()
