"""The stdlib contract: each handler shape served by the pool answers exactly what the same
handler answers under ``socketserver.ThreadingMixIn`` (the reference) -- same bytes, same close.

Both run as real processes (``served.py``); the client sends raw bytes and reads until the
server closes.  Only the ``Date:`` header, which carries the clock, is blanked before comparing.
"""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pytest
from harness import MODES, both, served

from helpers import ROOT, http_get, server_process


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "hello.txt").write_bytes(b"hello from the directory\n")
    return tmp_path


KEPT = (b"GET /hello.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")


def test_partial_of_simple_http_handler_serves_the_directory(folder: Path) -> None:
    answers = both("partial", folder, KEPT)
    assert answers["prefork"] == answers["thread"]
    assert answers["prefork"].count(b"hello from the directory\n") == 2


@pytest.mark.parametrize("shape", ["lambda", "instance"])
def test_callable_factories(shape: str, folder: Path) -> None:
    answers = both(shape, folder, b"one\ntwo\n", half_close=True)
    assert answers["prefork"] == answers["thread"] == b"echo one\necho two\n"


def test_http_handler_with_its_own_handle_runs_it(folder: Path) -> None:
    answers = both("own-handle", folder, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
                   b"GET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert answers["prefork"] == answers["thread"]
    assert answers["prefork"].startswith(b"banner\r\n")
    assert answers["prefork"].count(b"banner") == 1  # one connection, one handle()
    assert answers["prefork"].endswith(b"got /b")


@pytest.mark.parametrize("shape", ["wsgiref", "wsgiref-prefork-class"])
def test_wsgiref_handler(shape: str, folder: Path) -> None:
    answers = both(shape, folder, b"GET /x HTTP/1.0\r\n\r\n")
    assert answers["prefork"] == answers["thread"]
    assert answers["prefork"].startswith(b"HTTP/1.0 200 OK\r\n")
    assert answers["prefork"].endswith(b"GET /x")


def test_wsgiref_cp1252_request_line_is_the_handlers(folder: Path) -> None:
    answers = both("wsgiref", folder, b"GET /\x80 HTTP/1.0\r\n\r\n")
    assert answers["prefork"] == answers["thread"]
    assert answers["prefork"].startswith(b"HTTP/1.0 200 OK\r\n")


def test_wsgiref_long_request_line_gets_the_handlers_414(folder: Path) -> None:
    line = b"GET /" + b"a" * (65537 - 5)  # what readline(65537) takes in full: no RST
    answers = both("wsgiref", folder, line)
    assert answers["prefork"] == answers["thread"]
    assert answers["prefork"].startswith(b"HTTP/1.0 414 ")


def test_xmlrpc_keep_alive(folder: Path) -> None:
    results = {}
    for mode in MODES:
        with served(mode, "xmlrpc", folder) as port:
            proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}/")
            with proxy:
                sums = [proxy.add(n, 1) for n in range(3)]
                pids = {proxy.pid() for _ in range(3)}
                connections = proxy.connections()
            results[mode] = sums, len(pids), connections
    # Seven calls on one kept-alive connection: one handle() call.
    assert results["prefork"] == results["thread"] == ([1, 2, 3], 1, 1)


PARTIAL_APP = """\
import functools
import http.server
import pathlib

class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

handler = functools.partial(Quiet, directory=str(pathlib.Path(__file__).parent / "site"))
"""


@pytest.mark.parametrize("mode", ["prefork", "thread"])
def test_cli_takes_a_partial_for_a_handler(mode: str, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "page.txt").write_bytes(b"a page\n")
    (tmp_path / "partialapp.py").write_text(PARTIAL_APP)
    args = ["serve", "partialapp:handler", "--bind", "127.0.0.1:0", "--mode", mode]
    if mode == "prefork":
        args += ["--workers", "1"]
    with server_process(*args, cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}) as srv:
        host, port = srv.tcp_address()
        assert http_get(host, port, "/page.txt") == (200, b"a page\n")
