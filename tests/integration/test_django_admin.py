"""The Django admin login as a browser does it (the form's CSRF token and cookie, an ``Origin``
header), over prefork's TLS and over plain HTTP behind a proxy that says
``X-Forwarded-Proto: https``: the login is a 302 to the admin and the admin page a 200.
Django's CSRF check refuses an https ``Origin`` when the app is told ``http`` (403)."""

from __future__ import annotations

import re
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from helpers import LOCAL, ROOT, clean_env, server_process

pytest.importorskip("django")

USER, PASSWORD = "admin", "a long test password 1"
APP = "tests.apps.django_admin:application"


@pytest.fixture(scope="module")
def admin_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = {"DJANGO_ADMIN_DB": str(tmp_path_factory.mktemp("django") / "admin.sqlite3")}
    subprocess.run([sys.executable, "-m", "tests.apps.django_admin"], cwd=ROOT, check=True,
                   env=clean_env(**env, DJANGO_ADMIN_USER=USER, DJANGO_ADMIN_PASSWORD=PASSWORD),
                   timeout=120)
    return env


def _log_in(client: httpx.Client, origin: str, headers: dict[str, str]) -> httpx.Response:
    form = client.get("/admin/login/", headers=headers)
    assert form.status_code == 200, form.text[:300]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    assert token is not None, form.text[:300]
    return client.post(
        "/admin/login/?next=/admin/",
        data={"csrfmiddlewaretoken": token.group(1), "username": USER, "password": PASSWORD,
              "next": "/admin/"},
        headers={**headers, "Origin": origin, "Referer": f"{origin}/admin/login/"})


def _check_admin(client: httpx.Client, origin: str, headers: dict[str, str]) -> None:
    login = _log_in(client, origin, headers)
    assert login.status_code == 302, (login.status_code, login.text[:300])
    assert login.headers["location"] == "/admin/"
    page = client.get("/admin/", headers=headers)
    assert page.status_code == 200, page.text[:300]
    assert "Site administration" in page.text


def test_admin_login_over_tls(admin_db: dict[str, str], pki: Path) -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--certfile",
                        str(pki / "server.pem"), "--keyfile", str(pki / "server.key"),
                        env=admin_db) as server:
        host, port = server.tcp_address()
        origin = f"https://{host}:{port}"
        trust = ssl.create_default_context(cafile=pki / "ca.pem")
        with httpx.Client(base_url=origin, verify=trust, timeout=20) as client:
            _check_admin(client, origin, {})


def test_admin_login_behind_a_tls_proxy(admin_db: dict[str, str]) -> None:
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", env=admin_db) as server:
        host, port = server.tcp_address()
        origin = f"https://{host}:{port}"  # (what the browser saw: the proxy's https)
        forwarded = {"X-Forwarded-Proto": "https"}
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=20) as client:
            _check_admin(client, origin, forwarded)


def test_an_untrusted_proxy_is_not_believed(admin_db: dict[str, str]) -> None:
    """From a peer outside --forwarded-allow-ips the header is ignored: the app is told
    http, and Django refuses the https Origin (403), as it should."""
    with server_process("serve", APP, "-b", LOCAL, "-w", "1", "--forwarded-allow-ips",
                        "10.9.9.9", env=admin_db) as server:
        host, port = server.tcp_address()
        origin = f"https://{host}:{port}"
        with httpx.Client(base_url=f"http://{host}:{port}", timeout=20) as client:
            login = _log_in(client, origin, {"X-Forwarded-Proto": "https"})
            assert login.status_code == 403
