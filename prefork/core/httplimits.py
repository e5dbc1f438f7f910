"""The bounds on a request head that a user sets, named as gunicorn names them:
``limit_request_line`` (bytes of the request line; 414 beyond), ``limit_request_fields`` (header
fields; 431 beyond) and ``limit_request_field_size`` (bytes of one field line, name and value;
431 beyond).  They are read from the server here, and only here (:func:`of`); the strict parser
(``apps/request.py``), its httptools fast path (``apps/fasthead.py``), the trailers of a
chunked body (``apps/body.py``), the multiplexer's look at a partial head (``httppeek.py``)
and the http.server handlers (``httpserverlimits.py``) ask for a :class:`HeadLimits`.

As in gunicorn: a request line of 0 is unlimited and may not be set above 8190; 0 fields is the
most gunicorn allows (32768); a field size of 0 is unlimited.  Unset (None, the default), each
handler keeps its own: 8190, 100 and 8190 for the WSGI handler (gunicorn's and Apache's sizes),
the stdlib's for an http.server handler (:data:`HTTP_SERVER`), whose outcome under the pool must
stay the one it has under ThreadingMixIn.  "Unlimited" is bounded all the
same by the head's own bound, MAX_HEAD bytes of head in all (431), which also keeps a worker's
buffer for a head waiting in the multiplexer at a fixed size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

MAX_HEAD = 64 * 1024  # bytes of request head in all; more is answered 431
LINE = 8190  # the defaults (gunicorn's request line maximum, Apache's and gunicorn's sizes)
FIELDS = 100
FIELD_SIZE = 8190
MAX_LINE = 8190  # the largest request line limit gunicorn takes
MAX_FIELDS = 32768
UNLIMITED = MAX_HEAD - 2  # the longest line "unlimited" allows (see effective())


@dataclass(frozen=True, slots=True)
class HeadLimits:
    """The bounds in effect, in bytes and fields (no zeros: unlimited is UNLIMITED)."""

    request_line: int = LINE
    fields: int = FIELDS
    field_size: int = FIELD_SIZE
    # A head no longer than this crosses neither line bound (the fast path's test; derived).
    smallest_line: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "smallest_line", min(self.request_line, self.field_size))


DEFAULT = HeadLimits()
# http.server's own bounds: a request line of 65536 bytes, 100 fields (http.client), lines of
# 65536 bytes (both beyond UNLIMITED: the multiplexer's buffer bounds them first).
HTTP_SERVER = (65536, 100, 65536)


@functools.lru_cache(maxsize=64)
def effective(request_line: int, fields: int, field_size: int) -> HeadLimits:
    """The limits the settings' values mean (0: unlimited, or the most gunicorn allows).
    An unlimited line is UNLIMITED bytes: a parser refuses a line once it has read two bytes
    more than its bound without its end, and the multiplexer holds MAX_HEAD bytes of head."""
    return HeadLimits(request_line if 0 < request_line < UNLIMITED else UNLIMITED,
                      fields if 0 < fields <= MAX_FIELDS else MAX_FIELDS,
                      field_size if 0 < field_size < UNLIMITED else UNLIMITED)


def stdlib(limits: HeadLimits) -> bool:
    """Whether ``limits`` are http.server's own (nothing set): its parser alone judges."""
    return limits == effective(*HTTP_SERVER)


def of(server: Any, own: tuple[int, int, int] = (LINE, FIELDS, FIELD_SIZE)) -> HeadLimits:
    """The limits ``server``'s attributes set, ``own`` (the handler's) where they are unset
    (None, or a server without them)."""
    line = getattr(server, "limit_request_line", None)
    fields = getattr(server, "limit_request_fields", None)
    size = getattr(server, "limit_request_field_size", None)
    return effective(own[0] if line is None else line, own[1] if fields is None else fields,
                     own[2] if size is None else size)
