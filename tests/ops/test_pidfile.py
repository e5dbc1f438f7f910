"""The pid file is never written, read or removed through a planted symlink.

These tests run as root on the test hosts, in pytest's ``tmp_path``: a directory owned by the
user, mode 0700, not sticky.  The kernel's ``fs.protected_symlinks`` only guards sticky,
world-writable directories, so here root follows any link -- :func:`test_root_follows_links_here`
shows it, which is what makes the other tests meaningful.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from prefork.ops import pidfile
from prefork.ops.pidfile import (
    PidfileError,
    claim_pidfile,
    live_owner,
    read_pid,
    remove_pidfile,
    write_pidfile,
)

VICTIM_TEXT = "do not touch\n"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text(VICTIM_TEXT)
    return path


def test_root_follows_links_here(tmp_path: Path, victim: Path) -> None:
    """The control experiment: a plain open() through a link here overwrites the target."""
    assert not tmp_path.stat().st_mode & stat.S_ISVTX
    link = tmp_path / "link"
    link.symlink_to(victim)
    with open(link, "w") as f:
        f.write("overwritten\n")
    assert victim.read_text() == "overwritten\n"


def test_a_link_at_the_pid_file_is_replaced_not_followed(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "app.pid"
    path.symlink_to(victim)
    write_pidfile(str(path))
    assert victim.read_text() == VICTIM_TEXT
    assert not path.is_symlink()
    assert path.read_text() == f"{os.getpid()}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_links_at_temporary_names_are_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even if an attacker predicted the temporary names, the planted links are skipped."""
    path = tmp_path / "app.pid"
    victims = []
    planted = []
    for i in range(3):
        target = tmp_path / f"victim{i}"
        target.write_text(VICTIM_TEXT)
        link = tmp_path / f"planted{i}.tmp"
        link.symlink_to(target)
        victims.append(target)
        planted.append(str(link))
    dangling = tmp_path / "dangling.tmp"  # a link to a file that does not exist yet
    dangling.symlink_to(tmp_path / "created-through-link")
    # The old predictable name, too.
    old_style = Path(f"{path}.{os.getpid()}.tmp")
    old_style.symlink_to(victims[0])
    fresh = str(tmp_path / "fresh.tmp")

    def names(_path: str) -> Iterator[str]:
        yield from [*planted, str(dangling), str(old_style), fresh]

    monkeypatch.setattr(pidfile, "_candidate_names", names)
    write_pidfile(str(path))
    assert [v.read_text() for v in victims] == [VICTIM_TEXT] * 3
    assert not (tmp_path / "created-through-link").exists()
    assert path.read_text() == f"{os.getpid()}\n"
    assert not Path(fresh).exists()  # renamed over the pid file
    assert all(Path(p).is_symlink() for p in planted)  # left as they were


