"""Loading the settings of ``prefork serve``: four layers, one clear line per mistake.

The settings themselves -- names, converters, defaults, flags, environment names -- are declared
once, in :mod:`prefork.command.settings`.  Where a value comes from, lowest precedence first (a
later layer wins, key by key):

1. the defaults declared in the table (a server tunable's on ``PreforkMixIn``);
2. a TOML file: the one given with ``--config FILE`` (or ``$PREFORK_CONFIG``), whose top level
   holds the settings -- or, when no file is named, the ``[tool.prefork]`` table of
   ``pyproject.toml`` in the current directory, if there is one;
3. the environment: ``PREFORK_<KEY>`` for every key (``PREFORK_WORKERS=4``,
   ``PREFORK_BIND=127.0.0.1:8000,unix:/run/app.sock``), and a setting's fallbacks such as
   ``WEB_CONCURRENCY`` for the worker count, as other Python servers honour it
   (``PREFORK_WORKERS`` beats it);
4. the command-line flags the user actually gave.

Every value of every layer is checked, even one a later layer overrides: a typo in a config file
should not lie in wait until the day the flag that hides it is dropped.  The checks are strict
about names (an unknown key in the file, or an unknown ``PREFORK_*`` variable, is an error that
names it) and about types in the file, and lenient only where everything is text (environment
variables, and command-line values that arrive as strings); see :mod:`prefork.command.convert`.
An alias (an old name of a setting) is read like the name, and the source says it was used.

Nothing is imported at load time: hooks are checked for the ``module:callable`` shape only, and
:func:`resolve_hook` imports one when the server is about to need it.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefork.command.convert import Invalid, Layer, is_import_spec, toml_value
from prefork.command.settings import (
    BOUNDS,
    BY_NAME,
    ENV_PREFIX,
    HOOK_NAMES,
    SETTINGS,
    SOURCE_DEFAULT,
    Config,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "HOOK_NAMES",
    "Config",
    "ConfigError",
    "describe",
    "load_config",
    "resolve_hook",
]

ENV_CONFIG_FILE = "PREFORK_CONFIG"  # names the config file; not a setting itself
PYPROJECT = "pyproject.toml"
PYPROJECT_TABLE = ("tool", "prefork")
SOURCE_CLI = "command line"
FILE_KEYS = {key: setting for setting in SETTINGS for key in setting.keys}
ENV_NAMES = {var: setting for setting in SETTINGS for var in setting.env_names
             if var.startswith(ENV_PREFIX)}


class ConfigError(ValueError):
    """A setting that cannot be used; the message is one line: source, key, problem."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


# --- loading -------------------------------------------------------------------------------------


@dataclass
class _Layer:
    """One layer's values, converted, with each one's source and error prefix."""

    values: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # "prefork.toml: workers" etc.
    keys: dict[str, str] = field(default_factory=dict)  # the key or variable that set it

    def set(self, name: str, raw: object, layer: Layer, source: str, where: str, key: str) -> None:
        if name in self.values:
            raise ConfigError(f"{where}: set twice (as {self.keys[name]} and {key})")
        try:
            self.values[name] = BY_NAME[name].convert(raw, layer)
        except Invalid as exc:
            raise ConfigError(f"{where}: {exc}") from None
        self.sources[name] = source
        self.where[name] = where
        self.keys[name] = key


def load_config(
    cli: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    config_file: str | None = None,
) -> Config:
    """Build the effective :class:`Config` from defaults, file, environment and ``cli``.

    ``cli`` holds the flags the user gave, keyed by setting name (a ``None`` value counts as
    not given, so argparse's ``default=None`` can be passed as is).  ``env`` defaults to
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
    layer, default = _Layer(), Config()
    for setting in SETTINGS:
        layer.values[setting.name] = default.get(setting.name)
        layer.sources[setting.name] = SOURCE_DEFAULT
        layer.where[setting.name] = f"{setting.name} (default)"
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
    for key, raw in table.items():
        word = key.replace("-", "_")  # accept max-children as well as max_children
        where = f"{label}: {prefix}{key}"
        setting = FILE_KEYS.get(word)
        if setting is None:
            raise ConfigError(f"{where}: unknown setting{_did_you_mean(word, FILE_KEYS)}")
        alias = f" (as {word})" if word != setting.name else ""
        layer.set(setting.name, raw, "file", f"file {label}{alias}", where, key)
    return layer


def _from_env(env: Mapping[str, str]) -> _Layer:
    layer = _Layer()
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var == ENV_CONFIG_FILE:
            continue
        setting = ENV_NAMES.get(var)
        if setting is None:
            hint = _did_you_mean(var, [*ENV_NAMES, ENV_CONFIG_FILE])
            raise ConfigError(f"{var}: unknown setting{hint}")
        layer.set(setting.name, env[var], "env", f"env {var}", var, var)
    for setting in SETTINGS:  # fallbacks such as WEB_CONCURRENCY, judged only when used
        var = next((var for var in setting.env_fallback if var in env), "")
        if var and setting.name not in layer.values:
            layer.set(setting.name, env[var], "env", f"env {var}", var, var)
    return layer


def _from_cli(cli: Mapping[str, Any]) -> _Layer:
    layer = _Layer()
    for name, raw in cli.items():
        setting = BY_NAME.get(name)
        if setting is None:
            raise ConfigError(f"{SOURCE_CLI}: --{name.replace('_', '-')}: unknown setting")
        if raw is not None:
            where = f"{SOURCE_CLI}: {setting.label}"
            layer.set(name, raw, "cli", SOURCE_CLI, where, setting.label)
    return layer


def _check_together(merged: _Layer) -> None:
    """The rules that tie two settings together (the table's BOUNDS, on the merged values)."""
    for bound in BOUNDS:
        value, other = merged.values[bound.name], merged.values[bound.other]
        if bound.broken(value, other):
            raise ConfigError(
                f"{merged.where[bound.name]}: must be {bound.op} {bound.other} ({other}, from "
                f"{merged.sources[bound.other]}), not {value}"
            )


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


# --- showing and using ---------------------------------------------------------------------------


def describe(config: Config, *, effective: bool = False) -> str:
    """The text of ``prefork serve --print-config``: ``key = value  # source``, one per line.

    The values are written as TOML (an unset value as ``""``), so the output, comments and all,
    is a config file.  As it is, it reproduces ``config``; with ``effective``, an unset value
    that stands for something (``workers = 0``: one per CPU; no ``app``: the demo) is shown as
    what it stands for here and now, and the comment says so.
    """
    lines = []
    for setting in SETTINGS:
        value = config.get(setting.name)
        source = config.sources.get(setting.name, SOURCE_DEFAULT)
        if effective and setting.effective is not None and not value:
            source = f"{source}: {toml_value(value)} means {setting.unset}"
            value = setting.effective(config)
        lines.append(f"{setting.name} = {toml_value(value)}  # {source}")
    return "\n".join(lines) + "\n"


def resolve_hook(spec: str, *, key: str | None = None) -> Callable[..., Any]:
    """Import ``module:callable`` (dotted attributes allowed) and return the callable.

    The current directory goes first on ``sys.path`` if it is not there, as it does for the APP.
    Raises :class:`ConfigError` with one line (naming ``key``, the hook's setting, if given)
    when the spec is malformed, the module does not import, or the object is missing or is not
    callable.
    """
    where = f"{key}: hook {spec!r}" if key else f"hook {spec!r}"
    if not is_import_spec(spec):
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
