"""The scheme and the peer told truthfully (issue 18 point 1): ``wsgi.url_scheme`` is https on
a TLS listener; X-Forwarded-Proto / X-Forwarded-For count from the peers --forwarded-allow-ips
trusts (loopback by default), and from no one else."""

from __future__ import annotations

import http.client
import json
import shutil
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from helpers import LOCAL, ROOT, clean_env, server_process

APP = "tests.apps.wsgi_plain:application"
PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "6.6.6.6, 203.0.113.7"}


def environ_of(conn: http.client.HTTPConnection, headers: dict[str, str]) -> dict[str, Any]:
    conn.request("GET", "/environ", headers=headers)
    response = conn.getresponse()
    assert response.status == 200
    result: dict[str, Any] = json.loads(response.read())
    return result


def served(*extra: str, headers: dict[str, str]) -> dict[str, Any]:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", *extra) as server:
        conn = http.client.HTTPConnection(*server.tcp_address(), timeout=10)
        try:
            return environ_of(conn, headers)
        finally:
            conn.close()


def test_a_trusted_proxy_sets_scheme_and_client() -> None:
    env = served(headers=PROXIED)  # from 127.0.0.1, trusted by default
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("https", "203.0.113.7")


def test_an_untrusted_peer_is_not_believed() -> None:
    env = served("--forwarded-allow-ips", "10.0.0.1", headers=PROXIED)
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("http", "127.0.0.1")
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"  # still there for the app to see


def test_everyone_trusted_with_a_star() -> None:
    env = served("--forwarded-allow-ips", "*", headers=PROXIED)
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("https", "6.6.6.6")


def test_a_bad_address_list_is_refused() -> None:
    done = subprocess.run([sys.executable, "-m", "prefork", "serve", APP, "-b", LOCAL,
                           "--forwarded-allow-ips", "127.0.0.1,nowhere"], cwd=ROOT,
                          env=clean_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 2, done.stderr
    assert "forwarded" in done.stderr and "nowhere" in done.stderr


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_url_scheme_is_https_on_a_tls_listener(pki: Path) -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--forwarded-allow-ips", "",
                        "--certfile", str(pki / "server.pem"),
                        "--keyfile", str(pki / "server.key")) as server:
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        conn = http.client.HTTPSConnection(*server.tcp_address(), timeout=10, context=context)
        try:
            env = environ_of(conn, {})
        finally:
            conn.close()
    assert env["wsgi.url_scheme"] == "https"
