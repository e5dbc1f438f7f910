"""The WSGI handler's request-head work, N times, for counting instructions under callgrind:
``valgrind --tool=callgrind python scripts/bench_head.py N PARSER`` (PARSER: httptools or
python), once with N = 2000 and once with 12000; the difference over 10 000 is one request's
head: the reader chosen and the limits read (once per connection in ``handle()``), the head read
from a buffered file.  Run with PYTHONPATH at another tree to compare two versions (a tree
without core/httplimits.py is read with the reader's old signature)."""

from __future__ import annotations

import io
import sys
from typing import Any

from prefork.apps import fasthead

try:
    from prefork.core import httplimits
except ImportError:  # a tree from before the head limits
    httplimits = None  # type: ignore[assignment]

HEAD = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\n\r\n"


def main() -> None:
    count, parser = int(sys.argv[1]), sys.argv[2]

    class Server:
        http_parser = parser

    server = Server()
    for _ in range(count):
        rfile = io.BufferedReader(io.BytesIO(HEAD))  # type: ignore[arg-type, unused-ignore]
        reader: Any = fasthead.for_server(server)
        if httplimits is not None:
            reader(rfile, httplimits.of(server))
        else:
            reader(rfile)


if __name__ == "__main__":
    main()
