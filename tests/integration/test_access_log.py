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


def test_http_server_handlers_log_in_the_same_format(tmp_path: Path) -> None:
    # Before: an http.server handler's log_request went to stderr in its own format, and
    # --access-logfile stayed empty.
    log = tmp_path / "access.log"
    with server_process("serve", "tests.apps.peer_http:Peer", "-b", LOCAL, "-w", "1",
                        "--access-logfile", str(log)) as server:
        address = server.tcp_address()
        assert get(address, "/x?y=1", {"User-Agent": "probe/2", "X-Forwarded-For": "198.51.100.3"}
                   ) == 200
        assert get(address, "/nowhere", {}) == 200  # (this handler answers every GET)
        wait_for(lambda: len(lines(log)) == 2, what="two access lines")
        first = lines(log)[0]
        assert re.fullmatch(r'198\.51\.100\.3 - - \[[^]]+\] "GET /x\?y=1 HTTP/1\.1" 200 \d+ '
                            r'"-" "probe/2"', first), first
        assert '"GET /nowhere HTTP/1.1" 200' in lines(log)[1]
        assert "GET /x" not in server.text()  # not on stderr any more


def test_request_id_time_and_pid_atoms(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--access-logfile", str(log),
                        "--access-logformat", "%(R)s %(L)s %(p)s %(s)s") as server:
        address = server.tcp_address()
        (worker,) = server.ready_workers(1)
        assert get(address, "/hello", {"X-Request-Id": "req-abc.123"}) == 200
        assert get(address, "/hello", {}) == 200
        assert get(address, "/hello", {"X-Request-Id": "two words"}) == 200  # not an id: made
        wait_for(lambda: len(lines(log)) == 3, what="three lines")
    given, made, refused = (line.split() for line in lines(log))
    assert given[0] == "req-abc.123"
    assert re.fullmatch(rf"{worker:x}-[0-9a-f]+", made[0]), made
    assert re.fullmatch(rf"{worker:x}-[0-9a-f]+", refused[0]) and refused[0] != made[0]
    assert all(float(line[1]) >= 0 and line[2] == f"<{worker}>" and line[3] == "200"
               for line in (given, made, refused))


def test_new_workers_write_to_the_reopened_file(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    with server_process("serve", "tests.apps.peer_http:Peer", "-b", LOCAL, "-w", "1",
                        "--access-logfile", str(log)) as server:
        address = server.tcp_address()
        assert get(address, "/before", {}) == 200
        wait_for(lambda: lines(log), what="the first line")
        os.rename(log, tmp_path / "access.log.1")
        server.signal(signal.SIGUSR1)
        wait_for(lambda: log.exists(), what="the master reopened the file")
        server.reload(2)  # workers forked after the reopen inherit the new file
        wait_for(lambda: get(address, "/after", {}) == 200 and lines(log), timeout=10,
                 what="a line in the new file")
        assert all("/before" in line for line in lines(tmp_path / "access.log.1"))
        assert "/after" in lines(log)[-1]
