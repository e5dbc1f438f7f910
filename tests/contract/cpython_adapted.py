"""CPython's own server tests, run on the Prefork classes: ``python cpython_adapted.py MODULE``.

MODULE is ``test_httpservers``, ``test_wsgiref`` or ``test_xmlrpc`` (CPython's test package, as
installed with the interpreter).  The test methods run unchanged; what is adapted is only where
they start their server, so that it is a pool (``PreforkMixIn`` over the same stdlib server
class, 2 workers) and not the stdlib server in a thread:

- ``test_httpservers``: the module's ``HTTPServer`` (what ``TestServerThread`` starts and stops
  with ``serve_forever()``/``shutdown()`` from its thread) is a pool.
- ``test_wsgiref``: ``run_amock()``, which fed a request to a socketless MockServer, serves it
  on a pool of ``WSGIServer`` over a real socket instead (the request, then a half-close for
  the end the BytesIO had; the worker's ``sys.stderr`` is a file the test reads back).
- ``test_xmlrpc``: ``http_server()``/``http_multi_server()`` build the same servers (the same
  registrations, the same ``get_request()`` override) as pools; a test's tearDown stops its pool
  (the thread function stopped after ``numrequests`` ``handle_request()`` calls).

Processes share no memory, so two things the tests took from sharing the server's process are
given back, and said so here: the workers follow the test's working directory (the tests
``chdir`` after starting the server; a worker reads the master's ``/proc/PID/cwd`` before each
request), and the keep-alive tests' ``myRequests`` (a class attribute the handler appends to) is
a list kept in a file.  A test that cannot run across processes -- it changes or reads the
handler's class or the server's process after the workers forked -- is skipped, with the reason
in :data:`NOT_APPLICABLE`.

Prints one JSON line per test class: its name, the tests passed, failed and skipped, and how many
worker processes served its requests.
"""

from __future__ import annotations

import contextlib
import http.server
import importlib
import io
import json
import os
import socket
import sys
import tempfile
import threading
import unittest
import xmlrpc.server
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import prefork

WORKERS = 2

# Per module, the test classes that start a server (the others test a handler or a client
# without one: nothing of the pool's to run them on).
CLASSES = {
    "test_httpservers": ["BaseHTTPServerTestCase", "RequestHandlerLoggingTestCase",
                         "SimpleHTTPServerTestCase", "CGIHTTPServerTestCase"],
    "test_wsgiref": ["IntegrationTests"],
    "test_xmlrpc": ["SimpleServerTestCase", "SimpleServerEncodingTestCase",
                    "MultiPathServerTestCase", "KeepaliveServerTestCase1",
                    "KeepaliveServerTestCase2", "GzipServerTestCase", "HeadersServerTestCase",
                    "FailingServerTestCase"],
}

# Tests that cannot run across processes, and why.
HANDLER_STDERR = ("captures the test process's sys.stderr with support.captured_stderr(): the "
                  "handler logs in the worker")
CLASS_CHANGED = "changes {} on the handler's class after the workers forked"
CLASS_READ = "reads {}, which the handler set on its class in the worker"
NOT_APPLICABLE: dict[str, str] = {
    "test_httpservers.RequestHandlerLoggingTestCase.test_get": HANDLER_STDERR,
    "test_httpservers.RequestHandlerLoggingTestCase.test_err": HANDLER_STDERR,
    "test_httpservers.CGIHTTPServerTestCase.test_cgi_path_in_sub_directories":
        CLASS_CHANGED.format("CGIHTTPRequestHandler.cgi_directories"),
    "test_wsgiref.IntegrationTests.test_interrupted_write":
        "serves with the stdlib's handle_request() in the test's main thread and interrupts "
        "its send() with pthread_kill(): the send is in a worker",
    "test_xmlrpc.FailingServerTestCase.test_fail_no_info":
        CLASS_CHANGED.format("SimpleXMLRPCRequestHandler.MessageClass"),
    "test_xmlrpc.FailingServerTestCase.test_fail_with_info":
        CLASS_CHANGED.format("SimpleXMLRPCRequestHandler.MessageClass"),
    "test_xmlrpc.GzipServerTestCase.test_gzip_request": CLASS_READ.format("content_length"),
    "test_xmlrpc.GzipServerTestCase.test_gzip_response":
        CLASS_CHANGED.format("encode_threshold"),
    "test_xmlrpc.HeadersServerTestCase.test_header": CLASS_READ.format("test_headers"),
    "test_xmlrpc.HeadersServerTestCase.test_header_many": CLASS_READ.format("test_headers"),
    "test_xmlrpc.HeadersServerTestCase.test_header_empty": CLASS_READ.format("test_headers"),
    "test_xmlrpc.HeadersServerTestCase.test_header_tuple": CLASS_READ.format("test_headers"),
    "test_xmlrpc.HeadersServerTestCase.test_header_items": CLASS_READ.format("test_headers"),
}


SERVED_BY = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115 - the pid of each request


