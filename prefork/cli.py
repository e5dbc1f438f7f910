"""The ``prefork`` command (also ``python -m prefork``).

``prefork serve [APP] -b SPEC -w N --mode prefork|fork|thread|sync``

Exit status: 0 after a requested stop, 2 for bad input (a bad bind spec, an APP that does not
import or is no handler, a port in use), 3 when the workers keep failing to boot.  Input errors
end in one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import selectors
import signal
import socketserver
import sys
import threading
from collections.abc import Sequence

from . import __version__
from .app import DEFAULT_APP, MODES, AppError, is_http_handler, load_handler, server_class
from .master import BootError
from .servers import PreforkMixIn
from .signals import SignalQueue
from .sockets import BindSpec, BindSpecError, format_address, parse_bind

EXIT_USAGE = 2
EXIT_BOOT_FAILURE = BootError.exit_status
DEFAULT_BIND = "127.0.0.1:8000"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

log = logging.getLogger("prefork.master")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"prefork: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prefork", description="Run a socketserver service across CPU cores.")
    parser.add_argument("--version", action="version", version=f"prefork {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve a handler (the built-in demo by default)")
    serve.add_argument(
        "app", nargs="?", default=None,
        help=f"module:HandlerClass, importable from the current directory (default: the demo, "
        f"{DEFAULT_APP})",
    )
    serve.add_argument(
        "-b", "--bind", default=DEFAULT_BIND, metavar="SPEC",
        help="HOST:PORT, :PORT, [IPV6]:PORT, unix:/path, udp://HOST:PORT or unix-dgram:/path "
        f"(default {DEFAULT_BIND})",
    )
    serve.add_argument(
        "-w", "--workers", type=int, default=None, metavar="N",
        help="worker processes (default: the number of usable CPUs)",
    )
    serve.add_argument(
        "--mode", default="prefork", metavar="MODE",
        help="prefork (default), or the stdlib's fork, thread or sync server, same handler",
    )
    serve.add_argument(
        "--graceful-timeout", type=float, default=None, metavar="S",
        help="seconds a graceful stop (SIGTERM) waits for requests in flight (default 30)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"],
    )
    return parser


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        return serve(args)
    except (UsageError, AppError, BindSpecError) as exc:
        print(f"prefork: {exc}", file=sys.stderr)
        return EXIT_USAGE


def make_server(args: argparse.Namespace) -> tuple[socketserver.BaseServer, BindSpec]:
    if args.mode not in MODES:
        raise UsageError(f"unknown mode {args.mode!r}: choose one of {', '.join(MODES)}")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers must be at least 1, not {args.workers}")
    if args.graceful_timeout is not None and args.graceful_timeout < 0:
        raise UsageError("--graceful-timeout must not be negative")
    spec = parse_bind(args.bind)
    handler = load_handler(args.app or DEFAULT_APP)
    cls = server_class(args.mode, spec, handler)
    kwargs = {}
    if issubclass(cls, PreforkMixIn):
        if args.graceful_timeout is not None:
            cls.graceful_timeout = args.graceful_timeout
        if args.workers is not None:
            if args.workers > cls.max_children:
                raise UsageError(
                    f"--workers {args.workers} exceeds max_children {cls.max_children}"
                )
            kwargs["workers"] = args.workers
    try:
        server = cls(spec.address, handler, **kwargs)
    except OSError as exc:
        raise UsageError(f"cannot bind {spec}: {exc.strerror or exc}") from None
    return server, spec


def serve(args: argparse.Namespace) -> int:
    server, spec = make_server(args)
    with server:
        where = format_address(spec.kind, spec.family, server.server_address)
        handler = server.RequestHandlerClass
        if isinstance(handler, type) and is_http_handler(handler) and spec.kind == "tcp":
            where = f"http://{where}/"
        workers = f", {server.workers} workers" if isinstance(server, PreforkMixIn) else ""
        log.info(
            "prefork %s: serving %s on %s (mode %s%s, pid %d)",
            __version__, args.app or DEFAULT_APP, where, args.mode, workers, os.getpid(),
        )
        if isinstance(server, PreforkMixIn):
            try:
                server.serve_forever()
            except BootError as exc:
                print(f"prefork: {exc}", file=sys.stderr)
                return EXIT_BOOT_FAILURE
        else:
            serve_stdlib(server)
    return 0


def serve_stdlib(server: socketserver.BaseServer) -> None:
    """Run a stdlib server in a thread until TERM, INT or QUIT, then shut it down."""
    stops = SignalQueue(STOP_SIGNALS)
    stops.install()
    thread = threading.Thread(target=server.serve_forever, name="serve_forever", daemon=True)
    thread.start()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(stops.read_fd, selectors.EVENT_READ)
            while not stops.drain():
                selector.select()
        server.shutdown()
    finally:
        stops.close()
        thread.join()
