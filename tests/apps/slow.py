"""Handlers for the tests: slow requests, subprocesses, errors."""

from __future__ import annotations

import os
import socketserver
import subprocess
import time

from prefork import Ready


class Slow(socketserver.StreamRequestHandler):
    """Reads a line with a number of seconds, sleeps that long, then answers in two parts."""

    def handle(self) -> None:
        seconds = float(self.rfile.readline())
        self.wfile.write(b"started\n")
        self.wfile.flush()
        time.sleep(seconds)
        self.wfile.write(b"done %d\n" % os.getpid())


class SpawnsChild(socketserver.StreamRequestHandler):
    """Starts a long-lived subprocess, reports its pid and its own, then waits for the client."""

    ready_when = Ready.ACCEPTED  # it speaks first

    def handle(self) -> None:
        child = subprocess.Popen(["sleep", "300"])
        self.wfile.write(b"%d %d\n" % (os.getpid(), child.pid))
        self.wfile.flush()
        self.rfile.readline()


class Fails(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        raise RuntimeError("handler exploded on purpose")


class FailsOnBoom(socketserver.StreamRequestHandler):
    """Echoes lines; the line ``boom`` raises (a real bug), a reset mid-read is the client's."""

    def handle(self) -> None:
        while line := self.rfile.readline(1024):
            if line.strip() == b"boom":
                raise RuntimeError("boom on purpose")
            self.wfile.write(line)
            self.wfile.flush()


class Pid(socketserver.StreamRequestHandler):
    ready_when = Ready.ACCEPTED  # it speaks first

    def handle(self) -> None:
        self.wfile.write(b"%d\n" % os.getpid())


NotAHandler = 42


class Hold(socketserver.StreamRequestHandler):
    """Keeps its worker busy until the client closes the connection.  It speaks first, so it
    runs at accept, not once the client sent something."""

    ready_when = Ready.ACCEPTED

    def handle(self) -> None:
        self.wfile.write(b"held\n")
        self.wfile.flush()
        self.rfile.readline()
