"""Where an HTTP request ends, as the multiplexer sees it before the handler runs
(core/httppeek.py), and the graceful stop's request budget over TLS: each case a review found
broken (and reproduced) in the first version, checked on real processes and sockets.

* a bare-LF head whose body contains CRLF CRLF is answered (the head ends at its first empty
  line, not at the first CRLF CRLF anywhere);
* Content-Length beside Transfer-Encoding is refused at once (400), not waited for (408);
* a slow small body holds no worker whatever the Content-Length spelling the strict parser
  takes ("5, 5", zero-padded), on a new connection or a kept-alive one;
* a graceful stop over TLS answers the pipelined requests the client sent before it, also
  those still encrypted in OpenSSL or the kernel;
* empty lines before a dripped request line hold no worker, and a head of LF lines ended by
  a CRLF empty line is answered;
* a worker stopped by WINCH is bounded by graceful_timeout like any retired one.
"""

from __future__ import annotations

import contextlib
import hashlib
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import LOCAL, ROOT, server_process, wait_for

WITHIN = 1.0  # seconds an answer may take; the client timeout below is 3 s
APP = "tests.apps.wsgi_plain:application"
@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("review2-pki")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(folder / "key.pem"), "-out", str(folder / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    return str(folder / "cert.pem"), str(folder / "key.pem")


def client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.contextmanager
def wsgi(*extra: str, workers: int = 2) -> Iterator[tuple[str, int]]:
    with server_process("serve", APP, "-b", LOCAL, "-w", str(workers), "--client-timeout", "3",
                        *extra) as server:
        address = server.tcp_address()
        server.ready_workers(workers)
        yield address


def exchange(address: tuple[str, int], request: bytes, tls: bool = False,
             timeout: float = 6.0) -> tuple[float, bytes]:
    """Send ``request`` on a new connection, read until the server closes: (seconds, bytes)."""
    sock = socket.create_connection(address, timeout=timeout)
    if tls:
        sock = client_context().wrap_socket(sock)
    started = time.monotonic()
    data = b""
    with sock:
        sock.sendall(request)
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                data += chunk
    return time.monotonic() - started, data


def digest(body: bytes) -> bytes:
    return b"%d %s" % (len(body), hashlib.sha256(body).hexdigest().encode())


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_bare_lf_head_whose_body_holds_crlf_crlf_is_answered(
    tls: bool, cert: tuple[str, str]
) -> None:
    body = b"ab\r\n\r\ncd"
    request = (b"POST /echo HTTP/1.1\nHost: x\nContent-Length: %d\nConnection: close\n\n"
               % len(body)) + body
    extra = ("--certfile", cert[0], "--keyfile", cert[1]) if tls else ()
    with wsgi(*extra) as address:
        took, data = exchange(address, request, tls)
    # Before the fix: a 408 after the 3 s client timeout (request_end took the CRLF CRLF inside
    # the body for the head's end and waited for 9 more bytes).
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert data.endswith(digest(body)), data
    assert took < WITHIN, took


def test_content_length_beside_transfer_encoding_is_refused_at_once() -> None:
    request = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
               b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n")
    with wsgi() as address:
        took, data = exchange(address, request)
    # Before the fix: 408 after the 3 s client timeout (waiting for 100 body bytes that never come);
    # before the body wait: "400 Bad Request ... both Content-Length and Transfer-Encoding".
    assert data.startswith(b"HTTP/1.1 400 "), data
    assert took < WITHIN, took


@pytest.mark.parametrize("length", [b"5, 5", b"0000000000005"])
def test_a_slow_small_body_holds_no_worker_whatever_the_length_spelling(length: bytes) -> None:
    """The strict parser accepts both spellings; the body wait does not recognise them, so the
    handler gets the connection at the head and blocks reading the body."""
    with wsgi(workers=1) as address, socket.create_connection(address, timeout=10) as slow:
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                     + b"\r\n\r\nab")  # 2 of 5 bytes, then silence
        took, data = exchange(address, b"GET /hello HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n", timeout=3)
        # Before the fix: nothing within 3 s (the only worker blocks in the body read, 30 s).
        assert data.startswith(b"HTTP/1.1 200 "), (took, data)
        assert took < WITHIN, took


