"""From a :class:`~prefork.command.config.Config` to a running server: the listener (bound, or
inherited from systemd), the server class with the configured tunables and hooks, the pid file,
and what a reload (HUP) re-reads.

Hooks are importable callables named in the config and called with the server first:
``on_starting(server)`` and ``on_exit(server)`` in the master around serving;
``pre_fork(server, worker)`` in the master before each fork; ``post_fork(server, worker)`` and
``post_worker_init(server, worker)`` in the new worker before it reports ready (an exception
there is a boot failure); ``worker_exit(server, worker, status)`` in the master after a worker
was reaped; ``on_reload(server)`` in the master when a reload begins (an exception refuses the
reload).  An exception in a hook is logged with its traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import socketserver
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from prefork.apps.loader import HandlerFactory, handler_kind
from prefork.command import rpcapp
from prefork.command.app import DEFAULT_APP, AppError, server_class
from prefork.command.config import ConfigError, load_config, resolve_hook
from prefork.command.probe import probe
from prefork.command.settings import (
    HOOK_NAMES,
    LIVE_SETTINGS,
    SERVER_SETTINGS,
    STDLIB_SETTINGS,
    Config,
    server_name,
)
from prefork.core import privileges
from prefork.core.contract import ReloadRefused, WorkerInfo
from prefork.core.keepalive import with_keep_alive
from prefork.core.proxyproto import ProxyProtocolMixIn, reads_header
from prefork.core.servers import PreforkMixIn
from prefork.core.sockets import BindSpec, Kind
from prefork.core.tls import TLSMixIn, server_context
from prefork.master import sizing
from prefork.ops import logs
from prefork.ops.sdnotify import listen_fds

log = logging.getLogger("prefork.master")

EXIT_APP = 2  # a worker or template that cannot load the APP: the same status as the command


class StartError(Exception):
    """The server cannot start as configured; one line for the user."""


def inherited_spec(sock: socket.socket) -> BindSpec:
    """The bind spec an inherited (systemd) socket stands for."""
    stream = sock.type == socket.SOCK_STREAM
    kind: Kind
    if sock.family == socket.AF_UNIX:
        kind = "unix" if stream else "unix-dgram"
    else:
        kind = "tcp" if stream else "udp"
    return BindSpec(kind, sock.family, sock.getsockname())


class Runner:
    """Builds the server for ``config``; ``reload_config()`` re-reads it for a HUP."""

    def __init__(self, config: Config, reread: Callable[[], Config]) -> None:
        self.config = config
        self.reread = reread
        self.hooks: dict[str, Callable[..., Any]] = {}
        self.start_dir: str | None = None  # the directory before --chdir (configure())
        for key in HOOK_NAMES:
            spec = config.get(key)
            if spec:
                self.hooks[key] = resolve_hook(spec, key=key)

    def _start_rules(self, specs: list[BindSpec]) -> privileges.Credentials | None:
        """What ties settings to this machine and to each other; the workers' credentials."""
        config = self.config
        try:
            credentials = privileges.of_workers(config)
        except privileges.PrivilegeError as exc:
            raise StartError(str(exc)) from None
        if credentials and config.mode != "prefork":
            raise StartError(f"user and group need --mode prefork, not {config.mode}")
        if len(specs) > 1 and config.mode != "prefork":
            raise StartError(f"several listeners need --mode prefork, not {config.mode}")
        if reads_header(config) and not all(spec.stream for spec in specs):
            raise StartError("--proxy-protocol needs stream listeners (TCP or unix), not UDP")
        if (config.keyfile or config.ca_certs) and not config.certfile:
            raise StartError("TLS: --keyfile and --ca-certs need --certfile")
        if (why := logs.refusal(config)) is not None:
            raise StartError(why)
        return credentials

    def _probe(
        self, credentials: privileges.Credentials | None,
    ) -> HandlerFactory | rpcapp.RPCApp:
        # prefork: the master never imports the APP (a probe child tells what it is; workers or
        # preload templates import it); the stdlib modes serve it in this very process.
        app = self.config.app or DEFAULT_APP
        if self.config.mode == "prefork":
            return probe(app, credentials)
        loaded = rpcapp.load(app)
        return rpcapp.RPCApp.of(loaded) if isinstance(loaded, type) else loaded.handler

    def check(self) -> str:
        """``--check-config``: everything ``make_server`` checks but binding; what the APP is.
        Raises StartError or AppError with one line."""
        config = self.config
        credentials = self._start_rules(config.bind_specs())
        if config.certfile:
            try:
                server_context(config.certfile, config.keyfile, config.ca_certs)
            except (OSError, ValueError) as exc:
                raise StartError(f"TLS: cannot load the certificate files: {exc}") from None
        handler = self._probe(credentials)
        return rpcapp.KIND if isinstance(handler, rpcapp.RPCApp) else handler_kind(handler)

    def make_server(self) -> tuple[socketserver.BaseServer, list[BindSpec]]:
        """The server for the first listener, with the others added to it (prefork mode)."""
        config = self.config
        inherited = listen_fds()
        specs = [inherited_spec(sock) for sock in inherited] if inherited else config.bind_specs()
        credentials = self._start_rules(specs)
        for path in logs.reopened_files(config):
            if credentials:
                # The workers reopen it on USR1 as that user (see core/privileges.py).
                with contextlib.suppress(FileNotFoundError):
                    privileges.chown(path, credentials)
        app = config.app or DEFAULT_APP
        handler = self._probe(credentials)
        servers: list[socketserver.BaseServer] = []
        try:
            for index, spec in enumerate(specs):
                sock = inherited[index] if inherited else None
                servers.append(self._one_server(spec, handler, app, sock))
            load_tls(servers, StartError)
        except BaseException:
            for server in servers:
                server.server_close()
            raise
        primary = servers[0]
        for other in servers[1:]:
            assert isinstance(primary, PreforkMixIn)
            primary.add_listener(other)
        return primary, specs

    def _one_server(
        self, spec: BindSpec, handler: HandlerFactory | rpcapp.RPCApp, app: str,
        inherited: socket.socket | None,
    ) -> socketserver.BaseServer:
        config = self.config
        rpc = handler if isinstance(handler, rpcapp.RPCApp) else None
        if rpc is not None:
            handler = rpc.handler(spec)  # the stand-in for this kind of listener
        assert not isinstance(handler, rpcapp.RPCApp)
        cls = server_class(config.mode, spec, handler)
        # listen(2)'s backlog, in every mode (the stdlib's own default is 5).
        cls = type(cls.__name__, (cls,), {"request_queue_size": config.backlog})
        if config.certfile:
            cls = self._tls_class(cls)
        if issubclass(cls, PreforkMixIn):
            cls = self._prefork_class(cls, app)  # the settings are class attributes
            if rpc is not None:  # the master registers the program with rpcbind
                cls = type(cls.__name__, (rpcapp.RPCServerMixIn, cls),
                           rpc.server_attrs(config.rpcbind))
        else:
            cls = self._stdlib_class(cls)
            handler = cast(HandlerFactory, with_keep_alive(handler))
        if inherited is None:
            try:
                return cls(spec.address, handler)
            except OSError as exc:
                raise StartError(f"cannot bind {spec}: {exc.strerror or exc}") from None
        # Built without binding, then given the socket systemd passed (already listening).
        make: Any = cls
        unbound: Any = make(spec.address, handler, bind_and_activate=False)
        unbound.socket.close()
        unbound.socket = inherited
        unbound.server_address = spec.address
        if isinstance(unbound, PreforkMixIn):
            unbound.adopt_socket_file()
        return unbound  # type: ignore[no-any-return]

    def _tls_class(self, base: type) -> type:
        config = self.config
        assert config.certfile
        attrs = {"certfile": config.certfile, "keyfile": config.keyfile,
                 "ca_certs": config.ca_certs}
        return type(base.__name__, (TLSMixIn, base), attrs)

    def _stdlib_class(self, base: type) -> type:
        """The stdlib modes: the settings their request path reads, as class attributes, and
        the PROXY protocol read in finish_request (a prefork worker: in its multiplexer).
        (``http.server`` handlers get KeepAliveHTTPMixIn, whose holds they refuse, for the
        proxy headers and the access log.)"""
        config = self.config
        attrs = {name: config.get(name) for name in STDLIB_SETTINGS}
        bases = (ProxyProtocolMixIn, base) if reads_header(config) else (base,)
        return type(base.__name__, bases, attrs)

    def _prefork_class(self, base: type, app: str) -> type:
        config, hooks, runner = self.config, self.hooks, self
        attrs: dict[str, Any] = {name: config.get(name) for name in SERVER_SETTINGS}
        attrs.update(
            name=server_name(config),
            # USR2 runs the same command line again; the new master inherits the socket.
            upgrade_argv=[sys.executable, *sys.orig_argv[1:]],
            upgrade_cwd=self.start_dir,  # where that command line was typed (before --chdir)
        )

        def pre_fork(server: PreforkMixIn, worker: WorkerInfo) -> None:
            if "pre_fork" in hooks:
                hooks["pre_fork"](server, worker)

        def load_app(server: PreforkMixIn) -> None:
            runner.load_app(server, app)

        def post_fork(server: PreforkMixIn, worker: WorkerInfo) -> None:
            for key in ("post_fork", "post_worker_init"):
                if key in hooks:
                    hooks[key](server, worker)

        def worker_exit(server: PreforkMixIn, worker: WorkerInfo, status: int) -> None:
            if "worker_exit" in hooks:
                hooks["worker_exit"](server, worker, status)

        def prepare_reload(server: PreforkMixIn) -> Callable[[], None]:
            return runner.prepare_reload(server, app)

        attrs.update(pre_fork=pre_fork, post_fork=post_fork, worker_exit=worker_exit,
                     prepare_reload=prepare_reload, load_app=load_app)
        return type(base.__name__, (base,), attrs)

    def load_app(self, server: PreforkMixIn, app: str) -> None:
        """In a worker or a preload template: import the APP and serve it on every listener.
        An APP that cannot be loaded is one line on the log and exit status 2 (a boot
        failure); one whose kind changed since the master started needs a restart."""
        try:
            loaded = rpcapp.load(app)
            if isinstance(loaded, type):
                rpcapp.serve_in_worker(loaded, server.listening_servers())
                return
            expected = handler_kind(server.RequestHandlerClass)  # type: ignore[attr-defined]
            if loaded.kind != expected:
                raise AppError(f"APP {app!r} is no longer a {expected} APP but a {loaded.kind} "
                               "one: the listeners were made for the first; restart to serve it")
        except AppError as exc:
            log.error("pid %d cannot load the APP: %s", os.getpid(), exc)
            raise SystemExit(EXIT_APP) from None
        for listening in server.listening_servers():
            listening.RequestHandlerClass = loaded.handler

    def prepare_reload(self, server: PreforkMixIn, app: str) -> Callable[[], None]:
        """Re-read the config for a new generation (whose workers import the current code of
        the APP themselves); return the undo."""
        try:
            fresh = self.reread()
        except ConfigError as exc:
            raise ReloadRefused(f"configuration: {exc}") from None
        saved = {name: getattr(server, name) for name in LIVE_SETTINGS}
        if "on_reload" in self.hooks:
            self.hooks["on_reload"](server)
        # The new generation's TLS context, from the files as they are now (renewed ones).
        undo_tls = load_tls(server.listening_servers(), ReloadRefused)
        if fresh.bind != self.config.bind:
            log.warning("master (pid %d) reload: bind changes need a restart", os.getpid())
        for name in LIVE_SETTINGS:
            value = fresh.get(name)
            if name == "workers":
                value = sizing.reloaded(server, value)  # 0 (one per CPU) keeps the size
            setattr(server, name, value)

        def rollback() -> None:
            for attr, value in saved.items():
                setattr(server, attr, value)
            undo_tls()

        return rollback

    def call(self, key: str, *args: Any) -> None:
        hook = self.hooks.get(key)
        if hook is not None:
            try:
                hook(*args)
            except Exception:
                log.exception("master (pid %d) %s hook failed", os.getpid(), key)


