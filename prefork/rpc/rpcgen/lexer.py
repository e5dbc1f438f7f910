"""The tokens of the RPC language (RFC 5531 section 12, over RFC 4506 section 6).

Identifiers (a letter, then letters, digits and underscores), numbers (decimal, ``0x`` hex,
``0`` octal; a leading ``-`` belongs to the parser), the punctuation ``{ } [ ] < > ( ) ; : ,
= *``, and nothing else.  Comments are C's ``/* ... */`` (and ``//`` to the end of the line, as
rpcgen's preprocessor allows); a line whose first character is ``%`` is rpcgen's pass-through
to the C output and is skipped.  Every token knows its line, for the messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PUNCTUATION = "{}[]<>();:,=*-"
_TOKEN = re.compile(r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<comment>/\*.*?\*/)
  | (?P<open_comment>/\*)
  | (?P<line_comment>//[^\n]*)
  | (?P<number>0[xX][0-9a-fA-F]+|[0-9]+)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}\[\]<>();:,=*\-])
""", re.VERBOSE | re.DOTALL)


class XSyntaxError(ValueError):
    """Bad input: the message names the file and line."""

    def __init__(self, where: str, line: int, what: str) -> None:
        super().__init__(f"{where}:{line}: {what}")
        self.line = line


@dataclass(frozen=True)
class Token:
    kind: str  # "ident", "number", "punct" or "end"
    text: str
    line: int

    def __str__(self) -> str:
        return "the end of the file" if self.kind == "end" else repr(self.text)


def tokens(source: str, where: str = "<input>") -> list[Token]:
    out: list[Token] = []
    line, pos = 1, 0
    at_line_start = True
    while pos < len(source):
        if at_line_start:
            stripped = len(source) - len(source[pos:].lstrip(" \t"))
            if source.startswith("%", stripped):  # rpcgen's pass-through line
                end = source.find("\n", stripped)
                pos = len(source) if end < 0 else end
                continue
            if source.startswith("#", stripped):
                raise XSyntaxError(where, line, "preprocessor lines (#...) are not supported: "
                                   "prefork rpcgen runs no C preprocessor")
        match = _TOKEN.match(source, pos)
        if match is None:
            raise XSyntaxError(where, line, f"unexpected character {source[pos]!r}")
        kind, text = match.lastgroup or "", match.group()
        at_line_start = kind == "newline"
        if kind == "open_comment":
            raise XSyntaxError(where, line, "comment not closed (no */)")
        if kind in ("number", "ident", "punct"):
            out.append(Token(kind, text, line))
        line += text.count("\n")
        pos = match.end()
    out.append(Token("end", "", line))
    return out
