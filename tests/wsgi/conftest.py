"""The head parsers (the strict one alone, the grammar's fast path, httptools): every test that
asks for ``head_parser`` runs with each."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from prefork.apps import fasthead

PARSERS = ["python", "auto", "httptools"]


@pytest.fixture(params=PARSERS)
def head_parser(request: pytest.FixtureRequest,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[fasthead.HeadReader]:
    """The head reader the WSGI handler uses, set to each parser in turn (httptools skipped
    where it is not installed)."""
    if request.param == "httptools" and importlib.util.find_spec("httptools") is None:
        pytest.skip("httptools is not installed")
    reader = fasthead.choose(request.param)
    monkeypatch.setattr(fasthead, "for_server", lambda server: reader)
    yield reader
