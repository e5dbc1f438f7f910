"""The settings of ``prefork serve``, each declared once, in the body of :class:`Config`.

Why the table is a class body.  A setting has a name, a converter (conversion and checks), a
default, flags, a help line, a section, whether a reload applies it and whether it is a server
tunable; everything else -- the loader's converter table, the ``PREFORK_*`` names, the flags of
``prefork serve``, ``--print-config``, what a reload re-applies, the attributes of the server
class, docs/settings.md -- is derived from these declarations.  Typed descriptors on
:class:`Config` keep that single spelling *and* give mypy the type of ``config.workers``,
which ``dataclasses.make_dataclass`` would lose and a hand-written dataclass would spell twice.

A *server tunable* (``default=FROM_SERVER``) is an attribute of the same name on
:class:`~prefork.core.servers.PreforkMixIn`, which library users set directly; its default is
read from there, so it is written once in the repository, and the runner sets it on the server
class it builds.  Every default goes through the setting's converter when this module loads, so a
default that the setting itself would refuse fails at import, not in production.

An *alias* is an old name still accepted, in a file and as ``PREFORK_<ALIAS>``; the source then
says which name was used.  ``python scripts/gen_settings_doc.py`` writes docs/settings.md from
:func:`prefork.command.reference.reference`, and a test fails when the committed file differs.
"""

from __future__ import annotations

import copy
from typing import Any

from prefork.command.app import DEFAULT_APP, MODES
from prefork.command.convert import (
    app_spec,
    bind_list,
    boolean,
    choice,
    env_list,
    file_mode,
    host_port,
    http_parser_choice,
    import_spec,
    integer,
    ip_list,
    log_format,
    mount_prefix,
    number,
    optional_integer_in,
    optional_string,
    path_list,
)
from prefork.command.setting import ENV_PREFIX as ENV_PREFIX  # (for config.py)
from prefork.command.setting import FROM_SERVER, Bound, Setting
from prefork.core import httplimits
from prefork.core.servers import PreforkMixIn
from prefork.core.sockets import BindSpec, parse_bind
from prefork.master import sizing
from prefork.ops.accesslog import DEFAULT_FORMAT

SOURCE_DEFAULT = "default"

# The sections, in the order the reference lists them.
SERVE = "What to serve and where"
POOL = "The pool"
LIMITS = "Time limits, in seconds"
RECYCLING = "Recycling a worker"
ADAPTIVE = "Adaptive pool"
PROCESS = "The process"
TLS = "TLS"
HOOKS = "Hooks"
SECTIONS = (SERVE, POOL, LIMITS, RECYCLING, ADAPTIVE, PROCESS, TLS, HOOKS)


# What an unset limit_request_* means: each handler's own bound.
_OWN = "the handler's own: {} for WSGI, the stdlib's {} for http.server handlers"


def _cpu_workers(config: Config) -> int:
    return sizing.one_per_cpu(config.max_children)


def _default_app(config: Config) -> str | None:
    return DEFAULT_APP


def _app_name(config: Config) -> str | None:
    return config.app or DEFAULT_APP


def server_name(config: Config) -> str:
    """The name the command's server gets: ``name``, else the APP (as --print-config shows)."""
    return config.name or _app_name(config) or ""


def _hook(when: str) -> Setting[str | None]:
    return Setting(import_spec("callable"), None, section=HOOKS, help=when)


