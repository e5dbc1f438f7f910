"""Converters: from a raw setting value to the value a :class:`~prefork.command.settings.Config`
holds, checked.

A converter takes the raw value and the layer it came from, and returns the converted value or
raises :class:`Invalid` with the problem (the caller adds the source and the key).  ``file``
values must already have the right TOML type (``workers = "4"`` is a mistake in TOML);
``env`` values are always text; ``cli`` values may be either.  An empty string means "unset"
(``None``) for the optional string settings, in every layer: TOML has no null, and this is how
an environment variable or a flag switches off a file's ``pidfile``.

Nothing here imports application code: an import spec is checked for its shape only.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
from collections.abc import Callable
from typing import Any, Literal, TypeAlias, TypeVar

from prefork.apps.forwarded import check as check_ips
from prefork.apps.loader import FORMS, AppError, parse_app
from prefork.core.sockets import BindSpecError, parse_bind
from prefork.ops.accesslog import check_format

T = TypeVar("T")
N = TypeVar("N", int, float)
Layer = Literal["file", "env", "cli"]
Converter: TypeAlias = Callable[[object, Layer], T]

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class Invalid(Exception):
    """A value a converter refuses; the message is the problem, without source or key."""

    def __init__(self, problem: str, value: object = None, *, show_value: bool = True) -> None:
        super().__init__(f"{problem}, not {value!r}" if show_value else problem)


def integer(minimum: int) -> Converter[int]:
    return _bounded(f"must be an integer >= {minimum}", (int,), int, lambda n: n >= minimum)


def optional_integer_in(minimum: int, maximum: int) -> Converter[int | None]:
    """An integer from ``minimum`` to ``maximum``; the empty string means unset (None)."""
    bounded = _bounded(f"must be an integer from {minimum} to {maximum}", (int,), int,
                       lambda n: minimum <= n <= maximum)

    def convert(value: object, layer: Layer) -> int | None:
        if isinstance(value, str) and not value.strip():
            return None
        return bounded(value, layer)

    return convert


def number(minimum: float) -> Converter[float]:
    return _bounded(f"must be a number >= {minimum:g}", (int, float), float,
                    lambda n: math.isfinite(n) and n >= minimum)


def _bounded(
    problem: str, types: tuple[type, ...], parse: Callable[[Any], N], ok: Callable[[N], bool]
) -> Converter[N]:
    """A number of ``types`` (never a bool) -- or, outside a file, text that ``parse`` reads
    -- for which ``ok`` holds."""

    def convert(value: object, layer: Layer) -> N:
        if isinstance(value, types) and not isinstance(value, bool):
            result = parse(value)
        elif isinstance(value, str) and layer != "file":
            try:
                result = parse(value.strip())
            except ValueError:
                raise Invalid(problem, value) from None
        else:
            raise Invalid(problem, value)
        if not ok(result):
            raise Invalid(problem, value)
        return result

    return convert


def boolean(value: object, layer: Layer) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and layer != "file":
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
        raise Invalid("must be one of 1/0, true/false, yes/no, on/off", value)
    raise Invalid("must be true or false", value)


def choice(choices: tuple[str, ...]) -> Converter[str]:
    problem = f"must be one of {', '.join(choices)}"

    def convert(value: object, layer: Layer) -> str:
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise Invalid(problem, value)

    return convert


HTTP_PARSERS = ("auto", "httptools", "python")


def http_parser_choice(value: object, layer: Layer) -> str:
    """One of HTTP_PARSERS; ``httptools`` only where it can be imported."""
    name = choice(HTTP_PARSERS)(value, layer)
    if name == "httptools" and importlib.util.find_spec("httptools") is None:
        raise Invalid("needs httptools, which is not installed (pip install 'prefork[http]')",
                      value)
    return name


def ip_list(value: object, layer: Layer) -> str:
    """Comma-separated addresses or networks, or ``*`` (forwarded_allow_ips)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = ",".join(value)
    if not isinstance(value, str):
        raise Invalid("must be a string of comma-separated addresses", value)
    try:
        return check_ips(value)
    except ValueError as exc:
        raise Invalid(f"addresses or networks, comma-separated, or * ({exc})", value) from None


def log_format(value: object, layer: Layer) -> str:
    """An access-log format over the atoms of ops/accesslog.py."""
    if not isinstance(value, str):
        raise Invalid("must be a string", value)
    try:
        return check_format(value)
    except ValueError as exc:
        raise Invalid(str(exc), value) from None


