"""The deployment files in docs/ (issue 12 point 4), checked as far as this machine allows:
Docker and Kubernetes are not here, so the Dockerfile is parsed and its CMD and HEALTHCHECK run
locally with its environment, and the manifests are parsed and checked against the settings."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from helpers import ROOT, free_port, http_get, server_process, wait_for
from prefork.core.servers import PreforkMixIn

DOCKERFILE = ROOT / "docs" / "docker" / "Dockerfile"
MANIFEST = ROOT / "docs" / "kubernetes" / "prefork.yaml"
HPA = ROOT / "docs" / "kubernetes" / "hpa.yaml"
SYSTEMD = ROOT / "docs" / "systemd"


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    assert not pending, "a continuation line at the end"
    return [(word.upper(), rest.strip()) for word, _, rest in (ln.partition(" ") for ln in lines)]


def dockerfile() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for word, rest in instructions(DOCKERFILE):
        found.setdefault(word, []).append(rest)
    return found


def docker_env(found: dict[str, list[str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for rest in found["ENV"]:
        for pair in shlex.split(rest):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def graceful_stop_signal() -> str:
    """The signal the README's signal table names for a graceful stop (e.g. ``SIGTERM``)."""
    for line in (ROOT / "README.md").read_text().splitlines():
        match = re.match(r"\|\s*(\w+)\s*\|\s*graceful stop", line)
        if match:
            return "SIG" + match.group(1)
    raise AssertionError("no graceful stop in the README's signal table")


def test_dockerfile_shape() -> None:
    found = dockerfile()
    assert re.fullmatch(r"python:[\d.]+-slim(-\w+)?", found["FROM"][-1]), found["FROM"]
    user = found["USER"][-1]
    assert user not in ("root", "0") and not user.startswith("0:"), user
    assert found["STOPSIGNAL"] == [graceful_stop_signal()]
    assert "/healthz" in found["HEALTHCHECK"][-1]
    env = docker_env(found)
    assert int(env["WEB_CONCURRENCY"]) >= 1
    assert env["PREFORK_METRICS"].endswith(":9100")
    cmd = json.loads(found["CMD"][-1])  # exec form: the master is PID 1 and gets the signal
    assert cmd[:2] == ["prefork", "serve"]


def test_dockerfile_cmd_and_healthcheck_run_here() -> None:
    """What `docker run` would start, run here: CMD with the image's environment (ports made
    free), WEB_CONCURRENCY honoured, the HEALTHCHECK command passing, STOPSIGNAL a clean stop."""
    found = dockerfile()
    env = docker_env(found)
    port, metrics = free_port(), free_port()
    env.update(PREFORK_BIND=f"127.0.0.1:{port}", PREFORK_METRICS=f"127.0.0.1:{metrics}")
    cmd = json.loads(found["CMD"][-1])
    with server_process(*cmd[1:], env=env) as server:
        assert len(server.wait_workers(int(env["WEB_CONCURRENCY"]))) == int(
            env["WEB_CONCURRENCY"])
        assert http_get("127.0.0.1", port)[0] == 200
        check = json.loads(found["HEALTHCHECK"][-1].split("CMD", 1)[1])
        assert check[0] == "python"
        wait_for(lambda: subprocess.run([sys.executable, *check[1:]], env=env, timeout=10,
                                        capture_output=True).returncode == 0,
                 what="the HEALTHCHECK command passing")
        server.signal(getattr(signal, found["STOPSIGNAL"][-1]))
        assert server.wait() == 0
    # The same check fails once nothing answers: Docker would mark the container unhealthy.
    failed = subprocess.run([sys.executable, *check[1:]], env=env, timeout=10,
                            capture_output=True)
    assert failed.returncode != 0


def manifests(path: Path) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


def test_kubernetes_manifest() -> None:
    docs = manifests(MANIFEST)
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["metrics"] == 9100
    readiness, liveness = container["readinessProbe"], container["livenessProbe"]
    assert readiness["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert liveness["httpGet"] == {"path": "/healthz", "port": "metrics"}
    env = {e["name"]: e for e in container["env"]}
    graceful = float(env["PREFORK_GRACEFUL_TIMEOUT"]["value"]) if (
        "PREFORK_GRACEFUL_TIMEOUT" in env) else PreforkMixIn.graceful_timeout
    assert env["WEB_CONCURRENCY"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    delay = float(pre_stop[1]) if pre_stop[0] == "sleep" else 0.0
    assert pod["spec"]["terminationGracePeriodSeconds"] > delay + graceful
    assert container["resources"]["limits"]["cpu"] and container["resources"]["requests"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports.keys()
    hpa = manifests(HPA)["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "prefork_busy_ratio"


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((SYSTEMD / name).read_text())
    return parser


def test_systemd_units_are_notify_with_socket_activation() -> None:
    service, sock = unit("prefork.service"), unit("prefork.socket")
    assert service["Service"]["Type"] in ("notify", "notify-reload")
    assert "prefork.socket" in service["Unit"]["Requires"]
    assert sock["Socket"]["ListenStream"]
    assert service["Service"]["KillSignal"] == graceful_stop_signal()
    assert service["Service"]["KillMode"] == "mixed"
    stop = float(service["Service"]["TimeoutStopSec"])
    assert stop > PreforkMixIn.graceful_timeout
