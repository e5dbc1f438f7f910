"""A CPU-bound HTTP service: a few milliseconds of pure-Python work per request.

``prefork serve workers.cpu:Burn``; ``GET /?n=20000`` sets the amount of work (default below).
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

DEFAULT_N = 10_000  # about 4 ms of pure Python on this 2-core machine


def burn(n: int) -> int:
    """Pure-Python work that holds the GIL: a sum of integer square roots by Newton steps."""
    total = 0
    for i in range(1, n):
        x = i
        y = (x + 1) // 2
        while y < x:
            x, y = y, (y + i // y) // 2
        total += x
    return total


def _amount(path: str) -> int:
    values = parse_qs(urlsplit(path).query).get("n")
    return max(1, min(int(values[0]), 10_000_000)) if values and values[0].isdigit() else DEFAULT_N


class Burn(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{burn(_amount(self.path))}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def wsgi_app(environ: dict[str, str], start_response: object) -> list[bytes]:
    """The same work as a WSGI app (gunicorn in the benchmark)."""
    body = f"{burn(_amount('?' + environ.get('QUERY_STRING', '')))}\n".encode()
    start_response(  # type: ignore[operator]
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
