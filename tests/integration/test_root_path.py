"""A mount prefix (issue 18 point 4): SCRIPT_NAME from the environment, or --root-path, is
split off PATH_INFO for requests under it; requests outside it keep their whole path."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from helpers import LOCAL, server_process

APP = "tests.apps.wsgi_plain:application"


def environs(address: tuple[str, int], *paths: str) -> list[dict[str, Any]]:
    conn = http.client.HTTPConnection(*address, timeout=10)
    out = []
    try:
        for path in paths:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            assert response.status == 200, (path, response.status)
            out.append(json.loads(body))
    finally:
        conn.close()
    return out


@pytest.mark.parametrize("how", ["env", "flag"])
def test_requests_under_the_prefix_are_split(how: str) -> None:
    args = ("--root-path", "/app/") if how == "flag" else ()
    env = {"SCRIPT_NAME": "/app"} if how == "env" else {}
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", *args, env=env) as server:
        under, deeper, outside = environs(
            server.tcp_address(), "/app/environ", "/app/environ/x?y=1", "/environ")
    assert (under["SCRIPT_NAME"], under["PATH_INFO"]) == ("/app", "/environ")
    assert (deeper["SCRIPT_NAME"], deeper["PATH_INFO"]) == ("/app", "/environ/x")
    assert (outside["SCRIPT_NAME"], outside["PATH_INFO"]) == ("", "/environ")


def test_a_prefix_ends_at_a_path_segment() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--root-path", "/env") as server:
        (env,) = environs(server.tcp_address(), "/environ/a")  # not under /env
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/environ/a")


def test_no_prefix_by_default() -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1") as server:
        (env,) = environs(server.tcp_address(), "/environ/a")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/environ/a")
