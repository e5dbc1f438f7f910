"""``wsgi.file_wrapper`` (issue 18 point 5): a file body goes out with ``sendfile`` on plain
TCP (seen with strace), byte-equal whatever the framing (chunked, the file's length, a shorter
declared length, a position the app read to, HTTP/1.0), and read-and-written byte-equal where
sendfile cannot be used: under TLS, from a pipe or BytesIO, behind a middleware's iterable.
Flask's ``send_file`` takes the same way."""

from __future__ import annotations

import http.client
import re
import shutil
import socket
import ssl
from pathlib import Path

import pytest

from helpers import LOCAL, server_process

SIZE = 20 * 1000 * 1000
APP = "tests.apps.files:application"


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A 20 MB file of bytes that repeat with no short period (a shifted copy would differ)."""
    data = bytes(range(251)) * (SIZE // 251) + bytes(SIZE % 251)
    path = tmp_path_factory.mktemp("files") / "big.bin"
    path.write_bytes(data)
    return path, data


def get(conn: http.client.HTTPConnection, target: str,
        method: str = "GET") -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, target)
    response = conn.getresponse()
    return response, response.read()


def test_file_bodies_are_byte_equal_on_one_connection(big: tuple[Path, bytes]) -> None:
    path, data = big
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        host, port = server.tcp_address()
        server.wait_workers(1)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:  # every response leaves the kept-alive connection usable for the next one
            response, body = get(conn, f"/file?{path}")
            assert response.getheader("Transfer-Encoding") == "chunked"
            assert body == data
            response, body = get(conn, f"/sized?{path}")
            assert response.getheader("Content-Length") == str(SIZE) and body == data
            response, body = get(conn, f"/first?1000,{path}")  # exactly the declared length
            assert response.getheader("Content-Length") == "1000" and body == data[:1000]
            assert get(conn, f"/from?1000,{path}")[1] == data[1000:]
            response, body = get(conn, f"/file?{path}", method="HEAD")
            assert response.status == 200 and body == b""
            assert get(conn, f"/wrapped?{path}")[1] == data
            assert get(conn, f"/pipe?{path}")[1] == data
            assert get(conn, "/bytesio?70000")[1] == b"x" * 70000
            assert not response.will_close
        finally:
            conn.close()
        with socket.create_connection((host, port), timeout=30) as sock:  # HTTP/1.0: no chunks
            sock.sendall(f"GET /file?{path} HTTP/1.0\r\n\r\n".encode())
            reply = b"".join(iter(lambda: sock.recv(1 << 20), b""))
        head, _, body = reply.partition(b"\r\n\r\n")
        assert b"chunked" not in head and body == data


def test_file_bodies_are_byte_equal_under_tls(big: tuple[Path, bytes], pki: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command")
    path, data = big
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--certfile",
                        str(pki / "server.pem"), "--keyfile", str(pki / "server.key")) as server:
        host, port = server.tcp_address()
        server.wait_workers(1)
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        conn = http.client.HTTPSConnection(host, port, timeout=30, context=context)
        try:
            assert get(conn, f"/file?{path}")[1] == data
            assert get(conn, f"/sized?{path}")[1] == data
            assert get(conn, f"/first?1000,{path}")[1] == data[:1000]
            assert get(conn, f"/from?1000,{path}")[1] == data[1000:]
        finally:
            conn.close()


def traced_calls(trace: Path) -> dict[str, int]:
    """How many sendfile, sendto and write calls the strace log shows, by name."""
    counts = {"sendfile": 0, "sendto": 0, "write": 0}
    for line in trace.read_text().splitlines():
        match = re.match(r"(?:\[pid +\d+\] |\d+ +)?(\w+)\(", line)
        if match and match.group(1) in counts:
            counts[match.group(1)] += 1
    return counts


@pytest.mark.parametrize(("app", "target"), [
    (APP, "/sized?{}"), (APP, "/file?{}"), ("tests.apps.flask_app:app", "/download?{}")])
def test_plain_tcp_sends_the_file_with_sendfile(big: tuple[Path, bytes], tmp_path: Path,
                                                app: str, target: str) -> None:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("no strace command")
    path, data = big
    trace = tmp_path / "trace"
    launcher = [strace, "-f", "-qq", "-e", "trace=sendfile,sendto,write", "-o", str(trace)]
    with server_process("serve", app, "-b", LOCAL, "-w", "1", launcher=launcher) as server:
        host, port = server.tcp_address(timeout=30)
        server.wait_line(r"worker \d+ \(pid \d+\) ready", 30)  # (strace is the parent)
        before = traced_calls(trace)
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            assert get(conn, target.format(path))[1] == data
        finally:
            conn.close()
        after = traced_calls(trace)
    calls = {name: after[name] - before[name] for name in after}
    if calls["sendfile"] == 0 and calls["sendto"] == 0:
        pytest.skip("strace saw no calls (ptrace not permitted here?)")
    # The head (and a chunk's framing) by sendto; 20 MB by a few sendfile calls, not 2 442
    # sendto calls of 8 KiB as before.
    assert calls["sendfile"] >= 1, calls
    assert calls["sendto"] + calls["write"] <= 10, calls