def load_tls(servers: Iterable[Any], error: type[Exception]) -> Callable[[], None]:
    """Build each TLS listener's context here, in the master, for the workers forked next
    (core/tls.py); returns the undo.  A file that does not load raises ``error``, one line."""
    undos: list[Callable[[], None]] = []

    def undo() -> None:
        for one in reversed(undos):
            one()

    for server in servers:
        if isinstance(server, TLSMixIn):
            try:
                undos.append(server.tls_load())
            except (OSError, ValueError) as exc:
                undo()
                raise error(f"TLS: cannot load the certificate files: {exc}") from None
    return undo


def configure(cli: Mapping[str, Any], config_file: str | None) -> Runner:
    """Load the config, apply chdir, pythonpath and env to this process (before any hook or
    APP is imported), and make the runner; a reload re-reads the files of the start
    directory."""
    start = Path.cwd()
    config = load_config(cli, config_file=config_file, cwd=start)
    apply_process_settings(config)
    runner = Runner(config, lambda: load_config(cli, config_file=config_file, cwd=start))
    runner.start_dir = str(start)
    return runner


def apply_process_settings(config: Config) -> None:
    """``chdir`` (first on sys.path, as the current directory is), then ``pythonpath`` (first of
    all), then ``env``; what the workers inherit at fork."""
    if config.chdir:
        try:
            os.chdir(config.chdir)
        except OSError as exc:
            raise StartError(f"--chdir {config.chdir}: {exc.strerror or exc}") from None
        sys.path.insert(0, os.getcwd())
    for path in reversed(config.pythonpath):
        sys.path.insert(0, os.path.abspath(path))
    for item in config.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
