"""The TLS context is built by the master, at start and for each new generation (core/tls.py
``TLSMixIn.tls_load``): a key only root may read serves with ``--user``, a session resumes on
another worker, renewed certificate files are served after HUP, and a reload whose files do not
load is refused while the old generation keeps serving."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import server_process, wait_for

PID_APP = "tests.apps.wsgi_plain:application"  # GET /pid answers the worker's pid


def client(pki: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the session is known after the handshake
    return context


def get(address: tuple[str, int], context: ssl.SSLContext, session: ssl.SSLSession | None = None
        ) -> tuple[bytes, ssl.SSLSession | None, bool]:
    """GET /pid on a new TLS connection: (the body, its TLS session, whether it resumed one)."""
    with socket.create_connection(address, timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=address[0], session=session) as sock:
        sock.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        facts = sock.session, sock.session_reused
    assert data.startswith(b"HTTP/1.1 200 "), data
    return data.rpartition(b"\r\n\r\n")[2], *facts


def peer_serial(address: tuple[str, int], context: ssl.SSLContext) -> str:
    with socket.create_connection(address, timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=address[0]) as sock:
        certificate = sock.getpeercert()
    assert certificate is not None
    return str(certificate["serialNumber"])


def tls_args(cert: Path, key: Path) -> tuple[str, ...]:
    return ("--certfile", str(cert), "--keyfile", str(key))


def test_a_key_only_root_may_read_serves_with_user(pki: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (the master reads the key, the workers run as nobody)")
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    key = tmp_path / "server.key"
    shutil.copy(pki / "server.key", key)
    key.chmod(0o600)
    group = grp.getgrgid(nobody.pw_gid).gr_name
    with server_process("serve", PID_APP, "-b", "127.0.0.1:0", "-w", "2", "--user", "nobody",
                        "--group", group, *tls_args(pki / "server.pem", key)) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        pid, _, _ = get(address, client(pki))
        assert pwd.getpwuid(os.stat(f"/proc/{int(pid)}").st_uid).pw_name == "nobody"


def test_a_session_resumes_on_another_worker(pki: Path) -> None:
    with server_process("serve", PID_APP, "-b", "127.0.0.1:0", "-w", "2",
                        *tls_args(pki / "server.pem", pki / "server.key")) as server:
        address = server.tcp_address()
        server.ready_workers(2)
        context = client(pki)
        first, session, _ = get(address, context)
        assert session is not None
        # The worker that issued the ticket goes; its replacement and the other one remain.
        os.kill(int(first), signal.SIGKILL)
        wait_for(lambda: int(first) not in server.ready_workers(2), what="a replacement")
        pid, _, reused = get(address, context, session)
        assert pid != first
        assert reused  # the ticket keys are the ones every worker was forked with


def test_renewed_files_are_served_after_hup_and_broken_ones_refused(
    pki: Path, tmp_path: Path, server_certificate: Callable[[Path, str], tuple[Path, Path]]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    shutil.copy(pki / "server.pem", cert)
    shutil.copy(pki / "server.key", key)
    with server_process("serve", PID_APP, "-b", "127.0.0.1:0", "-w", "2",
                        *tls_args(cert, key)) as server:
        address = server.tcp_address()
        old = server.ready_workers(2)
        context = client(pki)
        before = peer_serial(address, context)
        renewed_cert, renewed_key = server_certificate(pki, "renewed")
        shutil.copy(renewed_cert, cert)
        shutil.copy(renewed_key, key)
        server.reload(2)
        # A retiring worker woken just before its TERM may still take one connection.
        wait_for(lambda: not old & server.live(), what="generation 1 gone")
        after = peer_serial(address, context)
        assert after != before
        cert.write_text("not a certificate\n")
        start = server.mark()
        server.signal(signal.SIGHUP)
        server.wait_line(r"TLS: cannot load the certificate files", 10, start)
        assert peer_serial(address, context) == after  # generation 2 goes on serving