def test_a_tls_graceful_stop_answers_or_refuses_pipelined_requests(
    tmp_path: Path, cert: tuple[str, str]
) -> None:
    """test_mux_drain.py's promise over TLS, each request in its own TLS record."""
    pipelined = 8
    with server_process("serve", "tests.apps.slow_http:Slow", "-b", LOCAL, "-w", "1",
                        "--certfile", cert[0], "--keyfile", cert[1], cwd=tmp_path,
                        env={"PYTHONPATH": str(ROOT)}) as server:
        address = server.tcp_address()
        server.ready_workers(1)
        raw = socket.create_connection(address, timeout=15)
        with client_context().wrap_socket(raw) as client:
            for i in range(1, pipelined + 1):
                client.sendall(b"GET /r%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)  # a record each
            wait_for(lambda: "busy" in " ".join(server.workers()[0].cmdline()),
                     what="the worker busy with the first request")
            server.signal(signal.SIGTERM)
            data = b""
            with contextlib.suppress(OSError):
                while chunk := client.recv(65536):
                    data += chunk
        responses = data.split(b"HTTP/1.1 ")[1:]
        assert responses, data
        answered_all = len(responses) == pipelined
        said_close = b"connection: close" in responses[-1].lower()
        # Before the fix: 4 of 8 answered (plain TCP: 8), the last an ordinary keep-alive
        # response, then the connection closed.
        assert answered_all or said_close, (
            f"{len(responses)} of {pipelined} pipelined requests answered, and the last "
            f"response did not say close: {responses[-1]!r}")
        assert server.wait() == 0


def test_empty_lines_before_a_dripped_head_hold_no_worker() -> None:
    """(Older than the diff.)  RFC 9112 2.2 empty lines before the request line, which the
    strict parser skips, make request_end report a complete request at once."""
    with wsgi() as address:
        slow = [socket.create_connection(address, timeout=10) for _ in range(2)]
        try:
            for sock in slow:
                sock.sendall(b"\r\n\r\nGET /hello HTTP/1.1\r\n")  # and the rest never
            took, data = exchange(address, b"GET /hello HTTP/1.1\r\nHost: x\r\n"
                                  b"Connection: close\r\n\r\n", timeout=3)
            # Before the fix: nothing within 3 s: both workers block in their handlers (30 s reads).
            assert data.startswith(b"HTTP/1.1 200 "), (took, data)
            assert took < WITHIN, took
        finally:
            for sock in slow:
                sock.close()


def test_a_head_of_lf_lines_ended_by_a_crlf_blank_line_is_answered() -> None:
    """(Older than the diff.)  The strict parser reads "...\\n\\r\\n" as a complete head."""
    with wsgi() as address:
        took, data = exchange(address, b"GET /hello HTTP/1.1\nHost: x\nConnection: close\n\r\n")
    # Before the fix: 408 after the 3 s client timeout.
    assert data.startswith(b"HTTP/1.1 200 "), data
    assert took < WITHIN, took



def test_a_worker_stopped_by_winch_is_bounded_like_any_retired_one() -> None:
    """A worker paused by WINCH in a long request must not live on beside the pool TTIN starts
    again (one worker more than its size for as long as that request runs, 60 s here)."""
    with server_process("serve", "tests.apps.slow:Slow", "-b", LOCAL, "-w", "1",
                        "--graceful-timeout", "1", "--timeout", "0") as server:
        (old,) = server.ready_workers(1)
        with socket.create_connection(server.tcp_address(), timeout=10) as client:
            client.sendall(b"60\n")
            assert client.recv(100) == b"started\n"
            server.signal(signal.SIGWINCH)
            server.wait_line(r"stopping all workers", 5)
            server.signal(signal.SIGTTIN)
            server.wait_line(r"pool size 1 -> 2", 5)
            wait_for(lambda: old not in server.live(), timeout=6,
                     what="the worker stopped by WINCH gone graceful_timeout later")
            assert len(server.ready_workers(2)) == 2


@pytest.mark.parametrize("length", [b"5", b"5, 5", b"0000000000005"])
def test_a_slow_small_body_on_a_kept_alive_connection_holds_no_worker(length: bytes) -> None:
    """The same on a connection held between requests, whose next head the WSGI handler reads
    itself (mux.on_event): a head with a body is left to the multiplexer's look, which waits
    for a small body, not served at once (then the handler blocked in the body read)."""
    with wsgi(workers=1) as address, socket.create_connection(address, timeout=10) as slow:
        slow.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b"hello\n"):
            chunk = slow.recv(65536)
            assert chunk, first
            first += chunk
        slow.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: " + length
                     + b"\r\n\r\nab")  # 2 of 5 bytes, then silence
        # The worker has read them (its socket's receive queue is empty) before the next client.
        wait_for(lambda: unread(address[1], slow.getsockname()[1]) == 0, 5,
                 what="the worker reading the slow request")
        took, data = exchange(address, b"GET /hello HTTP/1.1\r\nHost: x\r\n"
                              b"Connection: close\r\n\r\n", timeout=3)
        # Before the fix: nothing within 3 s (the head was served at once, its body read in the
        # handler: the only worker waited there).
        assert data.startswith(b"HTTP/1.1 200 "), (took, data)
        assert took < WITHIN, took


def unread(port: int, peer: int) -> int:
    """The bytes waiting unread in the loopback server socket on ``port`` connected to the
    client's ``peer`` port (/proc/net/tcp's rx_queue); -1 if there is none."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
            if int(local, 16) == port and int(remote, 16) == peer:
                return int(fields[4].split(":")[1], 16)
    return -1
