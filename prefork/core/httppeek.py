"""Where an HTTP request ends, seen from bytes peeked at (or read ahead over TLS) before the
handler runs: the multiplexer hands an HTTP connection over once this says the request is
there (``accepting.py``, ``mux.py``).

A look, not a parse: the handler's own parser (http.server's, or ``prefork.apps.request``)
reads and judges the request.  So every rule here errs towards handing over early -- a request
this cannot frame goes to the handler with its head, and the handler answers it (a 400, say) --
and never towards waiting for bytes the parser would not wait for, which would turn a request
the parser answers at once into a 408.

* **The head** ends at its first empty line: LF LF or LF CR LF, whichever comes first (CRLF
  heads, bare-LF heads and mixtures, as the strict parser accepts them), after any empty lines
  before the request line (which the parsers skip).
* **A body of up to BODY_WAIT bytes** announced by Content-Length is waited for too, so a
  client that sends its head and then drips its body (a slow POST) holds no handler either.
  Handed over with the head instead: a larger body, one with Transfer-Encoding (chunked, or
  CL and TE together, which the parser refuses), one whose client waits for ``100 Continue``
  (``Expect``), a Content-Length the parser would refuse or that differs between its values,
  and a head the parser refuses (judged by :mod:`prefork.core.httpgrammar`, as the parser
  judges it: a malformed request line or field line, a control byte in a value, two Host
  fields or a malformed one), which the handler then answers at once.
  16 KiB arrives within client_timeout on a slow link (16 KiB in 5 s: 3.2 KB/s).
* **A head that has not ended** is judged as it arrives by the handler's own rules
  (``accepting.judge``: the WSGI handler's ``judge_head`` is its parser, run over the bytes so
  far; an http.server handler's, the limits it applies): one they refuse already -- a
  malformed line, a request line or field line over its limit, too many fields -- is answered
  with their status at once instead of waiting for the rest (and a 408).  The user's limits
  are in ``httplimits.py``; this module frames, it does not bound lines.
"""

from __future__ import annotations

import re

from prefork.core.httpgrammar import FIELD_LINE, OWS, TOKEN, valid_host
from prefork.core.httplimits import MAX_HEAD

BODY_WAIT = 16 * 1024
CONTENT_LENGTH = re.compile(rb"\ncontent-length[ \t]*:([^\r\n]*)", re.IGNORECASE)
_OTHER_FRAMING = re.compile(rb"\n(?:expect|transfer-encoding)[ \t]*:", re.IGNORECASE)
EMPTY = (10, 13)  # LF, CR: the bytes of an empty line before the request line


def head_end(data: bytes | bytearray, end: int) -> int:
    """The index just past the empty line that ends the request head in ``data[:end]``, or -1
    while there is none."""
    start = 0
    while start < end and data[start] in EMPTY:  # empty lines before the request line
        start += 1
    crlf = data.find(b"\n\r\n", start, end)
    lf = data.find(b"\n\n", start, crlf if crlf >= 0 else end)  # an earlier bare-LF end
    if lf >= 0:
        return lf + 2
    return crlf + 3 if crlf >= 0 else -1


def request_end(data: bytes | bytearray, end: int) -> int:
    """Where the request at the start of ``data[:end]`` ends -- its head, and a body waited
    for (see the module's docstring) -- or -1 while its head has not ended.  The result may lie
    beyond ``end``: the body is still coming."""
    head = head_end(data, end)
    if head < 0:
        return -1
    lengths = CONTENT_LENGTH.findall(data, 0, head)
    if not lengths or _OTHER_FRAMING.search(data, 0, head):
        return head
    values = {value.strip(OWS) for field in lengths for value in field.split(b",")}
    if len(values) != 1:
        return head
    (value,) = values
    if not value.isdigit() or len(value) > 18:
        return head
    size = int(value)
    if size > BODY_WAIT or head + size > MAX_HEAD or not _valid(bytes(data[:head])):
        return head
    return head + size


_VERSION = re.compile(rb"HTTP/1\.[0-9]")


def _valid(head: bytes) -> bool:
    """Whether the strict parser would accept the request line and the field lines of
    ``head`` (its empty lines included, CRLF or LF line ends)."""
    lines = [line[:-1] if line.endswith(b"\r") else line
             for line in head.lstrip(b"\r\n").split(b"\n")]
    parts = lines[0].split(b" ")
    if (len(parts) != 3 or not TOKEN.fullmatch(parts[0]) or not _VERSION.fullmatch(parts[2])
            or any(c <= 0x20 or c == 0x7F for c in parts[1])):
        return False
    hosts = []
    for line in lines[1:-2]:
        if FIELD_LINE.fullmatch(line) is None:
            return False
        if line[:5].lower() == b"host:":
            hosts.append(line[5:].strip(b" \t").decode("latin-1"))
    return len(hosts) <= 1 and all(valid_host(host) for host in hosts)


def heads_in(data: bytes) -> int:
    """An upper bound on the request heads in ``data`` (empty lines counted)."""
    return data.count(b"\n\n") + data.count(b"\n\r\n")
