"""Settings for ``prefork serve``: one :class:`Config`, four layers, one clear line per mistake.

Where a value comes from, lowest precedence first (a later layer wins, key by key):

1. the defaults declared on :class:`Config`;
2. a TOML file: the one given with ``--config FILE`` (or ``$PREFORK_CONFIG``), whose top level
   holds the settings -- or, when no file is named, the ``[tool.prefork]`` table of
   ``pyproject.toml`` in the current directory, if there is one;
3. the environment: ``PREFORK_<KEY>`` for every key (``PREFORK_WORKERS=4``,
   ``PREFORK_BIND=127.0.0.1:8000,unix:/run/app.sock``), and ``WEB_CONCURRENCY`` for the worker
   count, as other Python servers honour it (``PREFORK_WORKERS`` beats it);
4. the command-line flags the user actually gave.

Every value of every layer is checked, even one a later layer overrides: a typo in a config file
should not lie in wait until the day the flag that hides it is dropped.  The checks are strict
about names (an unknown key in the file, or an unknown ``PREFORK_*`` variable, is an error that
names it) and about types in the file (``workers = "4"`` is a mistake in TOML), and lenient only
where everything is text (environment variables, and command-line values that arrive as strings).

An empty string means "unset" (``None``) for the optional string settings, in every layer: TOML
has no null, and this is how an environment variable or flag switches off a file's ``pidfile``.
It is also how :func:`describe` prints an unset value, so its output is a valid config file.

Nothing is imported at load time: hooks are checked for the ``module:callable`` shape only, and
:func:`resolve_hook` imports one when the server is about to need it.
"""

from __future__ import annotations

import difflib
import importlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from prefork.core.sockets import BindSpec, BindSpecError, parse_bind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_BIND",
    "ENV_PREFIX",
    "HOOK_NAMES",
    "LOG_LEVELS",
    "MODES",
    "Config",
    "ConfigError",
    "describe",
    "load_config",
    "resolve_hook",
]

Mode = Literal["prefork", "fork", "thread", "sync"]
LogLevel = Literal["debug", "info", "warning", "error"]

MODES: tuple[str, ...] = ("prefork", "fork", "thread", "sync")
LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
HOOK_NAMES: tuple[str, ...] = (
    "on_starting", "pre_fork", "post_fork", "post_worker_init", "worker_exit", "on_reload",
    "on_exit",
)
DEFAULT_BIND = "127.0.0.1:8000"
ENV_PREFIX = "PREFORK_"
ENV_CONFIG_FILE = "PREFORK_CONFIG"  # names the config file; not a setting itself
ENV_WEB_CONCURRENCY = "WEB_CONCURRENCY"
PYPROJECT = "pyproject.toml"
PYPROJECT_TABLE = ("tool", "prefork")

SOURCE_DEFAULT = "default"
SOURCE_CLI = "command line"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line: source, key, problem."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


