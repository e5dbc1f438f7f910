"""CPython's own server tests on the Prefork classes (``cpython_adapted.py``): every test of
the classes that start a server passes on a pool of 2 workers, but those that cannot run across
processes (skipped, each with its reason in ``cpython_adapted.NOT_APPLICABLE``) and those
CPython itself skips here; and the requests were served by the workers, not in the test's
process.  docs/compatibility.md lists the outcome per class."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cpython_adapted import CLASSES, NOT_APPLICABLE

from helpers import clean_env

HERE = Path(__file__).parent
# Per class, how many of its tests pass (so that a test that stopped running is noticed).
PASSED = {
    "BaseHTTPServerTestCase": 22, "RequestHandlerLoggingTestCase": 0,
    "SimpleHTTPServerTestCase": 12, "CGIHTTPServerTestCase": 0,  # (CPython skips it as root)
    "IntegrationTests": 9,
    "SimpleServerTestCase": 17, "SimpleServerEncodingTestCase": 1,
    "MultiPathServerTestCase": 11, "KeepaliveServerTestCase1": 1,
    "KeepaliveServerTestCase2": 2, "GzipServerTestCase": 1, "HeadersServerTestCase": 0,
    "FailingServerTestCase": 1,
}
AS_ROOT = os.geteuid() == 0  # CGIHTTPRequestHandler's tests skip themselves (issue #13308)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("module", sorted(CLASSES))
def test_cpython_server_tests_pass_on_the_pool(module: str) -> None:
    run = subprocess.run([sys.executable, str(HERE / "cpython_adapted.py"), module],
                         capture_output=True, text=True, timeout=200, cwd=HERE,
                         env=clean_env(PYTHONPATH=f"{HERE}:{os.environ.get('PYTHONPATH', '')}"))
    assert run.returncode == 0, run.stderr
    records = {r["class"]: r for r in map(json.loads, run.stdout.splitlines())}
    assert sorted(records) == sorted(CLASSES[module])
    for name, record in records.items():
        assert record["failed"] == {}, (name, record["failed"])
        expected_skips = {key.rpartition(".")[2] for key in NOT_APPLICABLE
                          if key.startswith(f"{module}.{name}.")}
        if name == "CGIHTTPServerTestCase":
            if AS_ROOT:  # CPython skips every one of them
                assert all("as root" in why for why in record["skipped"].values()), record
            else:  # they run: but the one n/a, all pass
                assert set(record["skipped"]) == expected_skips and record["passed"] >= 13
            continue
        assert set(record["skipped"]) == expected_skips
        assert record["passed"] == PASSED[name], (name, record)
        if record["passed"]:
            assert record["workers"] >= 1 and not record["in_this_process"], (name, record)
