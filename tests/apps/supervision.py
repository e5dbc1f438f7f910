"""A handler for the supervision tests: the first line of a request says what to do.

``pid``   answer this worker's pid;
``wait``  answer the pid, then wait for one more line (a busy worker, for as long as the
          client likes);
``hang``  start ``sleep 300``, answer "WORKER_PID CHILD_PID", then sleep far past any timeout;
``spin``  answer the pid, then loop in pure Python, holding the GIL, until killed;
``leak``  keep LEAK_MB more resident memory for the life of the worker, answer the pid.
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import time

LEAK_MB = 8
_leaked: list[bytes] = []


def spin_forever() -> None:
    while True:
        pass


class Supervised(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        command = self.rfile.readline().strip()
        pid = os.getpid()
        if command == b"hang":
            child = subprocess.Popen(["sleep", "300"])
            self._say(b"%d %d\n" % (pid, child.pid))
            time.sleep(300)
        elif command == b"leak":
            _leaked.append(b"x" * (LEAK_MB * 1024 * 1024))  # written, so it is resident
        self._say(b"%d\n" % pid)
        if command == b"spin":
            spin_forever()
        elif command == b"wait":
            self.rfile.readline()

    def _say(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
