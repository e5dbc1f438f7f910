"""The access log (issue 18 point 3): --access-logfile with gunicorn's default line, a custom
--access-logformat, reopened on USR1; a bad format refused in one line."""

from __future__ import annotations

import base64
import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from helpers import LOCAL, ROOT, clean_env, server_process, wait_for

APP = "tests.apps.wsgi_plain:application"


def get(address: tuple[str, int], path: str, headers: dict[str, str]) -> int:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_the_default_line_and_a_reopen(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--access-logfile",
                        str(log)) as server:
        address = server.tcp_address()
        auth = base64.b64encode(b"alice:secret").decode()
        assert get(address, "/hello?x=1", {"User-Agent": "probe/1", "Referer": "http://r/",
                                           "Authorization": f"Basic {auth}"}) == 200
        wait_for(lambda: lines(log), what="the access line")
        (line,) = lines(log)
        assert re.fullmatch(r'127\.0\.0\.1 - alice \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                            r'"GET /hello\?x=1 HTTP/1\.1" 200 6 "http://r/" "probe/1"', line), line
        assert get(address, "/nowhere", {}) == 404
        wait_for(lambda: len(lines(log)) == 2, what="the second line")
        assert '"GET /nowhere HTTP/1.1" 404' in lines(log)[1]
        os.rename(log, tmp_path / "access.log.1")  # logrotate
        server.signal(signal.SIGUSR1)
        # Requests until one lands in the new file (USR1 reaches the worker asynchronously).
        wait_for(lambda: get(address, "/hello", {}) == 200 and lines(log), timeout=10,
                 what="a line in the reopened file")
        assert len(lines(tmp_path / "access.log.1")) >= 2


def test_a_custom_format(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--access-logfile", str(log),
                        "--access-logformat", "%(s)s %(m)s %(U)s %(q)s %(D)s %(p)s") as server:
        address = server.tcp_address()
        (worker,) = server.ready_workers(1)
        assert get(address, "/hello?a=b", {}) == 200
        wait_for(lambda: lines(log), what="the access line")
        status, method, path, query, micros, pid = lines(log)[0].split()
        assert (status, method, path, query, pid) == ("200", "GET", "/hello", "a=b",
                                                       f"<{worker}>")
        assert int(micros) >= 0


def test_a_bad_format_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "prefork", "serve", APP, "-b", LOCAL,
                           "--access-logformat", "%(zz)s"], cwd=ROOT, env=clean_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "zz" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
