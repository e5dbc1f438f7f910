"""One setting of the table in :mod:`prefork.command.settings`: a typed descriptor that knows
how to read, check and show its value (see that module for why the table is a class body)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, Protocol, TypeVar, cast, overload

from prefork.command.convert import Converter, Invalid, toml_value
from prefork.core.servers import PreforkMixIn

T = TypeVar("T")

ENV_PREFIX = "PREFORK_"


class Values(Protocol):
    """What a setting reads and writes its value in (the Config)."""

    def get(self, name: str) -> Any: ...
    def set(self, name: str, value: object) -> None: ...


class _FromServer:
    def __repr__(self) -> str:
        return "FROM_SERVER"


FROM_SERVER: Final = _FromServer()
"""The default of a server tunable: the attribute of the same name on PreforkMixIn."""


class Setting(Generic[T]):
    """One setting: a typed attribute of :class:`~prefork.command.settings.Config`, and
    everything needed to read it.

    ``flags`` are the ``prefork serve`` options (a word without a dash is the positional
    argument's metavar); ``unset`` says what the empty default means (``workers = 0``: one per
    CPU), and ``effective`` computes that value for ``--print-config``.  ``env_fallback`` names
    variables read, with lower precedence, when no ``PREFORK_`` variable sets the setting.
    ``stdlib``: the stdlib modes' request path reads it too (a class attribute of their
    server; the runner sets it).  ``jobs``: ``prefork jobs`` takes it too (a tunable of its
    JobServer).
    """

    name: str
    default: T

    def __init__(
        self, convert: Converter[T], default: T | _FromServer, *, section: str, help: str,
        flags: tuple[str, ...] = (), metavar: str = "", live: bool = False,
        aliases: tuple[str, ...] = (), env_fallback: tuple[str, ...] = (), unset: str = "",
        effective: Callable[[Any], T] | None = None, stdlib: bool = False, jobs: bool = False,
    ) -> None:
        self.convert = convert
        self._declared_default = default
        self.section = section
        self.help = help
        self.flags = flags
        self.metavar = metavar
        self.live = live
        self.aliases = aliases
        self.env_fallback = env_fallback
        self.unset = unset
        self.effective = effective
        self.stdlib = stdlib
        self.jobs = jobs

    @property
    def server(self) -> bool:
        """Whether this is a tunable of PreforkMixIn, set on the server class by the runner."""
        return self._declared_default is FROM_SERVER

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        raw: object = self._declared_default
        if raw is FROM_SERVER:
            raw = getattr(PreforkMixIn, name)
        try:
            self.default = cast(T, None) if raw is None else self.convert(raw, "file")
        except Invalid as exc:
            raise TypeError(f"setting {name}: default {raw!r} {exc}") from None

    @overload
    def __get__(self, config: None, owner: type) -> Setting[T]: ...
    @overload
    def __get__(self, config: Values, owner: type) -> T: ...
    def __get__(self, config: Values | None, owner: type) -> Setting[T] | T:
        if config is None:
            return self
        return config.get(self.name)  # type: ignore[no-any-return]

    def __set__(self, config: Values, value: T) -> None:
        config.set(self.name, value)

    @property
    def keys(self) -> tuple[str, ...]:
        """The names a config file may use (``max-children`` is read as ``max_children``)."""
        return (self.name, *self.aliases)

    @property
    def env_names(self) -> tuple[str, ...]:
        return tuple(ENV_PREFIX + key.upper() for key in self.keys) + self.env_fallback

    @property
    def label(self) -> str:
        """How an error names the flag: the first long flag, or the positional's metavar."""
        flag = next((f for f in self.flags if f.startswith("--") or not f.startswith("-")), "")
        return flag or "--" + self.name.replace("_", "-")

    def shown_default(self) -> str:
        return self.unset or toml_value(self.default)


@dataclass(frozen=True)
class Bound:
    """A rule that ties two settings together: ``name`` must be ``op`` (``<=`` or ``>=``)
    ``other``.  With ``unset_exempt``, a zero (unset) on either side means no rule."""

    name: str
    op: str
    other: str
    unset_exempt: bool = False

    def broken(self, value: float, other: float) -> bool:
        if self.unset_exempt and not (value and other):
            return False
        return value > other if self.op == "<=" else value < other