class FollowsCwd:
    """A worker serves each request in the master's working directory (the test process's,
    which the tests change after the server started), and notes its pid in SERVED_BY."""

    def finish_request(self, request: Any, client_address: Any) -> None:
        with contextlib.suppress(OSError):
            os.chdir(os.readlink(f"/proc/{os.getppid()}/cwd"))
        with open(SERVED_BY.name, "a", encoding="ascii") as file:
            file.write(f"{os.getpid()}\n")
        super().finish_request(request, client_address)  # type: ignore[misc]


def served_by() -> set[int]:
    """The pids that served requests since the last call."""
    with open(SERVED_BY.name, "r+", encoding="ascii") as file:
        pids = {int(line) for line in file}
        file.truncate(0)
    return pids


def pool_class(base: type, name: str) -> type[Any]:
    # A test that leaves its client's kept-alive connection open (the stdlib's servers
    # stopped after numrequests connections) is not waited for long at the pool's stop.
    return type(name, (prefork.PreforkMixIn, FollowsCwd, base),
                {"workers": WORKERS, "allow_reuse_address": True, "graceful_timeout": 1.0})


# -- test_httpservers ------------------------------------------------------------------------

def adapt_httpservers(module: Any) -> None:
    module.HTTPServer = pool_class(http.server.HTTPServer, "PoolHTTPServer")


# -- test_wsgiref ----------------------------------------------------------------------------

def adapt_wsgiref(module: Any) -> None:
    server_class = pool_class(WSGIServer, "PoolWSGIServer")

    def run_amock(app: Any = module.hello_app,
                  data: bytes = b"GET / HTTP/1.0\n\n") -> tuple[bytes, str]:
        """run_amock() on a pool: the same request, the handler's output and its stderr."""
        with tempfile.NamedTemporaryFile("w+", encoding="utf-8") as err:
            saved, sys.stderr = sys.stderr, open(err.name, "a", buffering=1)  # noqa: SIM115
            try:
                with serving(server_class(("127.0.0.1", 0), WSGIRequestHandler),
                             lambda s: s.set_app(app)) as server:
                    out = exchange(server.server_address, data)
            finally:
                sys.stderr.close()
                sys.stderr = saved
            return out, err.read()

    module.run_amock = run_amock