@dataclass
class Config:
    """Everything ``prefork serve`` can be told, with its default.

    What to serve and where:
        app                 ``module:HandlerClass`` to serve (None: the built-in demo)
        bind                listeners, each a bind spec (``HOST:PORT``, ``unix:/path``, ...)
        mode                ``prefork`` (default), or the stdlib's ``fork``, ``thread``, ``sync``
    The pool:
        workers             worker processes (0: one per usable CPU)
        max_children        upper bound on workers, also for TTIN and scaling (64)
        preload             import the app in the master, before forking (False)
    Time limits, in seconds (0: off):
        timeout             a worker stuck in one request longer than this is killed
        graceful_timeout    how long a graceful stop waits for requests in flight (30)
    Recycling a worker (0: off):
        max_requests        after this many requests ...
        max_requests_jitter ... plus a random 0..jitter, so workers do not all restart at once
        max_age             after this many seconds alive
        max_memory          once its resident memory passes this many MB
        max_recycling       how many workers may be replaced at the same time (1)
    Adaptive pool (0: off, a fixed pool of ``workers``):
        min_spare           grow the pool (up to max_children) while fewer workers are idle
        max_spare           shrink it (down to workers) while more are idle
    The process:
        pidfile             write the master's pid here
        name                process name shown in ps/top (setproctitle)
        user, group         drop privileges to these after binding
        log_level           debug, info (default), warning or error
        log_file            log here instead of stderr
        control             path of the control socket (status / reload / scale / stop)
        metrics             HOST:PORT to serve metrics on
    Hooks, each an importable ``module:callable`` (see :func:`resolve_hook`):
        on_starting, pre_fork, post_fork, post_worker_init, worker_exit, on_reload, on_exit

    ``sources`` maps every setting to where its value came from: ``"default"``,
    ``"file prefork.toml"``, ``"env PREFORK_WORKERS"``, ``"env WEB_CONCURRENCY"`` or
    ``"command line"``.  It is not part of equality.
    """

    app: str | None = None
    bind: list[str] = field(default_factory=lambda: [DEFAULT_BIND])
    workers: int = 0
    max_children: int = 64
    mode: Mode = "prefork"
    timeout: float = 0.0
    graceful_timeout: float = 30.0
    max_requests: int = 0
    max_requests_jitter: int = 0
    max_age: float = 0.0
    max_memory: int = 0
    min_spare: int = 0
    max_spare: int = 0
    max_recycling: int = 1
    preload: bool = False
    pidfile: str | None = None
    name: str | None = None
    log_level: LogLevel = "info"
    log_file: str | None = None
    user: str | None = None
    group: str | None = None
    control: str | None = None
    metrics: str | None = None
    on_starting: str | None = None
    pre_fork: str | None = None
    post_fork: str | None = None
    post_worker_init: str | None = None
    worker_exit: str | None = None
    on_reload: str | None = None
    on_exit: str | None = None
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in OPTIONS:
            self.sources.setdefault(name, SOURCE_DEFAULT)

    def bind_specs(self) -> list[BindSpec]:
        """The listeners, parsed (they were validated when the config was loaded)."""
        return [parse_bind(spec) for spec in self.bind]


# --- converters ----------------------------------------------------------------------------------
#
# A converter takes a raw value and where it came from, and returns the value for Config or raises
# _Invalid with the problem (the caller adds the source and the key).  "file" values must already
# have the right TOML type; "env" values are always text; "cli" values may be either.

Layer = Literal["file", "env", "cli"]
Converter = Callable[[object, Layer], Any]


class _Invalid(Exception):
    def __init__(self, problem: str, value: object = None, *, show_value: bool = True) -> None:
        super().__init__(f"{problem}, not {value!r}" if show_value else problem)


def _integer(minimum: int) -> Converter:
    problem = f"must be an integer >= {minimum}"

    def convert(value: object, layer: Layer) -> int:
        number: int
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and layer != "file":
            try:
                number = int(value.strip())
            except ValueError:
                raise _Invalid(problem, value) from None
        else:
            raise _Invalid(problem, value)
        if number < minimum:
            raise _Invalid(problem, value)
        return number

    return convert


def _number(minimum: float) -> Converter:
    problem = f"must be a number >= {minimum:g}"

    def convert(value: object, layer: Layer) -> float:
        number: float
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str) and layer != "file":
            try:
                number = float(value.strip())
            except ValueError:
                raise _Invalid(problem, value) from None
        else:
            raise _Invalid(problem, value)
        if not math.isfinite(number) or number < minimum:
            raise _Invalid(problem, value)
        return number

    return convert


def _boolean(value: object, layer: Layer) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and layer != "file":
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise _Invalid("must be one of 1/0, true/false, yes/no, on/off", value)
    raise _Invalid("must be true or false", value)


def _choice(choices: tuple[str, ...]) -> Converter:
    problem = f"must be one of {', '.join(choices)}"

    def convert(value: object, layer: Layer) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise _Invalid(problem, value)

    return convert


def _optional_string(value: object, layer: Layer) -> str | None:
    if not isinstance(value, str):
        raise _Invalid("must be a string", value)
    return value or None


def _import_spec(what: str) -> Converter:
    problem = f"must be module:{what} (dotted names)"

    def convert(value: object, layer: Layer) -> str | None:
        text = _optional_string(value, layer)
        if text is not None and not _is_import_spec(text):
            raise _Invalid(problem, value)
        return text

    return convert


