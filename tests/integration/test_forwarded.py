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


def test_rfc7239_forwarded_from_a_trusted_proxy() -> None:
    env = served(headers={"Forwarded": 'for=6.6.6.6, for="[2001:db8::7]:4711";proto=https'})
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("https", "2001:db8::7")


@pytest.mark.parametrize("mode", ["fork", "thread", "sync"])
def test_the_stdlib_modes_honour_forwarded_allow_ips(mode: str) -> None:
    # Before: the stdlib modes' server had no forwarded_allow_ips (nor root_path): the
    # defaults applied whatever the flags said.
    env = served("--mode", mode, "--forwarded-allow-ips", "10.0.0.1", headers=PROXIED)
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("http", "127.0.0.1")
    with server_process("serve", APP, "-b", LOCAL, "--mode", mode, "--root-path",
                        "/app") as server:
        conn = http.client.HTTPConnection(*server.tcp_address(), timeout=10)
        try:
            conn.request("GET", "/app/environ", headers=PROXIED)
            env = json.loads(conn.getresponse().read())
        finally:
            conn.close()
    assert (env["wsgi.url_scheme"], env["REMOTE_ADDR"]) == ("https", "203.0.113.7")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")


@pytest.mark.parametrize("mode", ["prefork", "thread", "sync"])
def test_http_server_handlers_get_the_forwarded_client(mode: str) -> None:
    with server_process("serve", "tests.apps.peer_http:Peer", "-b", LOCAL, "-w", "1",
                        "--mode", mode) as server:
        conn = http.client.HTTPConnection(*server.tcp_address(), timeout=10)
        try:
            for headers, expected in ((PROXIED, "203.0.113.7"),
                                      ({"Forwarded": "for=198.51.100.4"}, "198.51.100.4"),
                                      ({}, "127.0.0.1")):  # per request, on one connection
                conn.request("GET", "/", headers=headers)
                response = conn.getresponse()
                seen = json.loads(response.read())
                assert seen["client_address"][0] == expected, (headers, seen)
                assert seen["peer_address"][0] == "127.0.0.1"
        finally:
            conn.close()
    with server_process("serve", "tests.apps.peer_http:Peer", "-b", LOCAL, "-w", "1",
                        "--mode", mode, "--forwarded-allow-ips", "10.0.0.1") as server:
        conn = http.client.HTTPConnection(*server.tcp_address(), timeout=10)
        try:
            conn.request("GET", "/", headers=PROXIED)
            assert json.loads(conn.getresponse().read())["client_address"][0] == "127.0.0.1"
        finally:
            conn.close()
