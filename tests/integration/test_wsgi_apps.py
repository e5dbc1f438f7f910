"""WSGI applications served by ``prefork serve`` as real processes: a plain callable, a
factory, a Flask app and a Django app, each answering GET, 404, a 70 KB POST body and a chunked
POST body, through http.client (and curl when installed); the plain app also under the
thread and sync modes, and streaming through the pool."""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import LOCAL, server_process

BODY = bytes(range(256)) * 280  # 71 680 bytes
APPS = [
    "tests.apps.wsgi_plain:application",
    "tests.apps.wsgi_plain:make_app()",
    "tests.apps.flask_app:app",
    "tests.apps.django_app:application",
]


def digest(body: bytes) -> bytes:
    return f"{len(body)} {hashlib.sha256(body).hexdigest()}".encode()


def check_app(host: str, port: int) -> None:
    """The four cases, on one kept-alive connection when the mode allows it."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/hello")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"hello\n")
        conn.request("GET", "/no/such/page")
        response = conn.getresponse()
        assert response.status == 404
        response.read()
        conn.request("POST", "/echo", body=BODY, headers={"Content-Type": "application/x"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, digest(BODY))
        pieces = [BODY[i:i + 10000] for i in range(0, len(BODY), 10000)]
        conn.request("POST", "/echo", body=iter(pieces), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked", "Content-Type": "application/x"})
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, digest(BODY))
    finally:
        conn.close()


def curl(*args: str) -> str:
    out = subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                         text=True, check=True)
    return out.stdout


@pytest.mark.parametrize("app", APPS)
def test_app_serves_get_404_post_and_chunked(app: str, tmp_path: Path) -> None:
    with server_process("serve", app, "-b", LOCAL, "-w", "2") as server:
        host, port = server.tcp_address()
        server.wait_workers(2)
        check_app(host, port)
        if shutil.which("curl"):
            url = f"http://{host}:{port}"
            payload = tmp_path / "body"
            payload.write_bytes(BODY)
            assert curl(f"{url}/hello") == "hello\n"
            assert curl("-o", "/dev/null", "-w", "%{http_code}", f"{url}/nope") == "404"
            assert curl("--data-binary", f"@{payload}", f"{url}/echo") == digest(BODY).decode()
            assert curl("--data-binary", f"@{payload}", "-H", "Transfer-Encoding: chunked",
                        f"{url}/echo") == digest(BODY).decode()
        server.stop_ok()


@pytest.mark.parametrize("mode", ["thread", "sync", "fork"])
def test_wsgi_handler_in_the_stdlib_modes(mode: str) -> None:
    with server_process("serve", "tests.apps.wsgi_plain:application", "-b", LOCAL,
                        "--mode", mode) as server:
        check_app(*server.tcp_address())
        server.stop_ok()


def test_streaming_through_the_pool(tmp_path: Path) -> None:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    with server_process("serve", "tests.apps.wsgi_plain:application", "-b", LOCAL,
                        "-w", "1") as server:
        conn = http.client.HTTPConnection(*server.tcp_address(), timeout=10)
        conn.request("GET", f"/stream?{fifo}")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        # Each chunk arrives while the app still waits for the next line on the fifo.
        assert response.readline() == b"chunk 0\n"
        with open(fifo, "wb", buffering=0) as gate:
            for n in (1, 2):
                gate.write(b"go\n")
                assert response.readline() == b"chunk %d\n" % n
            gate.write(b"go\n")
            assert response.read() == b"end\n"
        conn.close()
        server.stop_ok()


def test_flask_app_is_not_a_handler_class_no_more() -> None:
    """The message users got for a Flask app before, and what a wrong object says now."""
    proc = subprocess.run(
        [sys.executable, "-m", "prefork", "serve", "tests.apps.flask_app:hello", "-b", LOCAL],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": "."},
    )
    assert proc.returncode == 2
    assert "hello is not a WSGI callable: it takes no arguments" in proc.stderr
