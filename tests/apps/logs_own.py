"""A WSGI app that configures logging for itself, as apps do: its logger ``myapp`` has a
handler of its own (propagating, the default).  ``/logged`` logs an exception through it,
``/raise`` raises (prefork logs that), ``/plain`` warns on a logger nobody configured,
``/print`` writes to stdout, to wsgi.errors and to fd 2 (for --capture-output); each line
carries the query string, so a test can tell requests apart."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

handler = logging.StreamHandler(sys.stderr)
handler.setFormatter(logging.Formatter("MYAPP %(levelname)s %(message)s"))
applog = logging.getLogger("myapp")
applog.addHandler(handler)
applog.setLevel(logging.INFO)


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    path, mark = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/logged":
        try:
            raise ValueError(f"handled {mark}")
        except ValueError:
            applog.exception("the app caught %s", mark)
    elif path == "/raise":
        raise RuntimeError(f"unhandled {mark}")
    elif path == "/plain":
        logging.getLogger("plain").warning("plain warning %s", mark)
    elif path == "/print":
        print(f"printed {mark}", flush=True)
        environ["wsgi.errors"].write(f"wsgi.errors {mark}\n")
        environ["wsgi.errors"].flush()
        os.write(2, f"fd2 {mark}\n".encode())
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
