"""prefork/apps/wsgi.py and response.py in process: the WSGI handler under the stdlib's
threading and sync servers, spoken to over real sockets."""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import prefork
from helpers import wait_for
from prefork.apps.wsgi import wsgi_handler
from tests.apps.wsgi_plain import application, digest

Environ = dict[str, Any]

pytestmark = pytest.mark.usefixtures("head_parser")  # every test with both parsers (conftest.py)


@contextlib.contextmanager
def serving(app: Any, base: type[socketserver.BaseServer] = socketserver.ThreadingTCPServer,
            address: Any = ("127.0.0.1", 0)) -> Iterator[Any]:
    server: Any = base(address, wsgi_handler(app))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def exchange(address: tuple[str, int], raw: bytes) -> bytes:
    """Send ``raw``, read until the server closes."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def get_environ(address: tuple[str, int], path: str, **kwargs: Any) -> Environ:
    conn = http.client.HTTPConnection(*address, timeout=10)
    conn.request("POST", path, **kwargs)
    response = conn.getresponse()
    assert response.status == 200
    environ: Environ = json.loads(response.read())
    conn.close()
    return environ


def test_environ_follows_pep_3333() -> None:
    with serving(application) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.putrequest("POST", "/environ/a%20b%C3%A9%2Fc?x=1&y=%20")
        for name, value in [("X-Dup", "1"), ("X-Dup", "2"), ("Cookie", "a=1"),
                            ("Cookie", "b=2"), ("Content-Type", "text/plain"),
                            ("Content-Length", "4"), ("X_Sneaky", "no")]:
            conn.putheader(name, value)
        conn.endheaders(b"data")
        environ = json.loads(conn.getresponse().read())
        local_port = conn.sock.getsockname()[1]
        conn.close()
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["SCRIPT_NAME"] == ""
    # Percent-decoded bytes, as latin-1 (so the UTF-8 é is two characters).
    assert environ["PATH_INFO"] == "/environ/a b\u00c3\u00a9/c"
    assert environ["QUERY_STRING"] == "x=1&y=%20"
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", str(address[1]))
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("127.0.0.1", str(local_port))
    assert environ["HTTP_X_DUP"] == "1, 2"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_HOST"] == f"127.0.0.1:{address[1]}"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("text/plain", "4")
    assert "HTTP_X_SNEAKY" not in environ and "HTTP_CONTENT_LENGTH" not in environ
    assert environ["input"] == "data"
    assert environ["wsgi.version"] == [1, 0]
    assert environ["wsgi.url_scheme"] == "http"
    assert environ["wsgi.multithread"] is True
    assert environ["wsgi.multiprocess"] is False
    assert environ["wsgi.run_once"] is False
    assert environ["wsgi.input_terminated"] is True


def test_chunked_body_arrives_decoded_with_its_length() -> None:
    pieces = [b"a" * 1000, b"b" * 70000, b"c"]
    with serving(application) as address:
        environ = get_environ(address, "/environ", body=iter(pieces), encode_chunked=True,
                              headers={"Transfer-Encoding": "chunked"})
    assert environ["input"] == b"".join(pieces).decode()
    assert environ["CONTENT_LENGTH"] == "71001"


def test_content_length_and_transfer_encoding_together_are_refused() -> None:
    with serving(application) as address:
        reply = exchange(address, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /hello HTTP/1.1\r\n"
                         b"Host: x\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in reply
    assert b"hello" not in reply  # the smuggled request was not served


def test_head_has_the_headers_of_get_and_no_body() -> None:
    with serving(application) as address:
        reply = exchange(address, b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    first, second = reply.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert b"Content-Length: 6\r\n" in first and first.endswith(b"\r\n\r\n")
    assert second.endswith(b"\r\n\r\nhello\n")


def test_http10_client_gets_the_response_and_the_close() -> None:
    with serving(application) as address:
        reply = exchange(address, b"GET /hello HTTP/1.0\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close\r\n" in reply and reply.endswith(b"\r\n\r\nhello\n")


def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    with serving(application) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        ports = []
        for _ in range(2):
            conn.request("GET", "/environ")
            ports.append(json.loads(conn.getresponse().read())["REMOTE_PORT"])
        conn.close()
    assert ports[0] == ports[1]


def test_sync_server_closes_after_each_response() -> None:
    with serving(application, socketserver.TCPServer) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", "/hello")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"hello\n")
        assert response.getheader("Connection") == "close"
        conn.close()


def test_streamed_chunks_arrive_before_the_app_finishes() -> None:
    gates = [threading.Event() for _ in range(3)]
    finished = threading.Event()

    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for n, gate in enumerate(gates):
            yield b"chunk %d\n" % n
            gate.wait(10)
        finished.set()

    with serving(app) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        for n, gate in enumerate(gates):
            assert response.readline() == b"chunk %d\n" % n
            assert not finished.is_set()
            gate.set()
        assert response.read() == b""
        assert finished.wait(10)
        conn.close()


def test_app_error_is_500_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "prefork.wsgi"), serving(application) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", "/fail")
        response = conn.getresponse()
        assert response.status == 500 and response.getheader("Connection") == "close"
        response.read()
        conn.close()
    errors = [r for r in caplog.records if r.exc_info]
    assert len(errors) == 1 and "GET /fail" in errors[0].getMessage()


def test_app_error_after_the_head_closes_the_connection() -> None:
    def app(environ: Environ, start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("late")

    with serving(app) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()


def test_start_response_with_exc_info_replaces_the_head() -> None:
    def app(environ: Environ, start_response: Any) -> list[bytes]:
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("changed my mind")
        except ValueError:
            start_response("503 Busy", [("X-Second", "1")], sys.exc_info())
        return [b"later"]

    with serving(app) as address:
        conn = http.client.HTTPConnection(*address, timeout=10)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert (response.status, response.read()) == (503, b"later")
        assert response.getheader("X-Second") == "1" and response.getheader("X-First") is None
        conn.close()


def test_expect_continue_is_answered_on_first_read() -> None:
    with serving(application) as address, socket.create_connection(address, 10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                     b"Expect: 100-continue\r\nConnection: close\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(digest(b"abc"))


def test_bounded_head_and_bad_requests() -> None:
    with serving(application) as address:
        assert exchange(address, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n").startswith(
            b"HTTP/1.1 414 ")
        assert exchange(address, b"GET / HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")\
            .startswith(b"HTTP/1.1 431 ")
        assert exchange(address, b"GET / HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")  # Host


def test_unix_socket_peer(tmp_path: Path) -> None:
    class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        pass

    path = str(tmp_path / "s")
    with serving(application, Server, path), socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(b"GET /environ HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    environ = json.loads(reply.partition(b"\r\n\r\n")[2])
    assert (environ["REMOTE_ADDR"], environ["SERVER_NAME"]) == ("127.0.0.1", "localhost")


def test_prefork_wsgi_server_library_route() -> None:
    server = prefork.PreforkWSGIServer(("127.0.0.1", 0), app=application, workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        # Connect once both workers are forked: a client socket made in this process (the
        # master) before a fork would be inherited by the worker, and stay open after close().
        wait_for(lambda: len(psutil.Process().children()) == 2, what="two workers")
        conn = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
        conn.request("POST", "/echo", body=iter([b"x" * 5000, b"y"]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert (response.status, response.version) == (200, 11)
        assert response.read() == digest(b"x" * 5000 + b"y")
        conn.request("GET", "/environ")
        assert json.loads(conn.getresponse().read())["wsgi.multiprocess"] is True
        conn.close()
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()
