"""A service with a ~100 MB structure built at import time, for the preload benchmark.

prefork imports the handler module in the master before it forks, so the structure is shared
copy-on-write by every worker; gunicorn does the same with ``--preload`` (and without it every
worker builds its own copy).  The handler reads only ``len(TABLE)``, the access pattern of a
service that keeps a big lookup table around and touches little of it per request.

``prefork serve scripts.bench_preload:Hello``,
``gunicorn --preload scripts.bench_preload:wsgi_app``
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

ENTRIES = 540_000  # about 100 MB of Python objects with the entry below (64-bit CPython 3.11)


def build(entries: int = ENTRIES) -> list[tuple[int, str, bytes]]:
    """Many small objects, like a real lookup table, not one big bytes buffer."""
    return [(i, f"key-{i:012d}", b"v" * 32) for i in range(entries)]


TABLE = build()


def _body() -> bytes:
    return f"{len(TABLE)} entries\n".encode()


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = _body()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def wsgi_app(environ: dict[str, object], start_response: object) -> list[bytes]:
    body = _body()
    start_response(  # type: ignore[operator]
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
