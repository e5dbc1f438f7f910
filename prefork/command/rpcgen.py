"""``prefork rpcgen FILE.x [-o PATH]``: compile an RPC language file to a Python module.

The module (FILE.py beside FILE.x unless ``-o`` says where) holds the file's constants, its
types as prefork.rpc.xdr declarations and a Program class per program, which ``prefork serve
FILE:PROGRAM`` serves as it is (NULL answers, the other procedures PROC_UNAVAIL) and a subclass
implements.  A mistake in the file is one line, ``FILE.x:LINE: what``, and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from prefork.command.client import UsageError
from prefork.rpc.rpcgen import XSyntaxError, compile_source


def add_command(commands: Any) -> None:
    gen = commands.add_parser("rpcgen", help="compile an RPC language (.x) file to Python")
    gen.add_argument("source", metavar="FILE.x", help="the RPC language file")
    gen.add_argument("-o", "--output", default=None, metavar="PATH",
                     help="where to write the module (default: FILE.py beside FILE.x)")


def output_path(source: Path, output: str | None) -> Path:
    if output:
        return Path(output)
    return source.with_suffix(".py") if source.suffix == ".x" else Path(f"{source}.py")


def run_rpcgen(args: argparse.Namespace) -> int:
    source = Path(args.source)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {source}: {getattr(exc, 'strerror', None) or exc}"
                         ) from None
    try:
        module = compile_source(text, source.name)
    except XSyntaxError as exc:
        raise UsageError(str(exc)) from None
    target = output_path(source, args.output)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(module, encoding="utf-8")
        os.replace(temporary, target)  # never a half-written module
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    return 0