def mount_prefix(value: object, layer: Layer) -> str | None:
    """A URL path prefix, ``/app`` (a trailing slash dropped), or None ("") for none."""
    if not isinstance(value, str):
        raise Invalid("must be a string", value)
    if value and not value.startswith("/"):
        raise Invalid("must begin with /", value)
    return value.rstrip("/") or None


def optional_string(value: object, layer: Layer) -> str | None:
    if not isinstance(value, str):
        raise Invalid("must be a string", value)
    return value or None


def import_spec(what: str) -> Converter[str | None]:
    problem = f"must be module:{what} (dotted names)"

    def convert(value: object, layer: Layer) -> str | None:
        text = optional_string(value, layer)
        if text is not None and not is_import_spec(text):
            raise Invalid(problem, value)
        return text

    return convert


def app_spec(value: object, layer: Layer) -> str | None:
    """The APP: ``module:HandlerClass``, ``module:application`` or ``module:factory()``."""
    text = optional_string(value, layer)
    if text is not None:
        try:
            parse_app(text)
        except AppError:
            raise Invalid(f"must be {FORMS}", value) from None
    return text


def is_import_spec(text: str) -> bool:
    """``module.sub:attr.attr``, every part an identifier."""
    module, sep, attr = text.partition(":")
    return bool(sep) and all(
        part.isidentifier() for part in (*module.split("."), *attr.split("."))
    )


def bind_list(value: object, layer: Layer) -> list[str]:
    items: list[object]
    if isinstance(value, str):
        # Only the environment packs several listeners into one string.
        items = list(value.split(",")) if layer == "env" else [value]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise Invalid("must be a bind spec or a list of them", value)
    specs: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise Invalid("must be a bind spec or a list of them", value)
        spec = item.strip()
        if not spec and layer == "env":
            continue  # tolerate "a,b," and "a, ,b"
        try:
            parse_bind(spec)
        except BindSpecError as exc:
            raise Invalid(str(exc), show_value=False) from None
        specs.append(spec)
    if not specs:
        raise Invalid("must name at least one listener", value)
    return specs


def _strings(value: object, layer: Layer, problem: str, sep: str | None) -> list[str]:
    """A list of strings: a TOML list, a repeated flag, or one string (split at ``sep`` where
    it is given); blank items dropped."""
    if isinstance(value, str):
        value = value.split(sep) if sep else [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise Invalid(problem, value)
    return [item.strip() for item in value if item.strip()]


def path_list(value: object, layer: Layer) -> list[str]:
    """Directories for ``sys.path``: comma-separated (as gunicorn's --pythonpath), a repeated
    flag, or a TOML list."""
    items = _strings(value, layer, "must be directories, comma-separated, or a list", None)
    return [path.strip() for item in items for path in item.split(",") if path.strip()]


def env_list(value: object, layer: Layer) -> list[str]:
    """``KEY=VALUE`` items: a repeated flag, a TOML list, or comma-separated in the
    environment (where a value cannot hold a comma, then)."""
    problem = "must be KEY=VALUE items"
    items = _strings(value, layer, problem, "," if layer == "env" else None)
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not _ENV_KEY.fullmatch(key):
            raise Invalid(f"{problem} (a KEY is letters, digits and _)", item)
    return items


class FileMode(int):
    """Permission bits; shown in octal (``0o660``, which TOML reads back as the same number)."""

    def __repr__(self) -> str:
        return f"0o{self:o}"


def file_mode(value: object, layer: Layer) -> FileMode | None:
    """Permission bits as chmod takes them: text is octal (``"660"``, ``"0o660"``; the empty
    string means unset), a TOML integer is taken as written (``0o660``).  At most 0o777: a
    decimal ``660`` in a file is refused rather than read as 0o1224."""
    problem = "must be octal permission bits such as 660 (in TOML: 0o660 or \"660\")"
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str):
        text = value.strip().lower().removeprefix("0o")
        if not text:
            return None
        if not set(text) <= set("01234567"):
            raise Invalid(problem, value)
        number = int(text, 8)
    else:
        raise Invalid(problem, value)
    if not 0 <= number <= 0o777:
        raise Invalid(problem, value)
    return FileMode(number)


def host_port(value: object, layer: Layer) -> str | None:
    text = optional_string(value, layer)
    if text is None:
        return None
    try:
        spec = parse_bind(text)
    except BindSpecError:
        spec = None
    if spec is None or spec.kind != "tcp":
        raise Invalid("must be HOST:PORT", value)
    return text.strip()


def toml_value(value: object) -> str:
    """``value`` written as TOML (``None`` as ``""``, which every optional setting reads as
    unset), so what :func:`~prefork.command.config.describe` prints reads back the same."""
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
