"""The flags a gunicorn user types (issue 18 point 8): ``-p``, ``--chdir``, ``--pythonpath``,
``--env``, ``--backlog`` -- each from the command line, a TOML file and the environment -- and
``--check-config``, which imports the APP in the probe and exits 0 or 2 without binding or
writing anything."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import ROOT, clean_env, free_port, http_get, server_process, wait_for

APP_SOURCE = textwrap.dedent("""\
    import json, os, sys

    def application(environ, start_response):
        body = {"cwd": os.getcwd(), "env": os.environ.get("H18_GREETING"),
                "path": sys.path[:4]}
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]
""")


def layout(tmp_path: Path) -> tuple[Path, Path]:
    """``work/`` (the --chdir) and ``lib/`` holding the APP module (only on --pythonpath)."""
    work, lib = tmp_path / "work", tmp_path / "lib"
    work.mkdir()
    lib.mkdir()
    (lib / "h18app.py").write_text(APP_SOURCE)
    return work, lib


def backlog_of(port: int) -> int | None:
    """The listen backlog of the listener on ``port`` (ss's Send-Q for a listening socket)."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run([ss, "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[2]) if len(out) > 2 else None


@pytest.mark.parametrize("source", ["cli", "toml", "env"])
def test_chdir_pythonpath_env_backlog_and_pidfile(tmp_path: Path, source: str) -> None:
    work, lib = layout(tmp_path)
    port = free_port()
    pidfile = tmp_path / "master.pid"
    values = {"chdir": str(work), "pythonpath": str(lib), "env": "H18_GREETING=from " + source,
              "backlog": 77, "pidfile": str(pidfile)}
    args = ["serve", "h18app:application", "-b", f"127.0.0.1:{port}", "-w", "1"]
    env: dict[str, str] = {}
    if source == "cli":
        args += ["--chdir", str(work), "--pythonpath", f"{lib},{tmp_path / 'none'}",
                 "--env", values["env"], "-e", "H18_OTHER=1", "--backlog", "77",
                 "-p", str(pidfile)]
    elif source == "toml":
        config = tmp_path / "prefork.toml"
        config.write_text(f'chdir = "{work}"\npythonpath = ["{lib}"]\n'
                          f'env = ["{values["env"]}"]\nbacklog = 77\npidfile = "{pidfile}"\n')
        args += ["-c", str(config)]
    else:
        env = {f"PREFORK_{key.upper()}": str(value) for key, value in values.items()}
    with server_process(*args, env=env) as server:
        answer = wait_for(lambda: _answer(port), 20, what="the APP answering")
        assert answer["cwd"] == str(work)
        assert answer["env"] == values["env"].partition("=")[2]
        assert str(lib) in answer["path"]
        assert pidfile.read_text().strip() == str(server.pid)
        found = backlog_of(port)
        assert found in (None, 77), found
        server.stop_ok()
    assert not pidfile.exists()


def _answer(port: int) -> dict[str, object] | None:
    try:
        status, body = http_get("127.0.0.1", port, "/")
    except OSError:
        return None
    return json.loads(body) if status == 200 else None


def check_config(*args: str, cwd: Path = ROOT,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefork", "serve", *args],
                          capture_output=True, text=True, cwd=cwd, env=clean_env(**(env or {})),
                          timeout=60)


def test_check_config_imports_the_app_and_binds_nothing(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a listener on the port: binding it would fail
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        unix = tmp_path / "app.sock"
        pidfile = tmp_path / "app.pid"
        out = check_config("tests.apps.wsgi_plain:application", "-b", f"127.0.0.1:{port}",
                           "-b", f"unix:{unix}", "-p", str(pidfile), "--check-config")
        assert out.returncode == 0, out.stderr
        assert re.fullmatch(r"prefork: the configuration is valid; \S+ is a WSGI application\n",
                            out.stdout), out.stdout
        assert not unix.exists() and not pidfile.exists()
        # From the environment and from a file too.
        out = check_config("workers.http_hello:Hello", env={"PREFORK_CHECK_CONFIG": "1"})
        assert out.returncode == 0 and "an http.server handler" in out.stdout, out
        config = tmp_path / "check.toml"
        config.write_text('check_config = true\napp = "tests.apps.import_fails:application"\n')
        out = check_config("-c", str(config))
        assert out.returncode == 2 and "KeyError" in out.stderr, out


def test_check_config_exits_2_for_an_app_that_does_not_import() -> None:
    out = check_config("tests.apps.import_fails:application", "--check-config")
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "cannot import tests.apps.import_fails" in out.stderr
    assert out.stdout == ""


def test_check_config_exits_2_for_a_bad_setting_or_tls_file(tmp_path: Path) -> None:
    out = check_config("tests.apps.wsgi_plain:application", "--backlog", "0", "--check-config")
    assert out.returncode == 2 and "--backlog" in out.stderr, out
    out = check_config("tests.apps.wsgi_plain:application", "--certfile",
                       str(tmp_path / "missing.pem"), "--check-config")
    assert out.returncode == 2 and "TLS: cannot load the certificate files" in out.stderr, out
    out = check_config("tests.apps.wsgi_plain:application", "--env", "no equals sign",
                       "--check-config")
    assert out.returncode == 2 and "KEY=VALUE" in out.stderr, out
