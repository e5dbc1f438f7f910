"""--cpu-affinity: each worker on one CPU of the master's, round robin by scoreboard slot."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from helpers import server_process, wait_for
from prefork.core.affinity import cpu_for_slot

USABLE = sorted(os.sched_getaffinity(0))


def test_cpu_for_slot_is_round_robin_over_the_usable_cpus() -> None:
    assert [cpu_for_slot(slot, {5, 1, 3}) for slot in range(5)] == [1, 3, 5, 1, 3]


@pytest.mark.skipif(len(USABLE) < 2, reason="needs two usable CPUs")
def test_two_workers_get_one_distinct_cpu_each_and_a_replacement_keeps_its_cpu() -> None:
    args = ("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0", "-w", "2",
            "--cpu-affinity")
    with server_process(*args) as server:
        workers = server.wait_workers(2)
        master = psutil.Process(server.pid)
        pinned = {w.pid: w.cpu_affinity() for w in workers}
        assert all(len(cpus) == 1 for cpus in pinned.values()), pinned
        cpus = {cpus[0] for cpus in pinned.values()}
        assert len(cpus) == 2 and cpus <= set(USABLE), pinned
        assert master.cpu_affinity() == USABLE  # the master itself is not pinned

        victim = workers[0]
        victim.send_signal(signal.SIGKILL)
        replacement = wait_for(
            lambda: [w for w in server.wait_workers(2) if w.pid not in pinned],
            what="a replacement worker")[0]
        assert replacement.cpu_affinity() == pinned[victim.pid]  # same slot, same CPU
        server.stop_ok()


def test_without_the_flag_workers_keep_every_cpu() -> None:
    with server_process("serve", "workers.http_hello:Hello", "-b", "127.0.0.1:0",
                        "-w", "2") as server:
        workers = server.wait_workers(2)
        assert all(w.cpu_affinity() == USABLE for w in workers)
        server.stop_ok()
