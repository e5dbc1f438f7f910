"""The operations around the core: the select-loop harness in ``test_control.py`` (``Loop``,
``loop_turn``, ``FakeMaster``) is importable from the tests of this directory."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import pytest  # noqa: E402

from prefork.ops.control import ControlServer  # noqa: E402
from prefork.ops.endpoint import Endpoint  # noqa: E402
from prefork.ops.metrics import MetricsServer  # noqa: E402

UNIT_TIMEOUT = 1.0  # a client's whole deadline in these in-process tests (production: 3 s)


@pytest.fixture(autouse=True)
def _quick_client_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests that wait for a client's deadline wait this long, not SERVE_TIMEOUT."""
    for cls in (Endpoint, ControlServer, MetricsServer):
        monkeypatch.setattr(cls, "timeout", UNIT_TIMEOUT)
