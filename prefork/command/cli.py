"""The ``prefork`` command (also ``python -m prefork``).

``prefork serve [APP] -b SPEC -w N --mode prefork|fork|thread|sync ...`` runs a server;
``prefork status|reload|scale|stop`` talk to a running master through its control socket;
``prefork jobs DB_URL module:Handler`` runs a job pool, ``prefork enqueue DB_URL JSON`` adds a
job, ``jobs-cancel`` and ``jobs-status`` (command/jobs.py); ``prefork rpcgen FILE.x`` compiles
an RPC language file to Python (command/rpcgen.py).

Exit status: 0 after a requested stop, 2 for bad input (a bad bind spec or setting, an APP that
does not import or is no handler, a port in use; a control command's bad argument, or no way to
find the master), 3 when the workers keep failing to boot, 1 when a control command fails (no
master there, a reload that did not take over, a stop that did not end within --timeout).
Errors end in one line on stderr, never a traceback.

``prefork reload`` waits for the outcome: it exits 0 once the new generation serves.  ``prefork
stop --wait`` returns once the master process has exited.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import socketserver
import sys
from collections.abc import Sequence
from typing import Any

from prefork import __version__
from prefork.command.app import DEFAULT_APP, AppError, is_http_handler
from prefork.command.client import (
    CONTROL_SUFFIX,
    RELOAD_TIMEOUT,
    STOP_TIMEOUT,
    UsageError,
    control_command,
)
from prefork.command.config import ConfigError, describe
from prefork.command.jobs import COMMANDS as JOB_COMMANDS
from prefork.command.jobs import add_commands as add_job_commands
from prefork.command.rpcgen import add_command as add_rpcgen_command
from prefork.command.rpcgen import run_rpcgen
from prefork.command.runner import StartError, configure
from prefork.command.setting import Setting
from prefork.command.settings import SERVE_KEYS, SETTINGS
from prefork.command.stdlib import serve_stdlib
from prefork.command.watch import WatchError, start_watcher, stop_watcher
from prefork.core.servers import PreforkMixIn
from prefork.core.sockets import BindSpec, BindSpecError, format_address
from prefork.core.tls import TLSMixIn
from prefork.master import sizing
from prefork.master.supervisor import BootError
from prefork.master.upgrade import ENV_OLD_MASTER
from prefork.ops import logs, pidfile
from prefork.ops.accesslog import setup_access_log
from prefork.ops.control import ControlError
from prefork.ops.logs import LogFileError, capture_output
from prefork.ops.pidfile import PidfileError
from prefork.ops.titles import counted

EXIT_USAGE = 2
EXIT_BOOT_FAILURE = BootError.exit_status
EXIT_CONTROL = 1

log = logging.getLogger("prefork.master")
KINDS = {"wsgi": "a WSGI application", "http": "an http.server handler",
         "stream": "a stream handler", "datagram": "a datagram handler",
         "base": "a socketserver handler"}


# Mistakes a user can make: one line on stderr, exit status 2.
USER_ERRORS = (StartError, AppError, BindSpecError, ConfigError, WatchError, LogFileError,
               PidfileError, UsageError)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"prefork: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="prefork", description="Run a socketserver service across CPU cores.")
    parser.add_argument("--version", action="version", version=f"prefork {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = commands.add_parser("serve", help="serve a handler (the built-in demo by default)")
    opt = serve.add_argument
    opt("-c", "--config", default=None, metavar="FILE",
        help="TOML settings (default: [tool.prefork] in ./pyproject.toml)")
    opt("--print-config", action="store_true", help="show the effective settings and exit")
    add_setting_flags(serve)
    for name, helptext in (("status", "show the pool"), ("top", "a live view of the pool"),
                           ("reload", "start a new generation"),
                           ("scale", "set the pool size"), ("stop", "stop the server")):
        sub = commands.add_parser(name, help=helptext)
        sub.add_argument("--control", default=None, metavar="PATH")
        sub.add_argument("--pidfile", default=None, metavar="PATH")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="the raw status as JSON")
        if name == "top":
            sub.add_argument("-i", "--interval", type=float, default=1.0, metavar="S")
            sub.add_argument("--count", type=int, default=0, metavar="N",
                             help="stop after N screens (default: until Ctrl-C)")
        if name == "scale":
            sub.add_argument("workers", help="N, +N or -N")
        if name == "stop":
            sub.add_argument("--quick", action="store_true", help="quick stop, like SIGINT")
            sub.add_argument("--wait", action="store_true",
                             help="return only once the master has exited")
        if name in ("reload", "stop"):
            default = RELOAD_TIMEOUT if name == "reload" else STOP_TIMEOUT
            what = "the new generation" if name == "reload" else "the exit (with --wait)"
            sub.add_argument("--timeout", type=float, default=default, metavar="S",
                             help=f"seconds to wait for {what} (default: {default:g})")
    add_job_commands(commands, add_setting_flags)
    add_rpcgen_command(commands)
    return parser


def add_setting_flags(parser: argparse.ArgumentParser,
                      only: Sequence[str] | None = None) -> None:
    """One option per setting that has flags (those named in ``only``, if given), from the
    settings table; not given: None."""
    for setting in SETTINGS:
        if not setting.flags or (only is not None and setting.name not in only):
            continue
        kwargs: dict[str, Any] = {"default": None, "help": _help(setting)}
        default = setting.default
        if not setting.flags[0].startswith("-"):  # the positional APP
            parser.add_argument(setting.name, nargs="?", metavar=setting.flags[0], **kwargs)
            continue
        if isinstance(default, bool):  # --flag, or --flag/--no-flag when it is on by default
            kwargs["action"] = argparse.BooleanOptionalAction if default else "store_true"
        elif isinstance(default, list):
            kwargs["action"] = "append"
        elif isinstance(default, (int, float)):
            kwargs["type"] = type(default)
        if setting.metavar:
            kwargs["metavar"] = setting.metavar
        parser.add_argument(*setting.flags, dest=setting.name, **kwargs)


def _help(setting: Setting[Any]) -> str:
    text = setting.help
    if setting.default or setting.unset:
        text += f" (default: {setting.shown_default()})"
    return text.replace("%", "%%")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            return serve(args)
        if args.command in JOB_COMMANDS:
            return JOB_COMMANDS[args.command](args)
        if args.command == "rpcgen":
            return run_rpcgen(args)
        return control_command(args)
    except USER_ERRORS as exc:
        print(f"prefork: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ControlError as exc:
        print(f"prefork: {exc}", file=sys.stderr)
        return EXIT_CONTROL


def serve(args: argparse.Namespace) -> int:
    cli: dict[str, Any] = {key: getattr(args, key) for key in SERVE_KEYS}
    if cli["pidfile"] and not cli["control"]:
        cli["control"] = cli["pidfile"] + CONTROL_SUFFIX
    runner = configure(cli, args.config)
    config = runner.config
    if args.print_config:
        print(describe(config, effective=True), end="")
        return 0
    if config.check_config:  # nothing bound, nothing written: the probe imports the APP
        kind = runner.check()
        print(f"prefork: the configuration is valid; {config.app or DEFAULT_APP} is "
              f"{KINDS.get(kind, kind)}")
        return 0
    # Claimed before anything is written or bound: a live master keeps its pid file.  The new
    # master of an upgrade (USR2) leaves it to the old one until its pool is ready.
    if not upgrading():
        pidfile.claim_for(config)
    if config.reload and config.mode != "prefork":
        raise StartError(f"--reload needs --mode prefork, not {config.mode}")
    watcher = 0
    try:
        logs.setup_for(config)
        if config.mode != "prefork":
            capture_output()  # the application runs in this process
        try:
            setup_access_log(config.access_logfile, config.access_logformat)
        except OSError as exc:
            raise LogFileError(config.access_logfile or "", exc.strerror or str(exc),
                               exc.errno or 0) from None
        watcher = start_watcher() if config.reload else 0
        server, specs = runner.make_server()
        with server:
            announce(server, specs, config.mode, config.app or DEFAULT_APP)
            runner.call("on_starting", server)
            try:
                if isinstance(server, PreforkMixIn):
                    # What start-up built (settings, imports, the servers) is never garbage
                    # the master collects: frozen, the collection at the interpreter's exit
                    # skips it.  Measured (scripts/bench_idle_term.py, strace -f -tt): after
                    # TERM the workers were gone in ~10 ms, then that collection took the
                    # master ~150-300 ms; frozen, ~10 ms (idle TERM median 207 -> 61 ms on
                    # the loaded test machine).
                    gc.freeze()
                    try:
                        server.serve_forever()
                    except BootError as exc:
                        print(f"prefork: {exc}", file=sys.stderr)
                        return EXIT_BOOT_FAILURE
                    except (ControlError, OSError) as exc:  # control or metrics socket
                        print(f"prefork: {exc}", file=sys.stderr)
                        return EXIT_USAGE
                else:
                    serve_stdlib(server)
            finally:
                runner.call("on_exit", server)
    finally:
        if watcher:
            stop_watcher(watcher)
        pidfile.remove_for(config)  # only while it names this process
    return 0


def upgrading() -> bool:
    """True in the new master of a USR2 upgrade (its parent, the old master, holds the pid file)."""
    old = os.environ.get(ENV_OLD_MASTER, "")
    return old.isdigit() and int(old) == os.getppid()


def announce(server: socketserver.BaseServer, specs: list[BindSpec], mode: str, app: str) -> None:
    servers = server.listening_servers() if isinstance(server, PreforkMixIn) else [server]
    places = []
    for one, spec in zip(servers, specs, strict=True):
        where = format_address(spec.kind, spec.family, one.server_address)
        handler = one.RequestHandlerClass
        if is_http_handler(handler) and spec.kind == "tcp":
            where = f"{'https' if isinstance(one, TLSMixIn) else 'http'}://{where}/"
        places.append(where)
    workers = (f", {counted(sizing.configured(server), 'worker')}"
               if isinstance(server, PreforkMixIn) else "")
    log.info("prefork %s: serving %s on %s (mode %s%s, pid %d)",
             __version__, app, " ".join(places), mode, workers, os.getpid())
