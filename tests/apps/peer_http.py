"""An ``http.server`` handler answering with its ``client_address`` and ``peer_address`` as
JSON (HTTP/1.1, keep-alive): the proxy-header and PROXY-protocol tests read it."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler


class Peer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        peer = getattr(self, "peer_address", None)
        body = json.dumps({"client_address": list(self.client_address),
                           "peer_address": list(peer) if peer else None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