@contextlib.contextmanager
def serving(server: Any, prepare: Callable[[Any], None]) -> Iterator[Any]:
    prepare(server)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def exchange(address: tuple[str, int], data: bytes) -> bytes:
    with socket.create_connection(address, timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # the end of the request, as the BytesIO's end
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


# -- test_xmlrpc -----------------------------------------------------------------------------

class SharedRecords:
    """``myRequests`` of the keep-alive tests, kept in a file: a list of per-connection lists
    that a worker appends to and the test reads (the connections come one after the other)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _lines(self) -> list[Any]:
        with open(self.path, encoding="utf-8") as file:
            return [json.loads(line) for line in file]

    def _write(self, record: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def append(self, item: list[Any]) -> None:
        self._write(["connection", len(item)])

    def __len__(self) -> int:
        return sum(1 for record in self._lines() if record[0] == "connection")

    def __getitem__(self, index: int) -> _Connection:
        return _Connection(self, index if index >= 0 else len(self) + index)


class _Connection:
    def __init__(self, records: SharedRecords, index: int) -> None:
        self.records, self.index = records, index

    def append(self, line: bytes) -> None:
        self.records._write(["request", self.index, line.decode("latin-1")])

    def __len__(self) -> int:
        return sum(1 for r in self.records._lines() if r[0] == "request" and r[1] == self.index)


POOLS: list[Any] = []  # the pool the running test started


def adapt_xmlrpc(module: Any) -> None:
    simple = pool_class(xmlrpc.server.SimpleXMLRPCServer, "PoolXMLRPCServer")
    multi = pool_class(xmlrpc.server.MultiPathXMLRPCServer, "PoolMultiPathXMLRPCServer")

    def http_server(evt: threading.Event, numrequests: int, requestHandler: Any = None,
                    encoding: str | None = None) -> None:
        """test_xmlrpc.http_server()'s server, as a pool."""

        class TestInstanceClass:
            def div(self, x: int, y: int) -> int:
                return x // y

            def _methodHelp(self, name: str) -> str | None:
                return "This is the div function" if name == "div" else None

            class Fixture:
                @staticmethod
                def getData() -> str:
                    return "42"

        serv = server_of(simple, requestHandler or xmlrpc.server.SimpleXMLRPCRequestHandler,
                         encoding=encoding)
        serv.register_introspection_functions()
        serv.register_multicall_functions()
        serv.register_function(pow)
        serv.register_function(lambda x: x, "têšt")

        @serv.register_function
        def my_function() -> bool:
            """This is my function"""
            return True

        @serv.register_function(name="add")
        def _(x: Any, y: Any) -> Any:
            return x + y

        serv.register_instance(TestInstanceClass(), allow_dotted_names=True)
        serve(module, serv, evt)

    def http_multi_server(evt: threading.Event, numrequests: int,
                          requestHandler: Any = None) -> None:
        """test_xmlrpc.http_multi_server()'s server, as a pool."""

        class MyRequestHandler(requestHandler or xmlrpc.server.SimpleXMLRPCRequestHandler):
            rpc_paths: ClassVar[list[str]] = []

        class BrokenDispatcher:
            def _marshaled_dispatch(self, data: Any, dispatch_method: Any = None,
                                    path: Any = None) -> bytes:
                raise RuntimeError("broken dispatcher")

        serv = server_of(multi, MyRequestHandler)
        paths = ["/foo", "/foo/bar", "/foo?k=v", "/foo#frag", "/foo?k=v#frag", "", "/",
                 "/RPC2", "?k=v", "#frag"]
        for path in paths:
            d = serv.add_dispatcher(path, xmlrpc.server.SimpleXMLRPCDispatcher())
            d.register_introspection_functions()
            d.register_multicall_functions()
            d.register_function(lambda p=path: p, "test")
        serv.get_dispatcher(paths[0]).register_function(pow)
        serv.get_dispatcher(paths[1]).register_function(lambda x, y: x + y, "add")
        serv.add_dispatcher("/is/broken", BrokenDispatcher())
        serve(module, serv, evt)

    module.http_server = http_server
    module.http_multi_server = http_multi_server
    module.BaseServerTestCase.threadFunc = staticmethod(http_server)
    module.MultiPathServerTestCase.threadFunc = staticmethod(http_multi_server)
    for case in (module.BaseServerTestCase, module.FailingServerTestCase):
        case.tearDown = stopping_first(case.tearDown)

    def setUp(self: Any) -> None:
        """BaseKeepaliveServerTestCase.setUp: an empty myRequests, then the server."""
        records = tempfile.NamedTemporaryFile(delete=False)  # noqa: SIM115
        records.close()
        self.addCleanup(os.unlink, records.name)
        self.RequestHandler.myRequests = SharedRecords(records.name)  # before the fork
        module.BaseServerTestCase.setUp(self)

    module.BaseKeepaliveServerTestCase.setUp = setUp


def server_of(cls: type[Any], handler: Any, encoding: str | None = None) -> Any:
    class MyXMLRPCServer(cls):  # type: ignore[misc,valid-type]
        def get_request(self) -> tuple[socket.socket, Any]:
            # As test_xmlrpc's: the accepted socket blocking.
            s, port = self.socket.accept()
            s.setblocking(True)
            return s, port

    return MyXMLRPCServer(("localhost", 0), handler, encoding=encoding, logRequests=False)


def serve(module: Any, serv: Any, evt: threading.Event) -> None:
    """Serve until the test's tearDown stops the pool; ``evt`` set when ready and when done."""
    module.ADDR, module.PORT = serv.socket.getsockname()
    module.URL = f"http://{module.ADDR}:{module.PORT}"
    POOLS.append(serv)
    evt.set()
    try:
        serv.serve_forever()
    finally:
        serv.server_close()
        module.PORT = None
        evt.set()


def stopping_first(tearDown: Callable[[Any], None]) -> Callable[[Any], None]:
    def stop_then_tear_down(self: Any) -> None:
        while POOLS:
            POOLS.pop().shutdown()
        tearDown(self)
    return stop_then_tear_down


# -- the run ---------------------------------------------------------------------------------

ADAPT = {"test_httpservers": adapt_httpservers, "test_wsgiref": adapt_wsgiref,
         "test_xmlrpc": adapt_xmlrpc}


def run(name: str) -> list[dict[str, Any]]:
    module = importlib.import_module(f"test.{name}")
    ADAPT[name](module)
    results = []
    for class_name in CLASSES[name]:
        case = getattr(module, class_name)
        for test in unittest.TestLoader().getTestCaseNames(case):
            reason = NOT_APPLICABLE.get(f"{name}.{class_name}.{test}")
            if reason:
                setattr(case, test, unittest.skip(reason)(getattr(case, test)))
        suite = unittest.TestLoader().loadTestsFromTestCase(case)
        stream = io.StringIO()
        outcome = unittest.TextTestRunner(stream=stream, verbosity=0).run(suite)
        bad = {t.id().rpartition(".")[2]: text for t, text in (*outcome.failures,
                                                                *outcome.errors)}
        skipped = {t.id().rpartition(".")[2]: why for t, why in outcome.skipped}
        passed = outcome.testsRun - len(bad) - len(skipped)
        pids = served_by()
        results.append({"class": class_name, "passed": passed, "failed": bad,
                        "skipped": skipped, "workers": len(pids - {os.getpid()}),
                        "in_this_process": os.getpid() in pids})
    return results


def main() -> None:
    try:
        for record in run(sys.argv[1]):
            print(json.dumps(record), flush=True)
    finally:
        os.unlink(SERVED_BY.name)


if __name__ == "__main__":
    main()
