"""The master registers its RPC program with rpcbind, and unregisters it at exit.

Each test has an rpcbind of its own, in a loopback-only network namespace (tests/rpc/netns.py),
where ``prefork serve`` and rpcinfo run too; the namespace's network is empty, so the ports
can be fixed ones."""

from __future__ import annotations

import os
import signal
import sys

from apps.rpc_calc import PROG
from netns import Namespace

from helpers import ServerProcess, pid_alive, server_process, wait_for
from prefork.rpc.rpcbind import Mapping, Rpcbind

PORT = 7311
BIND = ("-b", f"127.0.0.1:{PORT}", "-b", f"udp://127.0.0.1:{PORT}")
EVERY = {(v, proto, PORT) for v in (1, 2, 3) for proto in ("tcp", "udp")}


def serve(space: Namespace, *extra: str) -> ServerProcess:
    return ServerProcess("serve", "apps.rpc_calc:Calc", *BIND, "-w", "2", *extra,
                         launcher=space.launcher, env={"PYTHONPATH": "tests"})


def test_registered_on_tcp_and_udp_until_term(namespace: Namespace) -> None:
    server = serve(namespace)
    try:
        server.wait_line(r"rpcbind: registered")
        server.wait_workers(2)
        assert namespace.mapped(PROG) == EVERY
        for flag in ("-t", "-u"):  # found through rpcbind: no port given
            done = namespace.rpcinfo(flag, "127.0.0.1", str(PROG), "2")
            assert done.stdout.strip() == f"program {PROG} version 2 ready and waiting", done
            wrong = namespace.rpcinfo(flag, "127.0.0.1", str(PROG), "7")
            assert wrong.returncode == 1
            assert "low version = 1, high version = 3" in wrong.stderr
        server.stop_ok()
        assert namespace.mapped(PROG) == set()
    finally:
        server.cleanup()


def test_no_rpcbind_registers_nothing(namespace: Namespace) -> None:
    with server_process("serve", "apps.rpc_calc:Calc", *BIND, "-w", "1", "--no-rpcbind",
                        launcher=namespace.launcher, env={"PYTHONPATH": "tests"}) as server:
        server.wait_workers(1)
        assert namespace.mapped(PROG) == set()
        done = namespace.rpcinfo("-a", f"127.0.0.1.{PORT >> 8}.{PORT & 0xFF}", "-T", "tcp",
                                 str(PROG), "1")
        assert done.returncode == 0, done.stderr  # served all the same
        server.stop_ok()


def test_an_upgrade_keeps_the_registration(namespace: Namespace) -> None:
    """USR2: the new master registers the same sockets (rpcbind says yes: the same address);
    the old master retiring leaves them; the new one's TERM removes them."""
    server = serve(namespace)
    new_master = 0
    try:
        server.wait_line(r"rpcbind: registered")
        server.wait_workers(2)
        server.signal(signal.SIGUSR2)
        new_master = int(server.wait_line(r"upgrade: started new master \(pid (\d+)\)")
                         .group(1))
        assert server.wait(timeout=30) == 0  # the old master retired
        assert namespace.mapped(PROG) == EVERY
        done = namespace.rpcinfo("-t", "127.0.0.1", str(PROG), "1")
        assert done.returncode == 0, done.stderr
        assert pid_alive(new_master)
        namespace.run("kill", "-TERM", str(new_master))
        wait_for(lambda: not pid_alive(new_master), timeout=30, what="the new master to stop")
        assert namespace.mapped(PROG) == set()
    finally:
        server.cleanup()
        if new_master and pid_alive(new_master):
            os.kill(new_master, signal.SIGKILL)


def test_portmapper_version_2(namespace: Namespace) -> None:
    """PMAPPROC_SET and UNSET (version 2), as an old portmapper would be asked."""
    script = (
        "from prefork.rpc.rpcbind import Mapping, Rpcbind\n"
        "r = Rpcbind()\n"
        f"m = Mapping({PROG}, 5, 'udp', '0.0.0.0', 4321)\n"
        "print(r.register(m, versions=(2,)))\n"
    )
    done = namespace.run(sys.executable, "-c", script)
    assert done.stdout.strip() == "(2, True)", done.stderr
    assert namespace.mapped(PROG) == {(5, "udp", 4321)}
    undone = namespace.run(sys.executable, "-c", script.replace(
        "print(r.register(m, versions=(2,)))", "print(r.unregister(2, m))"))
    assert undone.stdout.strip() == "True", undone.stderr
    assert namespace.mapped(PROG) == set()


def test_the_universal_address() -> None:
    assert Mapping(PROG, 1, "tcp", "127.0.0.1", 7311).universal_address() == "127.0.0.1.28.143"
    six = Mapping(PROG, 1, "udp", "::1", 2049)
    assert (six.netid(), six.universal_address()) == ("udp6", "::1.8.1")
    assert Rpcbind().change(2, 1, six) is None  # version 2 cannot say IPv6
