"""The HTTP/1.1 grammar (RFC 9110 / RFC 9112 ABNF), written once: the request head's parser
(:mod:`prefork.apps.request`), the fast path's check (:mod:`prefork.apps.fasthead`), the
chunked decoder (:mod:`prefork.apps.body`) and the multiplexer's look at a head
(:mod:`prefork.core.httppeek`) all judge bytes with these, so they cannot disagree.

* OWS / BWS is SP or HTAB only -- never ``str.strip()``'s idea of whitespace (VT, FF, the
  separators 0x1C..0x1F, NEL, NBSP).
* A token is 1*tchar; a field value is VCHAR / obs-text / SP / HTAB (NUL, CR, LF and the other
  controls refused), without leading or trailing OWS.
* A chunk-size line is ``1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )``
  with at most MAX_CHUNK_DIGITS digits.
* ``Host`` is ``uri-host [ ":" port ]`` (an IP-literal, an IPv4 address or a reg-name).
"""

from __future__ import annotations

import re

OWS = b" \t"
OWS_STR = " \t"
MAX_CHUNK_DIGITS = 16

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
TCHAR = _TCHAR  # (the pattern of one tchar, for expressions built on the grammar)
TOKEN = re.compile(_TCHAR + rb"+")
# A field value as it is kept: OWS stripped, so it starts and ends with a visible byte.
_VCHAR = rb"[\x21-\x7e\x80-\xff]"
FIELD_VALUE = re.compile(rb"(?:" + _VCHAR + rb"(?:[\t\x20-\x7e\x80-\xff]*" + _VCHAR + rb")?)?")
FIELD_LINE = re.compile(_TCHAR + rb"+:[ \t]*(" + FIELD_VALUE.pattern + rb")[ \t]*")
_QUOTED = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
_EXTENSION = (rb"[ \t]*;[ \t]*" + _TCHAR + rb"+(?:[ \t]*=[ \t]*(?:" + _TCHAR + rb"+|"
              + _QUOTED + rb"))?")
CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,%d})(?:%s)*" % (MAX_CHUNK_DIGITS, _EXTENSION))
_PORT = r"(?::[0-9]*)?"
HOST = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|\[v[0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+\]"
                  r"|[A-Za-z0-9\-._~!$&'()*+,;=%]*)" + _PORT)
DIGITS = re.compile(r"[0-9]{1,18}")


def field_value(raw: bytes) -> bytes | None:
    """The value of a field line's ``raw`` value part (after the colon), OWS stripped; None if
    it is not a valid field value."""
    value = raw.strip(OWS)
    return value if FIELD_VALUE.fullmatch(value) else None


def valid_value(value: str) -> bool:
    """Whether ``value`` (latin-1, OWS stripped) is a valid field value."""
    return FIELD_VALUE.fullmatch(value.encode("latin-1")) is not None


def list_items(value: str) -> list[str]:
    """The elements of a comma-separated list value, OWS stripped (empty ones kept)."""
    return [part.strip(OWS_STR) for part in value.split(",")]


def valid_host(value: str) -> bool:
    """Whether ``value`` is ``uri-host [ ":" port ]``."""
    return HOST.fullmatch(value) is not None