def _is_import_spec(text: str) -> bool:
    module, sep, attr = text.partition(":")
    return bool(sep) and all(
        part.isidentifier() for part in (*module.split("."), *attr.split("."))
    )


def _bind_list(value: object, layer: Layer) -> list[str]:
    items: list[object]
    if isinstance(value, str):
        # Only the environment packs several listeners into one string.
        items = list(value.split(",")) if layer == "env" else [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise _Invalid("must be a bind spec or a list of them", value)
    specs: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise _Invalid("must be a bind spec or a list of them", value)
        spec = item.strip()
        if not spec and layer == "env":
            continue  # tolerate "a,b," and "a, ,b"
        try:
            parse_bind(spec)
        except BindSpecError as exc:
            raise _Invalid(str(exc), show_value=False) from None
        specs.append(spec)
    if not specs:
        raise _Invalid("must name at least one listener", value)
    return specs


def _host_port(value: object, layer: Layer) -> str | None:
    text = _optional_string(value, layer)
    if text is None:
        return None
    try:
        spec = parse_bind(text)
    except BindSpecError:
        spec = None
    if spec is None or spec.kind != "tcp":
        raise _Invalid("must be HOST:PORT", value)
    return text.strip()


OPTIONS: dict[str, Converter] = {
    "app": _import_spec("HandlerClass"),
    "bind": _bind_list,
    "workers": _integer(0),
    "max_children": _integer(1),
    "mode": _choice(MODES),
    "timeout": _number(0),
    "graceful_timeout": _number(0),
    "max_requests": _integer(0),
    "max_requests_jitter": _integer(0),
    "max_age": _number(0),
    "max_memory": _integer(0),
    "min_spare": _integer(0),
    "max_spare": _integer(0),
    "max_recycling": _integer(1),
    "preload": _boolean,
    "pidfile": _optional_string,
    "name": _optional_string,
    "log_level": _choice(LOG_LEVELS),
    "log_file": _optional_string,
    "user": _optional_string,
    "group": _optional_string,
    "control": _optional_string,
    "metrics": _host_port,
    **{hook: _import_spec("callable") for hook in HOOK_NAMES},
}

assert list(OPTIONS) == [f.name for f in fields(Config) if f.name != "sources"]


# --- loading -------------------------------------------------------------------------------------


@dataclass
class _Layer:
    """One layer's values, converted, with each one's source and error prefix."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # "prefork.toml: workers" etc.

    def set(self, name: str, raw: object, layer: Layer, source: str, where: str) -> None:
        try:
            self.values[name] = OPTIONS[name](raw, layer)
        except _Invalid as exc:
            raise ConfigError(f"{where}: {exc}") from None
        self.sources[name] = source
        self.where[name] = where


def load_config(
    cli: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: str | None = None,
) -> Config:
    """Build the effective :class:`Config` from defaults, file, environment and ``cli``.

    ``cli`` holds the flags the user gave, keyed by field name (a ``None`` value counts as not
    given, so argparse's ``default=None`` can be passed as is).  ``env`` defaults to
    ``os.environ``, ``cwd`` to the current directory (where ``pyproject.toml`` is looked for and
    a relative ``config_file`` is found).  Raises :class:`ConfigError`.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    layers = [
        _defaults(),
        _from_file(cwd, config_file if config_file is not None else env.get(ENV_CONFIG_FILE)),
        _from_env(env),
        _from_cli(cli),
    ]
    merged = _Layer()
    for layer in layers:
        merged.values.update(layer.values)
        merged.sources.update(layer.sources)
        merged.where.update(layer.where)
    _check_together(merged)
    return Config(**merged.values, sources=merged.sources)


def _defaults() -> _Layer:
    default = Config()
    layer = _Layer()
    for name in OPTIONS:
        layer.values[name] = getattr(default, name)
        layer.sources[name] = SOURCE_DEFAULT
        layer.where[name] = f"{name} (default)"
    return layer


def _from_file(cwd: Path, config_file: str | None) -> _Layer:
    layer = _Layer()
    if config_file:
        label, path = config_file, cwd / config_file
        in_pyproject = path.name == PYPROJECT
    else:
        label, path, in_pyproject = PYPROJECT, cwd / PYPROJECT, True
        if not path.is_file():
            return layer
    try:
        with path.open("rb") as file:
            document = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: not valid TOML: {exc}") from None
    table: object = document
    prefix = ""
    if in_pyproject:
        for key in PYPROJECT_TABLE:
            table = table.get(key, {}) if isinstance(table, dict) else None
        prefix = ".".join(PYPROJECT_TABLE) + "."
        if not isinstance(table, dict):
            raise ConfigError(f"{label}: [{prefix[:-1]}] must be a table")
    assert isinstance(table, dict)
    source = f"file {label}"
    for key, raw in table.items():
        name = key.replace("-", "_")  # accept max-children as well as max_children
        where = f"{label}: {prefix}{key}"
        if name not in OPTIONS:
            raise ConfigError(f"{where}: unknown setting{_did_you_mean(name, OPTIONS)}")
        if name in layer.values:
            raise ConfigError(f"{where}: set twice (as {name} and {name.replace('_', '-')})")
        layer.set(name, raw, "file", source, where)
    return layer


def _from_env(env: Mapping[str, str]) -> _Layer:
    layer = _Layer()
    known = {ENV_PREFIX + name.upper(): name for name in OPTIONS}
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_FILE:
            continue
        name = known.get(var)
        if name is None:
            hint = _did_you_mean(var, [*known, ENV_CONFIG_FILE])
            raise ConfigError(f"{var}: unknown setting{hint}")
        layer.set(name, env[var], "env", f"env {var}", var)
    if "workers" not in layer.values and ENV_WEB_CONCURRENCY in env:
        var = ENV_WEB_CONCURRENCY
        layer.set("workers", env[var], "env", f"env {var}", var)
    return layer


def _from_cli(cli: Mapping[str, Any]) -> _Layer:
    layer = _Layer()
    for name, raw in cli.items():
        flag = "APP" if name == "app" else "--" + name.replace("_", "-")
        if name not in OPTIONS:
            raise ConfigError(f"{SOURCE_CLI}: {flag}: unknown setting")
        if raw is not None:
            layer.set(name, raw, "cli", SOURCE_CLI, f"{SOURCE_CLI}: {flag}")
    return layer


def _check_together(merged: _Layer) -> None:
    """The rules that tie two settings together (checked on the merged values)."""
    workers, max_children = merged.values["workers"], merged.values["max_children"]
    min_spare, max_spare = merged.values["min_spare"], merged.values["max_spare"]
    if min_spare and max_spare and max_spare < min_spare:
        raise ConfigError(
            f"{merged.where['max_spare']}: must be >= min_spare ({min_spare}, from "
            f"{merged.sources['min_spare']}), not {max_spare}"
        )
    if workers > max_children:
        raise ConfigError(
            f"{merged.where['workers']}: must be <= max_children ({max_children}, from "
            f"{merged.sources['max_children']}), not {workers}"
        )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# --- showing and using ---------------------------------------------------------------------------


def describe(config: Config) -> str:
    """The text of ``prefork serve --print-config``: ``key = value  # source``, one per line.

    The values are written as TOML (an unset value as ``""``), so the output, comments and all,
    is a config file that reproduces ``config``.
    """
    lines = []
    for name in OPTIONS:
        value = _toml_value(getattr(config, name))
        lines.append(f"{name} = {value}  # {config.sources.get(name, SOURCE_DEFAULT)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: object) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def resolve_hook(spec: str, *, key: str | None = None) -> Callable[..., Any]:
    """Import ``module:callable`` (dotted attributes allowed) and return the callable.

    The current directory goes first on ``sys.path`` if it is not there, as it does for the APP.
    Raises :class:`ConfigError` with one line (naming ``key``, the hook's setting, if given)
    when the spec is malformed, the module does not import, or the object is missing or is not
    callable.
    """
    where = f"{key}: hook {spec!r}" if key else f"hook {spec!r}"
    if not _is_import_spec(spec):
        raise ConfigError(f"{where}: expected module:callable")
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # any import-time failure is the user's to see, in one line
        raise ConfigError(
            f"{where}: cannot import {module_name}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{where}: module {module_name} has no {attr!r}") from None
    if not callable(obj):
        raise ConfigError(f"{where}: {attr} is not callable ({type(obj).__name__})")
    return obj  # type: ignore[no-any-return]
