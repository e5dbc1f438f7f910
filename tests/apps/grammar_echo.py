"""A WSGI app for the HTTP grammar tests (tests/http_grammar/): it reads the whole body first,
then answers with what it saw, as JSON: the method, PATH_INFO, QUERY_STRING, REQUEST_URI, HTTP_HOST,
CONTENT_LENGTH (or null) and the body (latin-1)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"],
        "uri": environ.get("REQUEST_URI"),
        "host": environ.get("HTTP_HOST"),
        "length": environ.get("CONTENT_LENGTH"),
        "body": body.decode("latin-1"),
    }
    out = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(out)))])
    return [out]
