"""A slice of the grammar's "refused and closed, the pipelined request never served" rows
(test_matrix.py, test_rules.py) over TLS, with both head parsers: the head arrives through the
multiplexer's TLS read-ahead instead of a peek, so each shape of issue 17 is checked on that
path too, and a few accepted rows so that the slice sees both answers."""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from tests.helpers import LOCAL, server_process
from tests.http_grammar.conftest import SECOND, responses

HEAD = b"POST /first HTTP/1.1\r\nHost: h\r\n"
TE = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"
CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"

REFUSED = [  # issue 17's shapes, and the classic ones, over TLS
    *(HEAD + b"Transfer-Encoding: chunked" + bytes([c]) + b"\r\n\r\n" + CHUNKS
      for c in (0x0B, 0x0C, 0x1C, 0x1F, 0x85, 0xA0)),
    HEAD + b"Content-Length: 5\x0b\r\n\r\nhello",
    HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" + CHUNKS,  # CL.TE
    HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n" + CHUNKS,  # TE.CL
    HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n" + CHUNKS,
    HEAD + b"Content-Length: +5\r\n\r\nhello",
    TE + b"5\nhello\n0\n\n",
    TE + b"5;a\nhello\r\n0\r\n\r\n",  # an LF inside an extension
    TE + b"5;a\rb\r\nhello\r\n0\r\n\r\n",  # a bare CR inside an extension
    TE + b"5\r\nhello\r\n0\r\nX: a\rb\r\n\r\n",  # ... inside a trailer
    TE + b"5 \r\nhello\r\n0\r\n\r\n",
    TE + b"5;a\x01\r\nhello\r\n0\r\n\r\n",  # a control byte in an extension
    TE + b"0x5\r\nhello\r\n0\r\n\r\n",
    TE + b"0000000000000000a\r\nhello\r\n0\r\n\r\n",  # 17 hex digits
    b"GET /first HTTP/1.1\r\nHost: p\r\nHost: evil.example\r\n\r\n",
    b"GET /first HTTP/1.1\r\nHost: evil@p/x\r\n\r\n",
    b"GET /first HTTP/1.1\r\nX: a\x00b\r\nHost: p\r\n\r\n",
    b"GET /fi\x00rst HTTP/1.1\r\nHost: p\r\n\r\n",  # NUL in the target
    b"GET /first HTTP/1.1\r\nHost: p\r\nX: a\x7fb\r\n\r\n",  # DEL in a value
]
ACCEPTED = [
    (TE + CHUNKS, "hello"),
    (HEAD + b"Content-Length: 5\r\n\r\nhello", "hello"),
    (TE + b"5;a=b\r\nhello\r\n0\r\nX: t\r\n\r\n", "hello"),
]


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("grammar-tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(folder / "key.pem"), "-out", str(folder / "cert.pem"), "-days", "2",
                    "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    return str(folder / "cert.pem"), str(folder / "key.pem")


@pytest.fixture(scope="module", params=["python", "auto", "httptools"])
def tls_address(request: pytest.FixtureRequest,
                cert: tuple[str, str]) -> Iterator[tuple[str, int]]:
    if request.param == "httptools" and importlib.util.find_spec("httptools") is None:
        pytest.skip("httptools is not installed")
    with server_process("serve", "tests.apps.grammar_echo:application", "-b", LOCAL, "-w", "1",
                        "--http-parser", request.param, "--certfile", cert[0],
                        "--keyfile", cert[1]) as server:
        where = server.tcp_address()
        server.wait_workers(1)
        yield where


def tls_exchange(address: tuple[str, int], raw: bytes) -> bytes:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with context.wrap_socket(socket.create_connection(address, timeout=10)) as sock:
        sock.sendall(raw)
        data = b""
        with contextlib.suppress(ConnectionResetError, ssl.SSLError):
            while chunk := sock.recv(65536):
                data += chunk
    return data


@pytest.mark.parametrize("raw", REFUSED, ids=range(len(REFUSED)))
def test_refused_and_closed_over_tls(tls_address: tuple[str, int], raw: bytes) -> None:
    got = responses(tls_exchange(tls_address, raw + SECOND))
    assert [status for status, _ in got] == [400], got


@pytest.mark.parametrize(("raw", "body"), ACCEPTED, ids=range(len(ACCEPTED)))
def test_accepted_over_tls(tls_address: tuple[str, int], raw: bytes, body: str) -> None:
    got = responses(tls_exchange(tls_address, raw + SECOND))
    assert [status for status, _ in got] == [200, 200], got
    first, second = got[0][1], got[1][1]
    assert first is not None and first["body"] == body and first["path"] == "/first", got
    assert second is not None and second["path"] == "/second", got
