"""docs/proxies.md's nginx configuration, run as written (its port, socket and certificate paths
swapped for the test's) in front of ``prefork serve`` on a unix socket, with the documented
flags: the application sees ``https``, the browser's address and the Host it asked for, over
HTTP/1.1 with no ``Connection: close`` (so nginx may keep its connection to prefork)."""

from __future__ import annotations

import getpass
import http.client
import json
import re
import shutil
import ssl
import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, free_port, server_process, wait_for

DOC = ROOT / "docs" / "proxies.md"
SOCKET = "/run/myproject/prefork.sock"
APP = "tests.apps.wsgi_plain:application"


def documented_nginx() -> str:
    match = re.search(r"```nginx\n(.*?)```", DOC.read_text(), re.DOTALL)
    assert match, "docs/proxies.md has no nginx block"
    return match.group(1)


def documented_command() -> list[str]:
    """The `prefork serve` line of the nginx section, as words."""
    match = re.search(r"```sh\n(prefork serve myproject\.wsgi -b unix:\S+ [^\n]*)\n```",
                      DOC.read_text())
    assert match, "docs/proxies.md has no prefork command for nginx"
    return match.group(1).split()


def test_the_documented_nginx_config_in_front_of_prefork(tmp_path: Path, pki: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None or shutil.which("openssl") is None:
        pytest.skip("no nginx (or openssl) command")
    sock, port = tmp_path / "prefork.sock", free_port()
    block = documented_nginx()
    for old, new in ((SOCKET, str(sock)), ("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
                     ("/etc/ssl/example.com.pem", str(pki / "server.pem")),
                     ("/etc/ssl/example.com.key", str(pki / "server.key"))):
        assert old in block, old
        block = block.replace(old, new)
    # Same doc, a test machine: log, pid and temporary files here; nginx's workers run as
    # whoever runs the test (ignored, with a warning, when that is not root).
    (tmp_path / "nginx.conf").write_text(
        f"user {getpass.getuser()};\nworker_processes 1;\ndaemon off;\n"
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path}/body;\n"
        f"proxy_temp_path {tmp_path}/proxy;\n{block}\n}}\n")
    words = documented_command()
    assert words[:3] == ["prefork", "serve", "myproject.wsgi"]
    args = [APP, *(f"unix:{sock}" if w == f"unix:{SOCKET}" else w for w in words[3:])]
    with server_process("serve", *args) as server:
        server.wait_workers(int(args[args.index("-w") + 1]))
        proxy = subprocess.Popen([nginx, "-e", str(tmp_path / "error.log"), "-p", str(tmp_path),
                                  "-c", str(tmp_path / "nginx.conf")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        try:
            context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            environs = [wait_for(lambda: _environ(conn), 15, what="nginx answering")]
            environs.append(_environ(conn))
            conn.close()
        finally:
            proxy.terminate()
            proxy.wait(10)
    for environ in environs:
        assert environ["wsgi.url_scheme"] == "https"
        assert environ["REMOTE_ADDR"] == "127.0.0.1"  # the browser's (this test's) address
        assert environ["HTTP_HOST"] == "127.0.0.1"  # nginx's $host: the name, not the port
        assert environ["HTTP_X_FORWARDED_PROTO"] == "https"
        assert "HTTP_CONNECTION" not in environ  # no "Connection: close" from nginx
    assert environs[0]["SERVER_PROTOCOL"] == "HTTP/1.1"


def _environ(conn: http.client.HTTPSConnection) -> dict[str, object] | None:
    try:
        conn.request("GET", "/environ")
        response = conn.getresponse()
        body = response.read()
    except OSError:
        conn.close()
        return None
    return json.loads(body) if response.status == 200 else None
