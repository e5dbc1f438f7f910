"""TLS from the command (issue 10 point 5): HTTPS works, stalled handshakes delay no one, client
certificates are required with --ca-certs; and the unix-socket peer-credentials mix-in."""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import socket
import socketserver
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

import prefork
from helpers import ServerProcess, server_process

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")

HELLO = b"Hello, world!\n"
GET = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=prefork test CA", cwd=d)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"),
                      ("client", "extendedKeyUsage=clientAuth")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                 f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile",
                 f"{name}.ext", cwd=d)
    return d


def client_context(pki: Path, with_cert: bool = False) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


def https_get(address: tuple[str, int], context: ssl.SSLContext, timeout: float = 5.0,
              requests: int = 1) -> list[bytes]:
    """``requests`` GETs on one TLS connection; the body of each (Hello's is fixed-size)."""
    bodies = []
    with socket.create_connection(address, timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname=address[0]) as sock:
        reader = sock.makefile("rb")
        for _ in range(requests):
            sock.sendall(GET)
            status = reader.readline()
            assert status.split()[1] == b"200", status
            while reader.readline() not in (b"\r\n", b""):
                pass
            bodies.append(reader.read(len(HELLO)))
    return bodies


def serve_tls(pki: Path, *extra: str) -> contextlib.AbstractContextManager[ServerProcess]:
    return server_process(
        "serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0", "-w", "2",
        "--certfile", str(pki / "server.pem"), "--keyfile", str(pki / "server.key"), *extra)


def test_https_with_keep_alive(pki: Path) -> None:
    with serve_tls(pki) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        assert https_get(address, client_context(pki), requests=3) == [HELLO] * 3


def test_stalled_handshakes_delay_no_one(pki: Path) -> None:
    with serve_tls(pki) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        stalled = [socket.create_connection(address, timeout=10) for _ in range(8)]
        try:
            for sock in stalled:  # the first bytes of a ClientHello record, then nothing
                sock.sendall(b"\x16\x03\x01\x02\x00\x01")
            context = client_context(pki)
            for _ in range(10):
                started = time.monotonic()
                assert https_get(address, context, timeout=1.0) == [HELLO]
                assert time.monotonic() - started < 1.0
        finally:
            for sock in stalled:
                sock.close()


def test_client_certificates_required_with_ca_certs(pki: Path) -> None:
    with serve_tls(pki, "--ca-certs", str(pki / "ca.pem")) as server:
        address = server.tcp_address()
        server.wait_workers(2)
        assert https_get(address, client_context(pki, with_cert=True)) == [HELLO]
        # TLS 1.3: the client's handshake may finish before the server refuses its missing
        # certificate; the refusal then arrives as an alert, or the connection just ends.
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError, IndexError)):
            https_get(address, client_context(pki))


def test_bad_certificate_files_are_one_clear_line(tmp_path: Path) -> None:
    with server_process("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0",
                        "--certfile", str(tmp_path / "missing.pem")) as server:
        assert server.wait(timeout=15) != 0
        assert "TLS: cannot load the certificate files" in server.text()
        assert "Traceback" not in server.text()


class _Pid(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


class _PeerServer(prefork.PeerCredMixIn, prefork.PreforkMixIn, socketserver.UnixStreamServer):
    pass


@pytest.mark.parametrize("admitted", [True, False])
def test_peer_credentials(tmp_path: Path, admitted: bool) -> None:
    path = str(tmp_path / "peer.sock")
    uid = os.geteuid() if admitted else os.geteuid() + 12345

    class Server(_PeerServer):
        allowed_uids = frozenset({uid})

    server = Server(path, _Pid, workers=1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            try:
                while chunk := sock.recv(4096):
                    data += chunk
            except ConnectionResetError:  # refused: closed with the request unread
                assert not admitted
        assert data.endswith(b"ok") if admitted else data == b""
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