class Config:
    """Everything ``prefork serve`` can be told.  Each attribute is a :class:`Setting` (this
    class body is the settings table); docs/settings.md lists them with their flags and defaults.

    ``sources`` maps every setting to where its value came from: ``"default"``,
    ``"file prefork.toml"``, ``"env PREFORK_WORKERS"``, ``"env WEB_CONCURRENCY"`` or
    ``"command line"``.  It is not part of equality.
    """

    app = Setting(
        app_spec, None, section=SERVE, flags=("APP",),
        help="what to serve, importable from the current directory: module:HandlerClass (a "
        "socketserver request handler), module:application (a WSGI callable, served over "
        "HTTP/1.1), module:factory() (called once per process, returns either) or module alone "
        "(module:application, else module:app)",
        unset=f"the built-in demo, {DEFAULT_APP}", effective=_default_app)
    bind = Setting(
        bind_list, ["127.0.0.1:8000"], section=SERVE, flags=("-b", "--bind"), metavar="SPEC",
        help="a listener: HOST:PORT, :PORT, [IPV6]:PORT, unix:/path, udp://HOST:PORT or "
        "unix-dgram:/path; repeat the flag (a list in a file, commas in the environment) for "
        "several")
    backlog = Setting(
        integer(1), PreforkMixIn.request_queue_size, section=SERVE, flags=("--backlog",),
        metavar="N", help="connections the kernel queues on each TCP or unix stream listener "
        "before the workers accept them (listen(2); capped by net.core.somaxconn)")
    rpcbind = Setting(
        boolean, True, section=SERVE, flags=("--rpcbind",),
        help="an RPC program's master registers it with the host's rpcbind (every version, "
        "on each TCP and UDP listener) and unregisters it at exit; --no-rpcbind: not")
    socket_mode = Setting(
        file_mode, FROM_SERVER, section=SERVE, flags=("--socket-mode",), metavar="MODE",
        help="permissions of unix listener socket files, in octal (e.g. 660); their owner "
        "follows user and group", unset="the umask's")
    workers = Setting(
        integer(0), FROM_SERVER, section=POOL, flags=("-w", "--workers"), metavar="N", live=True,
        env_fallback=("WEB_CONCURRENCY",), help="worker processes",
        unset="one per usable CPU, at most max_children", effective=_cpu_workers, jobs=True)
    threads = Setting(
        integer(1), FROM_SERVER, section=POOL, flags=("--threads",), metavar="N",
        help="handler threads in each worker, so a worker serves up to N requests at once "
        "(the stdlib's ThreadingMixIn semantics, bounded); status and --timeout see each "
        "thread.  1: the worker serves requests itself")
    max_children = Setting(
        integer(1), FROM_SERVER, section=POOL, flags=("--max-children",), metavar="N",
        help="upper bound on the pool, for TTIN, scaling and the adaptive pool too")
    mode = Setting(
        choice(tuple(MODES)), "prefork", section=SERVE, flags=("--mode",), metavar="MODE",
        help="prefork, or the stdlib's fork, thread or sync server with the same handler",
        jobs=True)
    request_timeout = Setting(
        number(0), FROM_SERVER, section=LIMITS, flags=("-t", "--timeout", "--request-timeout"),
        metavar="S", live=True, aliases=("timeout",),
        help="kill a worker whose request runs longer than this, after dumping its stack to the "
        "log (0: never)", jobs=True)
    boot_timeout = Setting(
        number(0), FROM_SERVER, section=LIMITS, flags=("--boot-timeout",), metavar="S",
        live=True, help="kill a new worker (or --preload template) that has not reported ready "
        "within this many seconds, an import that hangs: a boot failure, or the end of a "
        "reload, the old generation serving on (0: never)")
    graceful_timeout = Setting(
        number(0), FROM_SERVER, section=LIMITS, flags=("--graceful-timeout",), metavar="S",
        live=True, help="how long a graceful stop (TERM) waits for requests in flight; a worker "
        "retired by a reload, a recycle, a scale-down or WINCH is killed after as long", jobs=True)
    client_timeout = Setting(
        number(0.001), FROM_SERVER, section=LIMITS, flags=("--client-timeout",), metavar="S",
        live=True, stdlib=True, help="close a new connection that has not sent its first bytes "
        "(an HTTP handler: its request head, and a body of up to 16 KiB; TLS: the handshake "
        "too) within this many seconds of the accept, while it waits in the worker's multiplexer")
    keep_alive = Setting(
        number(0), FROM_SERVER, section=LIMITS, flags=("--keep-alive",), metavar="S",
        live=True, help="close a keep-alive connection idle for this long between requests "
        "(HTTP/1.1 handlers); its next request head then has client_timeout")
    send_timeout = Setting(
        number(0.001), FROM_SERVER, section=LIMITS, flags=("--send-timeout",), metavar="S",
        live=True, help="the rest of a response that the client did not take at once (its "
        "socket buffer full) is sent by the worker's multiplexer, not the handler; a client "
        "that has not read all of it within this many seconds is disconnected")
    worker_connections = Setting(
        integer(0), FROM_SERVER, section=POOL, flags=("--worker-connections",), metavar="N",
        live=True, help="connections that may wait in one worker's multiplexer (idle, "
        "handshaking, sending a head); at the bound the worker stops accepting (0: the fd "
        "limit, which the master raises to its hard limit at start, less 1/8 for the "
        "application)")
    max_requests = Setting(
        integer(0), FROM_SERVER, section=RECYCLING, flags=("--max-requests",), metavar="N",
        live=True, help="recycle a worker after this many requests (0: never)", jobs=True)
    max_requests_jitter = Setting(
        integer(0), FROM_SERVER, section=RECYCLING, flags=("--max-requests-jitter",),
        metavar="J", live=True,
        help="plus a random 0..J requests, so workers do not all restart at once", jobs=True)
    max_age = Setting(
        number(0), FROM_SERVER, section=RECYCLING, flags=("--max-age",), metavar="S", live=True,
        help="recycle a worker after this many seconds alive, plus up to 10 % (0: never)",
        jobs=True)
    max_memory = Setting(
        integer(0), FROM_SERVER, section=RECYCLING, flags=("--max-memory",), metavar="MB",
        live=True, help="recycle a worker whose resident memory exceeds this many MB, checked "
        "every 5 s; an allocation that would take a worker past 1.5x this fails (RLIMIT_DATA: "
        "MemoryError in the request, a 500 for WSGI, then the worker is replaced); a request "
        "at twice this in shared memory, or over it for 3 s, is stopped like a hung one, its "
        "stack dumped (0: never)", jobs=True)
    min_spare = Setting(
        integer(0), FROM_SERVER, section=ADAPTIVE, flags=("--min-spare",), metavar="N",
        live=True, help="grow the pool (up to max_children) while fewer than N workers are idle "
        "(0: off)")
    max_spare = Setting(
        integer(0), FROM_SERVER, section=ADAPTIVE, flags=("--max-spare",), metavar="N",
        live=True, help="shrink the pool (down to workers) while more than N workers are idle "
        "(0: off)")
    max_recycling = Setting(
        integer(1), FROM_SERVER, section=RECYCLING, flags=("--max-recycling",), metavar="N",
        live=True, help="how many workers may be replaced at the same time when recycling")
    cpu_affinity = Setting(
        boolean, FROM_SERVER, section=POOL, flags=("--cpu-affinity",), live=True,
        help="pin each worker to one of the CPUs the master may use, round robin by worker "
        "slot (for CPU-bound handlers; Linux only)")
    preload = Setting(
        boolean, FROM_SERVER, section=POOL, flags=("--preload",), live=False,
        help="import the APP once per generation, in a template process its workers are forked "
        "from (they share its memory); a reload starts a new template on the current code")
    pidfile = Setting(
        optional_string, FROM_SERVER, section=PROCESS, flags=("-p", "--pidfile"), metavar="PATH",
        help="write the master's pid here while it serves", jobs=True)
    name = Setting(
        optional_string, FROM_SERVER, section=PROCESS, flags=("-n", "--name"), metavar="NAME",
        help="process name in ps/top titles", unset="the APP", effective=_app_name, jobs=True)
    log_level = Setting(
        choice(("debug", "info", "warning", "error", "critical")), "info", section=PROCESS,
        flags=("--log-level",), metavar="LEVEL",
        help="debug, info, warning, error or critical: what prefork's own loggers (prefork.*) "
        "write", jobs=True)
    log_root = Setting(
        boolean, False, section=PROCESS, flags=("--log-root",),
        help="put the log handler on the root logger instead of prefork's own, so whatever the "
        "application logs through logging without configuring it goes there too, at the "
        "log_level; off, an application that configures logging keeps it to itself")
    capture_output = Setting(
        boolean, False, section=PROCESS, flags=("--capture-output",),
        help="send what the application writes to stdout and stderr (print, tracebacks, "
        "wsgi.errors, a C library's messages) to the log_file, which it needs; reopened with it "
        "on USR1")
    reload = Setting(
        boolean, False, section=PROCESS, flags=("--reload",),
        help="for development: start a new generation whenever a *.py file under the current "
        "directory changes (needs watchfiles)")
    log_file = Setting(
        optional_string, None, section=PROCESS, flags=("--log-file",), metavar="PATH",
        help="log here instead of stderr (reopened on USR1)")
    access_logfile = Setting(
        optional_string, None, section=PROCESS, flags=("--access-logfile",), metavar="PATH",
        help="one line per WSGI request here (- for stdout; reopened on USR1)")
    access_logformat = Setting(
        log_format, DEFAULT_FORMAT, section=PROCESS, flags=("--access-logformat",),
        metavar="FORMAT", help="the access log's line, gunicorn's atoms: h l u t r m U q H s "
        "b B f a, plus D T M (request time in us, s, ms) and p (worker pid)")
    chdir = Setting(
        optional_string, None, section=PROCESS, flags=("--chdir",), metavar="DIR",
        help="change to this directory before loading the APP (and first on sys.path); the "
        "config file was read before, other relative paths are taken from here",
        unset="the current directory")
    pythonpath = Setting(
        path_list, list[str](), section=PROCESS, flags=("--pythonpath",), metavar="DIRS",
        help="directories put first on sys.path before the APP is imported, comma-separated "
        "(or a list; the flag may be repeated); relative ones from chdir")
    env = Setting(
        env_list, list[str](), section=PROCESS, flags=("-e", "--env"), metavar="KEY=VALUE",
        help="set an environment variable for the master and the workers (repeat the flag; a "
        "list in a file; commas in PREFORK_ENV); a restart applies a change")
    check_config = Setting(
        boolean, False, section=PROCESS, flags=("--check-config",),
        help="check every setting, the user and group, the TLS files and the hooks, and import "
        "the APP (in a probe process, as the workers' user), then exit: 0 if all is well, 2 "
        "with one line if not; nothing is bound or written")
    user = Setting(
        optional_string, FROM_SERVER, section=PROCESS, flags=("-u", "--user"), metavar="USER",
        help="run the workers as this user (name or uid), after the sockets are bound; the "
        "master keeps its own (needs a root master)", unset="the master's")
    group = Setting(
        optional_string, FROM_SERVER, section=PROCESS, flags=("-g", "--group"),
        metavar="GROUP", help="run the workers in this group (name or gid) and no other",
        unset="the user's primary group, else the master's")
    control = Setting(
        optional_string, FROM_SERVER, section=PROCESS, flags=("--control",), metavar="PATH",
        help="the control socket (prefork status, top, reload, scale, stop)",
        unset="PIDFILE.ctl when --pidfile is given", jobs=True)
    metrics = Setting(
        host_port, FROM_SERVER, section=PROCESS, flags=("--metrics",), metavar="HOST:PORT",
        help="serve Prometheus metrics from the master", jobs=True)
    http_parser = Setting(
        http_parser_choice, FROM_SERVER, section=SERVE, flags=("--http-parser",), live=True,
        metavar="auto|httptools|python", stdlib=True, help="WSGI request heads of the common "
        "shape: auto matches them whole with one expression of the strict grammar, httptools "
        "(prefork[http]) has llhttp read them, python leaves them to the strict parser, which "
        "reads every other head")
    limit_request_line = Setting(
        optional_integer_in(0, httplimits.MAX_LINE), FROM_SERVER, section=SERVE, live=True,
        stdlib=True,
        flags=("--limit-request-line",), metavar="BYTES", help="the longest request line "
        "(method, target, version) an HTTP handler takes, in bytes; longer: 414 and close (0: "
        f"no bound of its own, the head's {httplimits.MAX_HEAD // 1024} KiB in all still "
        "applies)", unset=_OWN.format(httplimits.LINE, "65536"))
    limit_request_fields = Setting(
        optional_integer_in(0, httplimits.MAX_FIELDS), FROM_SERVER, section=SERVE, live=True,
        stdlib=True, flags=("--limit-request-fields",), metavar="N", help="the most header "
        f"fields in a request head; more: 431 and close (0: {httplimits.MAX_FIELDS}, the most)",
        unset=_OWN.format(httplimits.FIELDS, "100"))
    limit_request_field_size = Setting(
        optional_integer_in(0, httplimits.MAX_HEAD), FROM_SERVER, section=SERVE, live=True,
        stdlib=True,
        flags=("--limit-request-field-size",), metavar="BYTES", help="the longest header "
        "field line (name, colon and value) in a request head or a chunked body's trailers, "
        "in bytes; longer: 431 and close (0: no bound of its own, as for the request line)",
        unset=_OWN.format(httplimits.FIELD_SIZE, "65536"))
    root_path = Setting(
        mount_prefix, FROM_SERVER, section=SERVE, stdlib=True, flags=("--root-path",), live=True,
        metavar="PREFIX", env_fallback=("SCRIPT_NAME",), help="the WSGI application's mount "
        "prefix (/app): its SCRIPT_NAME, split off PATH_INFO for requests under it; others keep "
        "their whole path", unset="none")
    forwarded_allow_ips = Setting(
        ip_list, FROM_SERVER, section=SERVE, stdlib=True, flags=("--forwarded-allow-ips",),
        live=True, metavar="IPS", help="peers (addresses or networks, comma-separated; * for "
        "all; a unix socket peer counts as 127.0.0.1) whose proxy headers set a "
        "WSGI request's wsgi.url_scheme and REMOTE_ADDR (X-Forwarded-*, else RFC 7239 Forwarded) "
        "and an http.server handler's client_address; from others they are ignored")
    proxy_protocol = Setting(boolean, FROM_SERVER, section=SERVE, flags=("--proxy-protocol",),
                             live=True, help="connections begin with a PROXY header (v1 or v2, "
                             "before TLS) naming the client; refused from others or malformed")
    proxy_allow_ips = Setting(ip_list, FROM_SERVER, section=SERVE, flags=("--proxy-allow-from",),
                              live=True, stdlib=True, metavar="IPS", help="peers whose PROXY "
                              "header is accepted (as forwarded_allow_ips; gunicorn's flag)")
    certfile = Setting(
        optional_string, None, section=TLS, flags=("--certfile",), metavar="PATH",
        help="serve TLS with this certificate chain (PEM); each new generation (HUP) reads the "
        "files again; the handshake (and, for an HTTP handler, the request head) is waited for "
        "in the worker's multiplexer under client_timeout")
    keyfile = Setting(
        optional_string, None, section=TLS, flags=("--keyfile",), metavar="PATH",
        help="the certificate's private key (PEM)", unset="in the certfile")
    ca_certs = Setting(
        optional_string, None, section=TLS, flags=("--ca-certs",), metavar="PATH",
        help="require client certificates signed by these CAs (PEM)")
    on_starting = _hook("on_starting(server), in the master before it starts serving")
    pre_fork = _hook("pre_fork(server, worker), in the master before each fork")
    post_fork = _hook("post_fork(server, worker), in the new worker before it reports ready "
                      "(an exception is a boot failure)")
    post_worker_init = _hook("post_worker_init(server, worker), in the new worker after "
                             "post_fork (an exception is a boot failure)")
    worker_exit = _hook("worker_exit(server, worker, status), in the master after a worker was "
                        "reaped")
    on_reload = _hook("on_reload(server), in the master when a reload begins (an exception "
                      "refuses the reload)")
    on_exit = _hook("on_exit(server), in the master after serving")

    def __init__(self, sources: dict[str, str] | None = None, **values: Any) -> None:
        unknown = values.keys() - BY_NAME.keys()
        if unknown:
            raise TypeError(f"Config() got unknown settings: {', '.join(sorted(unknown))}")
        self._values: dict[str, Any] = {
            s.name: values[s.name] if s.name in values else copy.copy(s.default)
            for s in SETTINGS
        }
        self.sources = dict(sources or {})
        for name in BY_NAME:
            self.sources.setdefault(name, SOURCE_DEFAULT)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Config):
            return NotImplemented
        return self._values == other._values

    def __repr__(self) -> str:
        return "Config(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"

    def get(self, name: str) -> Any:
        """The value of setting ``name`` (for code that loops over :data:`SETTINGS`)."""
        return self._values[name]

    def set(self, name: str, value: object) -> None:
        if name not in self._values:
            raise AttributeError(f"no setting {name!r}")
        self._values[name] = value

    def bind_specs(self) -> list[BindSpec]:
        """The listeners, parsed (they were validated when the config was loaded)."""
        return [parse_bind(spec) for spec in self.bind]


SETTINGS: tuple[Setting[Any], ...] = tuple(
    value for value in vars(Config).values() if isinstance(value, Setting)
)
BY_NAME: dict[str, Setting[Any]] = {setting.name: setting for setting in SETTINGS}
SERVE_KEYS = tuple(s.name for s in SETTINGS if s.flags)  # what `prefork serve` has flags for
LIVE_SETTINGS = tuple(s.name for s in SETTINGS if s.live)  # what a reload (HUP) re-applies
SERVER_SETTINGS = tuple(s.name for s in SETTINGS if s.server)  # attributes of PreforkMixIn
# What the stdlib modes' request path reads from their server (handlers, the PROXY header).
STDLIB_SETTINGS = tuple(s.name for s in SETTINGS if s.stdlib)
JOB_SETTINGS = tuple(s.name for s in SETTINGS if s.jobs)  # what `prefork jobs` has flags for
HOOK_NAMES = tuple(s.name for s in SETTINGS if s.section == HOOKS)


# Checked by the loader on the merged values (command/config.py), the mistake blamed on ``name``.
BOUNDS = (Bound("max_spare", ">=", "min_spare", unset_exempt=True),
          Bound("workers", "<=", "max_children"))
assert all(s.section in SECTIONS for s in SETTINGS)