def test_all_names_taken_is_an_error_not_a_write(
    tmp_path: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link = tmp_path / "planted.tmp"
    link.symlink_to(victim)
    monkeypatch.setattr(pidfile, "_candidate_names", lambda _path: iter([str(link)] * 4))
    with pytest.raises(PidfileError, match=r"^pidfile .*app\.pid: no free temporary name"):
        write_pidfile(str(tmp_path / "app.pid"))
    assert victim.read_text() == VICTIM_TEXT
    assert not (tmp_path / "app.pid").exists()


def test_the_real_names_are_unpredictable(tmp_path: Path) -> None:
    names = list(pidfile._candidate_names(str(tmp_path / "app.pid")))
    assert len(set(names)) == len(names) == pidfile.TEMP_ATTEMPTS
    assert all(os.path.dirname(n) == str(tmp_path) for n in names)  # same directory: rename


def test_no_temporary_file_is_left(tmp_path: Path) -> None:
    write_pidfile(str(tmp_path / "app.pid"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.pid"]


def test_a_missing_directory_names_the_pid_file(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "app.pid"
    with pytest.raises(PidfileError) as info:
        write_pidfile(str(path))
    assert str(info.value) == f"pidfile {path}: No such file or directory"


def test_remove_leaves_what_is_not_ours(tmp_path: Path, victim: Path) -> None:
    other = tmp_path / "other.pid"
    other.write_text("1\n")
    remove_pidfile(str(other))
    assert other.exists()
    # A link to a file naming us is not ours either: neither it nor its target goes.
    ours = tmp_path / "ours"
    ours.write_text(f"{os.getpid()}\n")
    link = tmp_path / "link.pid"
    link.symlink_to(ours)
    remove_pidfile(str(link))
    assert link.is_symlink() and ours.exists()
    write_pidfile(str(tmp_path / "app.pid"))
    remove_pidfile(str(tmp_path / "app.pid"))
    assert not (tmp_path / "app.pid").exists()


def test_read_pid_is_not_fooled(tmp_path: Path, victim: Path) -> None:
    fifo = tmp_path / "fifo.pid"
    os.mkfifo(fifo)
    assert read_pid(str(fifo)) is None  # and it returned: no writer needed
    link = tmp_path / "link.pid"
    (tmp_path / "target").write_text("1\n")
    link.symlink_to(tmp_path / "target")
    assert read_pid(str(link)) is None
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("12ab\n")
    assert read_pid(str(garbage)) is None
    assert read_pid(str(tmp_path / "none.pid")) is None


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def test_a_live_process_that_is_not_prefork_holds_nothing(tmp_path: Path) -> None:
    """A stale file whose pid was reused by an unrelated process does not block a start."""
    path = tmp_path / "app.pid"
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                          stdin=subprocess.PIPE) as other:
        assert other.stdin is not None
        path.write_text(f"{other.pid}\n")
        assert live_owner(str(path)) is None, _cmdline(other.pid)
        claim_pidfile(str(path))
        assert read_pid(str(path)) == os.getpid()
        other.stdin.close()


def test_a_dead_pid_or_our_own_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    beyond = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # never a live pid
    path.write_text(f"{beyond}\n")
    assert live_owner(str(path)) is None
    claim_pidfile(str(path))
    assert read_pid(str(path)) == os.getpid()
    assert live_owner(str(path)) is None  # this process is no other owner


def test_a_live_prefork_process_holds_the_file(tmp_path: Path) -> None:
    path = tmp_path / "app.pid"
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()", "prefork"],
                          stdin=subprocess.PIPE) as master:
        assert master.stdin is not None
        path.write_text(f"{master.pid}\n")
        assert live_owner(str(path)) == master.pid, _cmdline(master.pid)
        with pytest.raises(PidfileError, match=rf"held by a running prefork master \(pid "
                           rf"{master.pid}\)"):
            claim_pidfile(str(path))
        assert path.read_text() == f"{master.pid}\n"
        master.stdin.close()


def test_a_claim_that_loses_the_race_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another master creates the file between our check and our link: we refuse."""
    path = tmp_path / "app.pid"
    owners = iter([None, 4242])
    real_write_temp = pidfile._write_temp

    def write_temp_then_lose(p: str) -> str:
        tmp = real_write_temp(p)
        path.write_text("4242\n")  # the other start wins here
        return tmp

    monkeypatch.setattr(pidfile, "live_owner", lambda _p: next(owners))
    monkeypatch.setattr(pidfile, "_write_temp", write_temp_then_lose)
    with pytest.raises(PidfileError, match=r"held by a running prefork master \(pid 4242\)"):
        claim_pidfile(str(path))
    assert path.read_text() == "4242\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.pid"]


def test_a_claim_replaces_a_stale_file_and_a_link(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "app.pid"
    path.symlink_to(victim)
    claim_pidfile(str(path))
    assert victim.read_text() == VICTIM_TEXT
    assert not path.is_symlink() and read_pid(str(path)) == os.getpid()
    path.write_text("999999999\n")  # no such process
    claim_pidfile(str(path))
    assert read_pid(str(path)) == os.getpid()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.pid", "victim"]
