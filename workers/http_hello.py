"""HTTP hello on http.server: ``prefork serve workers.http_hello:Hello``.

No access log: the benchmarks measure the server, not the terminal.  HTTP/1.1, so clients
keep their connections open (wrk does).
"""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

BODY = b"Hello, world!\n"


class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: between requests the connection waits in the
    # worker's multiplexer, not in this handler

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


def wsgi_app(environ: dict[str, object], start_response: object) -> list[bytes]:
    """The same hello as a WSGI app, for servers that speak WSGI (gunicorn in the benchmark)."""
    start_response(  # type: ignore[operator]
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
    )
    return [BODY]
