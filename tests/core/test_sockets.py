from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pytest

from prefork.core.sockets import (
    BindSpecError,
    clear_stale_unix_path,
    file_ident,
    parse_bind,
    remove_unix_path,
)


@pytest.mark.parametrize(
    ("spec", "kind", "family", "address"),
    [
        ("127.0.0.1:8000", "tcp", socket.AF_INET, ("127.0.0.1", 8000)),
        (":8000", "tcp", socket.AF_INET, ("", 8000)),
        ("tcp://localhost:0", "tcp", socket.AF_INET, ("localhost", 0)),
        ("[::1]:9000", "tcp", socket.AF_INET6, ("::1", 9000)),
        ("udp://127.0.0.1:53", "udp", socket.AF_INET, ("127.0.0.1", 53)),
        ("udp://[::1]:53", "udp", socket.AF_INET6, ("::1", 53)),
        ("unix:/tmp/x.sock", "unix", socket.AF_UNIX, "/tmp/x.sock"),
        ("unix:///tmp/x.sock", "unix", socket.AF_UNIX, "/tmp/x.sock"),
        ("unix-dgram:/tmp/d.sock", "unix-dgram", socket.AF_UNIX, "/tmp/d.sock"),
    ],
)
def test_parse_bind(spec: str, kind: str, family: int, address: object) -> None:
    parsed = parse_bind(spec)
    assert (parsed.kind, parsed.family, parsed.address) == (kind, family, address)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("8000", "expected HOST:PORT"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be a number"),
        ("::1:80", "write IPv6 addresses as"),
        ("[::1]80", "expected \\[IPV6\\]:PORT"),
        ("sctp://1.2.3.4:5", "unknown scheme 'sctp'"),
        ("unix:", "missing socket path"),
    ],
)
def test_bad_bind_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(BindSpecError, match=message):
        parse_bind(spec)


def test_str_round_trips() -> None:
    for spec in ("127.0.0.1:80", "[::1]:80", "udp://127.0.0.1:5", "unix:/a", "unix-dgram:/b"):
        assert str(parse_bind(spec)) == spec


# --- unix socket files: never through a link ---------------------------------------------------

def _stale_socket(path: Path) -> None:
    """A socket file nobody listens on any more (a server that died without cleaning up)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.close()


def test_a_stale_socket_file_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    _stale_socket(path)
    clear_stale_unix_path(str(path), socket.SOCK_STREAM)
    assert not path.exists()


@pytest.mark.parametrize("target_kind", ["stale socket", "file", "missing"])
def test_a_link_at_the_socket_path_is_refused_and_nothing_removed(
    tmp_path: Path, target_kind: str
) -> None:
    target = tmp_path / "elsewhere"
    if target_kind == "stale socket":
        _stale_socket(target)
    elif target_kind == "file":
        target.write_text("precious\n")
    link = tmp_path / "s.sock"
    link.symlink_to(target)
    with pytest.raises(OSError, match="is a symbolic link") as info:
        clear_stale_unix_path(str(link), socket.SOCK_STREAM)
    assert info.value.errno == errno.EEXIST
    assert link.is_symlink()
    if target_kind != "missing":
        assert os.path.lexists(target)
    if target_kind == "file":
        assert target.read_text() == "precious\n"


def test_remove_unix_path_takes_only_the_file_it_bound(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    _stale_socket(path)
    ident = file_ident(str(path))
    # Replaced by a link to the very socket: the link is not the file we bound.
    moved = tmp_path / "moved.sock"
    path.rename(moved)
    path.symlink_to(moved)
    remove_unix_path(str(path), ident)
    assert path.is_symlink() and moved.exists()
    path.unlink()
    moved.rename(path)
    remove_unix_path(str(path), ident)
    assert not os.path.lexists(path)
