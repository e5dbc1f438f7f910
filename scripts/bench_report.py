"""The benchmark's report: the machine it ran on, the markdown tables and the PNG chart."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import statistics
import subprocess
from pathlib import Path
from typing import Any

from bench_contenders import PY, WORKLOADS
from procs import ROOT


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    versions = {}
    for tool, cmd in (
        ("wrk", ["wrk", "--version"]),
        ("gunicorn", [PY, "-m", "gunicorn", "--version"]),
    ):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            versions[tool] = (out.stdout or out.stderr).splitlines()[0].strip()
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        **versions,
    }


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(data: dict[str, Any]) -> str:
    out = []
    for key, rows in data["results"].items():
        work = WORKLOADS[key]
        preload = key == "preload"
        head = "| contender | req/s | vs prefork | p50 ms | p99 ms | errors | listen overflows |"
        sep = "|---|---:|---:|---:|---:|---:|---:|"
        if preload:
            head += " worker USS MB (mean/max) | master USS MB |"
            sep += "---:|---:|"
        out += [f"### {work.title}", "", head, sep]
        for name in work.contenders:
            row = rows.get(name)
            if row is None:
                continue
            line = (
                f"| {name} | {fmt(row['rps'])} | {fmt(row['vs_prefork'], '.2f')}x | "
                f"{fmt(row['p50_ms'], '.2f')} | {fmt(row['p99_ms'], '.2f')} | {row['errors']} | "
                f"{row['listen_overflows']} |"
            )
            if preload:
                uss = (
                    f"{row['worker_uss_mb_mean']} / {row['worker_uss_mb_max']}"
                    if "worker_uss_mb_mean" in row
                    else "-"
                )
                line += f" {uss} | {row.get('master_uss_mb', '-')} |"
            out.append(line)
        out.append("")
    ops = data.get("operations")
    if ops:
        out += ["### Operations", "", "| measurement | prefork | gunicorn |", "|---|---:|---:|"]

        def med(values: list[float]) -> str:
            return f"{statistics.median(values):.1f} (max {max(values):.1f})" if values else "-"

        for label, key in (
            ("respawn-to-accepting after SIGKILL, ms", "respawn_ms"),
            ("idle SIGTERM-to-exit, ms", "idle_stop_ms"),
        ):
            vals = ops.get(key, {})
            out.append(
                f"| {label} | {med(vals.get('prefork', []))} | {med(vals.get('gunicorn', []))} |"
            )
        wake = ops.get("idle_wakeups", {})
        for who, label in (
            ("master_per_s", "idle master wake-ups/s"),
            ("worker_per_s_mean", "idle worker wake-ups/s (mean)"),
        ):
            cells = [
                fmt(wake[n][who], ".2f") if n in wake else "-" for n in ("prefork", "gunicorn")
            ]
            out.append(f"| {label} | {cells[0]} | {cells[1]} |")
        rel = ops.get("reload", {})
        if rel.get("implemented"):
            out.append(
                f"| throughput during SIGHUP reloads / steady | {rel['ratio']:.2f}x "
                f"({rel['sighups']} HUPs, {rel['errors_during']} errors) | - |"
            )
        elif rel:
            out.append(
                "| throughput during SIGHUP reloads / steady | "
                "**not yet measurable: reload not implemented** | - |"
            )
        ceiling = ops.get("cpu_ceiling")
        if ceiling:
            out.append(
                f"| CPU-bound ceiling: {ceiling['cpus']} CPUs / {ceiling['burn_ms']:.2f} ms of "
                f"work per request, req/s | {ceiling['ceiling_rps']:.0f} | - |"
            )
        for sp in ops.get("spurious", []):
            out.append(
                f"| spurious wake-ups per accepted connection, {sp['workers']} workers | "
                f"{fmt(sp['per_accept'], '.4f')} ({sp['empty_accepts']} / "
                f"{sp['requests']}) | - |"
            )
        out.append("")
    return "\n".join(out)


def chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = data["results"]
    keys = [k for k in WORKLOADS if k in results]
    names = ["prefork", "floor", "gunicorn", "gunicorn-preload", "sync", "thread", "fork"]
    names = [n for n in names if any(n in results[k] for k in keys)]
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, key in enumerate(keys):
            row = results[key].get(name)
            if row and row.get("vs_prefork") is not None:
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(row["vs_prefork"])
        ax.bar(xs, ys, width, label=name)
    ax.axhline(1.0, color="black", linewidth=0.8)
    short = {
        "http": "HTTP hello",
        "tcp": "TCP echo",
        "udp": "UDP echo",
        "cpu": "CPU-bound",
        "preload": "HTTP, 100 MB preloaded",
    }
    ax.set_xticks(range(len(keys)), [short.get(k, k) for k in keys])
    ax.set_ylabel("throughput relative to prefork (same run)")
    meta = data["machine"]
    ax.set_title(
        f"prefork benchmark, {data['config']['workers']} workers, "
        f"{meta['usable_cpus']} CPUs, {meta['date']}"
    )
    ax.legend(ncols=4, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"chart written to {path}")
