"""The job tests run on each backend: ``db_url`` is a fresh SQLite file, or a fresh database in
this pytest process's throwaway PostgreSQL cluster (tests/pgcluster.py, started the first time
a test asks for it; skipped with one line where PostgreSQL cannot be had)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import pgcluster
from prefork.jobs.sqlite import MIN_SQLITE

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def pg() -> Iterator[pgcluster.Cluster]:
    reason = pgcluster.skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with pgcluster.cluster() as found:
        yield found


def make_url(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            pytest.skip(f"SQLite {sqlite3.sqlite_version} < 3.35 (no RETURNING)")
        return str(tmp_path / "jobs.db")
    cluster: pgcluster.Cluster = request.getfixturevalue("pg")
    return cluster.create_database()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty job database on each backend."""
    return make_url(request.param, tmp_path, request)


@pytest.fixture
def sqlite_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return make_url("sqlite", tmp_path, request)
