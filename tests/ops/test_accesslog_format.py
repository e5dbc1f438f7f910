"""The access log's compiled format: the same text ``%`` formatting of the atoms' values gives,
for every atom, with any conversion and any literal text; refused formats; the time stamp."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from prefork.ops import accesslog

ENVIRON = {
    "REMOTE_ADDR": "10.0.0.7", "REQUEST_METHOD": "POST", "PATH_INFO": "/a b",
    "REQUEST_URI": "/a%20b?x=1", "QUERY_STRING": "x=1", "SERVER_PROTOCOL": "HTTP/1.0",
    "HTTP_USER_AGENT": "curl/8", "HTTP_REFERER": "http://r/", "HTTP_X_REQUEST_ID": "abc-1",
    "HTTP_AUTHORIZATION": "Basic dXNlcjpwdw==",
}


def _values(environ: dict[str, Any], status: str | None, sent: int, seconds: float,
            when: float) -> dict[str, Any]:
    """Each atom's value, written out plainly (the reference the compiled function must match)."""
    get = environ.get
    return {
        "h": get("REMOTE_ADDR", "-"), "l": "-",
        "u": accesslog._user(get("HTTP_AUTHORIZATION")),
        "t": time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(int(when))),
        "r": f"{get('REQUEST_METHOD', '-')} {get('REQUEST_URI') or get('PATH_INFO', '')} "
             f"{get('SERVER_PROTOCOL', '-')}",
        "m": get("REQUEST_METHOD", "-"), "U": get("PATH_INFO", ""), "q": get("QUERY_STRING", ""),
        "H": get("SERVER_PROTOCOL", "-"), "s": status.split(" ")[0] if status else "-",
        "b": str(sent) if sent else "-", "B": sent, "f": get("HTTP_REFERER", "-"),
        "a": get("HTTP_USER_AGENT", "-"), "D": int(seconds * 1_000_000), "T": int(seconds),
        "M": int(seconds * 1000), "L": f"{seconds:.6f}", "p": accesslog._PID[0],
        "R": get("HTTP_X_REQUEST_ID"),
    }


@pytest.mark.parametrize("environ", [ENVIRON, {}], ids=["full", "empty"])
@pytest.mark.parametrize("atom", accesslog.ATOMS)
@pytest.mark.parametrize("conversion", ["s", "20s", "-12s", "r"])
def test_each_atom_gives_what_percent_formatting_gives(
    environ: dict[str, Any], atom: str, conversion: str,
) -> None:
    if atom == "R" and not environ:
        pytest.skip("R without X-Request-Id is a fresh id each call (test below)")
    fmt = f"<%({atom}){conversion}>"
    when = time.time()
    line = accesslog.compile_format(fmt)(environ, "404 Not Found", 17, 1.25)
    expected = fmt % _values(environ, "404 Not Found", 17, 1.25, when)
    if atom == "t" and line != expected:  # the second may have turned between the two
        expected = fmt % _values(environ, "404 Not Found", 17, 1.25, time.time())
    assert line == expected


def test_numeric_conversions() -> None:
    line = accesslog.compile_format("%(D)08d|%(B)x|%(T)3d")(ENVIRON, "200 OK", 255, 2.5)
    assert line == "02500000|ff|  2"


@pytest.mark.parametrize("text", ["'", '"', "{x}", "}{", "\\", "\\n", "\n\t", "é ✓",
                                  "100%% sure", "'''", '"""', "{{}}"])
def test_literal_text_is_kept_as_written(text: str) -> None:
    fmt = f"{text}%(s)s{text}"
    assert accesslog.compile_format(fmt)({}, "201 Created", 0, 0.0) == fmt % {"s": "201"}


@pytest.mark.parametrize("fmt", ["%(nope)s", "50% off %(s)s", "%(h)", "%", "%s"])
def test_bad_formats_are_refused(fmt: str) -> None:
    with pytest.raises(ValueError):
        accesslog.check_format(fmt)


def test_request_ids_are_fresh_without_a_header() -> None:
    line = accesslog.compile_format("%(R)s")
    first, second = line({}, "200 OK", 0, 0.0), line({}, "200 OK", 0, 0.0)
    assert first != second and first.split("-")[0] == second.split("-")[0]
    assert line({"HTTP_X_REQUEST_ID": "bad id\n"}, "200 OK", 0, 0.0) != "bad id\n"


def test_the_time_stamp_follows_the_clock_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_700_000_000.2]
    monkeypatch.setattr(time, "time", lambda: now[0])
    line = accesslog.compile_format("%(t)s")  # (binds time.time when compiled)
    stamp = time.strftime("[%d/%b/%Y:%H:%M:%S %z]", time.localtime(1_700_000_000))
    assert line({}, None, 0, 0.0) == stamp
    now[0] += 1.0  # the next second
    assert line({}, None, 0, 0.0) != stamp
    now[0] -= 3600  # the clock set back an hour: not the cached text
    assert line({}, None, 0, 0.0) == time.strftime(
        "[%d/%b/%Y:%H:%M:%S %z]", time.localtime(int(now[0])))


def test_record_takes_the_start_and_writes_the_duration(tmp_path: Path) -> None:
    """AccessLog.record gets the request's perf_counter() start; the duration atoms show the
    time since (computed only for formats that show it)."""
    log = accesslog.AccessLog("%(s)s %(D)s %(L)s", str(tmp_path / "access.log"))
    try:
        log.record(ENVIRON, "200 OK", 3, time.perf_counter() - 0.25)
        untimed = accesslog.AccessLog("%(s)s %(b)s", str(tmp_path / "untimed.log"))
        untimed.record(ENVIRON, "204 No Content", 0, 0.0)
        os.close(untimed.fd)
    finally:
        os.close(log.fd)
    status, micros, seconds = (tmp_path / "access.log").read_text().split()
    assert status == "200" and 250_000 <= int(micros) < 5_000_000
    assert 0.25 <= float(seconds) < 5.0
    assert (tmp_path / "untimed.log").read_text() == "204 -\n"
