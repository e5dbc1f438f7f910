"""``prefork serve module:Program``: an RPC program class served on the TCP and UDP listeners of
``-b``, in every mode, with the pool's signals, status and metrics (calls counted by
program/version/procedure and by reply status, across workers and reloads)."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from apps.rpc_calc import PROG, Calc
from prometheus_client.parser import text_string_to_metric_families

import prefork.rpc.message as message
from helpers import ROOT, ServerProcess, clean_env, free_port, server_process, wait_for
from prefork.rpc import xdr
from prefork.rpc.client import Client

APP = "apps.rpc_calc:Calc"
ENV = {"PYTHONPATH": str(ROOT / "tests")}


def addresses(server: ServerProcess) -> tuple[tuple[str, int], tuple[str, int]]:
    """The TCP and the UDP listener, from the first log line."""
    line = server.wait_line(r"serving \S+ on (\S+) udp://(\S+) \(")
    tcp, udp = (where.rpartition(":") for where in line.groups())
    return (tcp[0], int(tcp[2])), (udp[0], int(udp[2]))


def double(address: tuple[str, int], transport: str, value: int) -> int:
    with Client(address, PROG, 1, transport) as client:
        reply = client.call(1, xdr.encode(xdr.INT, value))
    assert reply.detail == message.SUCCESS
    return int(xdr.decode(xdr.INT, reply.body))


def samples(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def calls(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], vers: int, proc: int,
          name: str) -> float:
    labels = (("name", name), ("procedure", str(proc)), ("program", str(PROG)),
              ("version", str(vers)))
    return values.get(("prefork_rpc_calls_total", labels), 0)


def replies(values: dict[tuple[str, tuple[tuple[str, str], ...]], float], status: str) -> float:
    return values[("prefork_rpc_replies_total", (("status", status),))]


def test_served_with_signals_status_and_metrics(tmp_path: Path) -> None:
    metrics = free_port()
    control = str(tmp_path / "ctl")
    with server_process("serve", APP, "-b", "127.0.0.1:0", "-b", "udp://127.0.0.1:0",
                        "-w", "2", "--metrics", f"127.0.0.1:{metrics}", "--control", control,
                        "--no-rpcbind", env=ENV) as server:
        tcp, udp = addresses(server)
        server.wait_workers(2)
        assert double(tcp, "tcp", 21) == 42
        assert double(udp, "udp", 5) == 10
        with Client(tcp, PROG, 1) as client:
            assert client.call(4, xdr.encode(xdr.INT, 1)).detail == message.SYSTEM_ERR
            assert client.call(99).detail == message.PROC_UNAVAIL
            assert client.call(1, b"\0").detail == message.GARBAGE_ARGS
            assert client.call(0, vers=2).detail == message.SUCCESS
        values = samples(metrics)
        assert calls(values, 1, 1, "Calc.double") == 3  # TCP, UDP, and the garbage one
        assert calls(values, 1, 4, "Calc.boom") == 1
        assert calls(values, 2, 0, "Calc.null") == 1
        assert (replies(values, "success"), replies(values, "system_err"),
                replies(values, "proc_unavail"), replies(values, "garbage_args")) == (3, 1, 1, 1)
        assert not any(labels and dict(labels).get("procedure") == "99"
                       for name, labels in values if name == "prefork_rpc_calls_total")
        # The pool's own verbs: status, a reload (new workers import the program again),
        # TTIN; the counters survive the old workers.
        status = subprocess.run([sys.executable, "-m", "prefork", "status", "--control",
                                 control], capture_output=True, text=True, timeout=30,
                                env=clean_env())
        assert status.returncode == 0, status.stderr
        assert "generation 1" in status.stdout
        old = {w.pid for w in server.workers()}
        server.reload(2)
        wait_for(lambda: not old & server.live(), what="the old workers to leave")
        server.signal(signal.SIGTTIN)
        server.ready_workers(3)
        assert double(tcp, "tcp", 1) == 2
        assert calls(samples(metrics), 1, 1, "Calc.double") == 4
        server.stop_ok()


@pytest.mark.parametrize("mode", ["sync", "thread", "fork", "prefork --preload"])
def test_every_stdlib_mode_serves_it(mode: str) -> None:
    with server_process("serve", APP, "-b", "127.0.0.1:0", "--mode", *mode.split(),
                        "--no-rpcbind", env=ENV) as server:
        tcp = server.tcp_address()
        assert double(tcp, "tcp", 4) == 8
        server.stop_ok()


def test_udp_alone_and_the_duplicate_cache() -> None:
    """A UDP listener only; a retransmission (same xid, same datagram) runs once."""
    with server_process("serve", APP, "-b", "udp://127.0.0.1:0", "-w", "2", "--no-rpcbind",
                        env=ENV) as server:
        udp = server.tcp_address()
        server.wait_workers(2)
        with Client(udp, PROG, 1, "udp") as client:
            first = client.call(6, xid=77)
            again = client.call(6, xid=77)  # answered from the cache: the same worker's pid
        assert first.detail == again.detail == message.SUCCESS
        assert bytes(first.body) == bytes(again.body)


def test_a_program_without_versions_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty_prog.py").write_text(
        "from prefork.rpc import Program\n\nclass Empty(Program):\n    number = 0x20000001\n")
    done = subprocess.run([sys.executable, "-m", "prefork", "serve", "empty_prog:Empty",
                           "-b", "127.0.0.1:0"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=clean_env())
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "prefork: APP 'empty_prog:Empty': program Empty has no version"]


def test_the_class_is_what_it_was() -> None:
    assert Calc.rpcbind and sorted(Calc.table) == [1, 2, 3]
