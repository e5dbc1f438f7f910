"""From the parsed definitions of a ``.x`` file to a Python module that serves them.

The module declares, in this order: every constant (``const``, the values of every enum, the
program and version numbers) as a Python int; an empty ``xdr.Struct()`` or ``xdr.Union`` for
every struct and union, so that a type can refer to itself or to a later one through ``*``
(a linked list); then every type in the file's order (typedefs, enums, and the bodies of the
structs and unions); last, one :class:`prefork.rpc.Program` subclass per program, whose
procedures (one method each, named in lower case; NULL needs none) raise
:class:`~prefork.rpc.program.Unavailable` -- PROC_UNAVAIL -- until a subclass overrides them.

Values follow prefork.rpc.xdr: a struct is a dict, a union a (discriminant, value) pair, an
optional value None or the value, opaque data bytes (a memoryview when decoded).  Mistakes the
parser cannot see (an unknown type, a constant used as a type, a case twice, a procedure
number twice, a number out of range) raise :class:`XSyntaxError` with the line.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable

from prefork.rpc.rpcgen.lexer import XSyntaxError
from prefork.rpc.rpcgen.parser import (
    Body,
    Decl,
    Definition,
    EnumBody,
    Procedure,
    Program,
    Spec,
    StructBody,
    TypeSpec,
    UnionBody,
    Value,
)

BASE = {"int": "_xdr.INT", "uint": "_xdr.UINT", "hyper": "_xdr.HYPER",
        "uhyper": "_xdr.UHYPER", "float": "_xdr.FLOAT", "double": "_xdr.DOUBLE",
        "bool": "_xdr.BOOL", "void": "_xdr.VOID", "string": "_xdr.String()"}
PY_BASE = {"int": "int", "uint": "int", "hyper": "int", "uhyper": "int", "float": "float",
           "double": "float", "bool": "bool", "void": "None", "string": "str"}
RESERVED = {"number", "versions", "table", "rpcbind", "run"}  # Program's own attributes
MAX_U32 = 0xFFFFFFFF


def py_name(name: str) -> str:
    return name + "_" if keyword.iskeyword(name) or keyword.issoftkeyword(name) else name


class Emitter:
    def __init__(self, spec: Spec, where: str) -> None:
        self.spec, self.where = spec, where
        self.constants: dict[str, int] = {"TRUE": 1, "FALSE": 0}
        self.types: dict[str, Definition] = {}
        self.defined_at: dict[str, int] = {}  # name -> line, for "defined twice"
        self.out: list[str] = []

    def error(self, line: int, what: str) -> XSyntaxError:
        return XSyntaxError(self.where, line, what)

    def define(self, name: str, line: int) -> None:
        if name in self.defined_at or name in ("TRUE", "FALSE"):
            raise self.error(line, f"{name} is defined twice (first on line "
                             f"{self.defined_at.get(name, 0)})")
        self.defined_at[name] = line

    # -- values -------------------------------------------------------------------------------

    def value(self, value: Value, low: int = -(1 << 31), high: int = MAX_U32) -> int:
        if value.number is None:
            if value.name in self.types:
                raise self.error(value.line, f"{value.name} is a type, not a constant")
            if value.name not in self.constants:
                raise self.error(value.line, f"unknown constant {value.name}")
            number = self.constants[value.name]
        else:
            number = value.number
        if not low <= number <= high:
            raise self.error(value.line, f"{number} is out of range [{low}, {high}]")
        return number

    def size(self, value: Value | None) -> str:
        return "" if value is None else str(self.value(value, 0))

    # -- types --------------------------------------------------------------------------------

    def type_expr(self, spec: TypeSpec, seen_before: bool = True) -> str:
        if spec.kind in BASE:
            return BASE[spec.kind]
        if spec.kind == "name":
            found = self.types.get(spec.name)
            if found is None:
                what = "a constant, not a type" if spec.name in self.constants else "unknown"
                raise self.error(spec.line, f"type {spec.name}: {what}")
            if seen_before and found.kind in ("typedef", "enum") and found.line > spec.line:
                raise self.error(spec.line, f"type {spec.name} is used before its definition "
                                 f"on line {found.line}")
            return py_name(spec.name)
        assert spec.body is not None
        return self.body_expr(spec.body)

    def body_expr(self, body: Body) -> str:
        if isinstance(body, EnumBody):
            return "_xdr.Enum({" + ", ".join(
                f"{name!r}: {self.constants[name]}" for name, _ in body.members) + "})"
        if isinstance(body, StructBody):
            return "_xdr.Struct(" + ", ".join(self.fields(body)) + ")"
        return f"_xdr.Union({self.union_parts(body)})"

    def decl_expr(self, decl: Decl) -> str:
        if decl.shape == "void":
            return "_xdr.VOID"
        if decl.special == "opaque":
            kind = "FixedOpaque" if decl.shape == "fixed" else "Opaque"
            return f"_xdr.{kind}({self.size(decl.size)})"
        if decl.special == "string":
            return f"_xdr.String({self.size(decl.size)})"
        inner = self.type_expr(decl.type, seen_before=decl.shape != "optional")
        if decl.shape == "fixed":
            return f"_xdr.FixedArray({inner}, {self.size(decl.size)})"
        if decl.shape == "variable":
            size = self.size(decl.size)
            return f"_xdr.Array({inner}{', ' + size if size else ''})"
        if decl.shape == "optional":
            return f"_xdr.Optional({inner})"
        return inner

    def fields(self, body: StructBody) -> list[str]:
        names: set[str] = set()
        out = []
        for decl in body.fields:
            if decl.name in names:
                raise self.error(decl.line, f"field {decl.name} declared twice")
            names.add(decl.name)
            out.append(f"({decl.name!r}, {self.decl_expr(decl)})")
        return out

    def union_parts(self, body: UnionBody) -> str:
        disc = body.discriminant
        if disc.shape != "plain" or disc.special or not self.discriminant_ok(disc.type):
            raise self.error(disc.line, "a union's discriminant is an int, unsigned int, "
                             "bool or enum")
        arms: dict[int, str] = {}
        for values, decl in body.cases:
            for value in values:
                case = self.value(value)
                if case in arms:
                    raise self.error(value.line, f"case {case} appears twice")
                arms[case] = self.decl_expr(decl)
        text = self.type_expr(disc.type) + ", {" + ", ".join(
            f"{case}: {arm}" for case, arm in arms.items()) + "}"
        if body.default is not None:
            text += f", default={self.decl_expr(body.default)}"
        return text

    def discriminant_ok(self, spec: TypeSpec) -> bool:
        if spec.kind in ("int", "uint", "bool", "enum"):
            return True
        found = self.types.get(spec.name) if spec.kind == "name" else None
        if found is None:
            return False
        if found.kind == "typedef" and found.decl is not None:
            return found.decl.shape == "plain" and self.discriminant_ok(found.decl.type)
        return found.kind == "enum"

    # -- Python types, for the stubs' annotations ----------------------------------------------

    def py_type(self, spec: TypeSpec, decoded: bool) -> str:
        if spec.kind in PY_BASE:
            return PY_BASE[spec.kind]
        found = self.types.get(spec.name) if spec.kind == "name" else None
        kind = found.kind if found is not None else spec.kind
        if kind == "typedef" and found is not None and found.decl is not None:
            return self.py_decl(found.decl, decoded)
        return {"enum": "int", "struct": "dict[str, _Any]", "union": "tuple[int, _Any]"}.get(
            kind, "_Any")

    def py_decl(self, decl: Decl, decoded: bool) -> str:
        if decl.special == "opaque":
            return "memoryview" if decoded else "bytes"
        if decl.special == "string":
            return "str"
        if decl.shape in ("fixed", "variable"):
            return "list[_Any]"
        inner = self.py_type(decl.type, decoded)
        return f"{inner} | None" if decl.shape == "optional" else inner

    # -- the module ---------------------------------------------------------------------------

    def module(self, doc: str) -> list[str]:
        """The module's lines up to the program classes."""
        spec = self.spec
        self.collect(spec.definitions, spec.programs)
        out = self.out
        out += [f'"""{doc}"""', "", "from __future__ import annotations", "",
                "from typing import Any as _Any", "",
                "from prefork.rpc import xdr as _xdr",
                "from prefork.rpc.program import Context as _Context",
                "from prefork.rpc.program import Program as _Program",
                "from prefork.rpc.program import Unavailable as _Unavailable",
                "from prefork.rpc.program import procedure as _procedure", ""]
        classes = {p.name for p in spec.programs}  # the class is the name; .number the value
        for name, number in self.constants.items():
            if name not in ("TRUE", "FALSE") and name not in classes:
                out.append(f"{py_name(name)} = {number}")
        shells = [d for d in spec.definitions if d.kind in ("struct", "union")]
        if shells:
            out.append("")
        for d in shells:  # declared first: a type may point (*) at itself or a later one
            empty = "_xdr.Struct()" if d.kind == "struct" else "_xdr.Union(_xdr.INT, {})"
            out.append(f"{py_name(d.name)} = {empty}")
        out.append("")
        for d in spec.definitions:
            self.type_definition(d)
        return out

    def collect(self, definitions: Iterable[Definition], programs: Iterable[Program]) -> None:
        """Constants (with enum values, program and version numbers) and type names."""
        for d in definitions:
            self.define(d.name, d.line)
            if d.kind == "const":
                assert d.value is not None
                self.constants[d.name] = self.value(d.value, -(1 << 63), (1 << 64) - 1)
            else:
                self.types[d.name] = d
            for body in self.bodies(d):
                if isinstance(body, EnumBody):
                    for name, value in body.members:
                        self.define(name, value.line)
                        self.constants[name] = self.value(value, -(1 << 31), (1 << 31) - 1)
        for program in programs:
            self.define(program.name, program.line)
            self.constants[program.name] = self.value(program.number, 0)
            for version in program.versions:
                if version.name not in self.constants or self.constants[version.name] != \
                        self.value(version.number, 0):
                    self.define(version.name, version.line)
                self.constants[version.name] = self.value(version.number, 0)

    def bodies(self, d: Definition) -> Iterable[Body]:
        """Every body in a definition, inline ones too (their enum values are constants)."""
        stack: list[Body] = [d.body] if d.body is not None else []
        if d.decl is not None and d.decl.type.body is not None:
            stack.append(d.decl.type.body)
        while stack:
            body = stack.pop()
            yield body
            decls: list[Decl] = []
            if isinstance(body, StructBody):
                decls = body.fields
            elif isinstance(body, UnionBody):
                decls = [body.discriminant, *(arm for _, arm in body.cases)]
                decls += [body.default] if body.default is not None else []
            stack.extend(decl.type.body for decl in decls if decl.type.body is not None)

    def type_definition(self, d: Definition) -> None:
        name = py_name(d.name)
        if d.kind == "typedef":
            assert d.decl is not None
            self.out.append(f"{name} = {self.decl_expr(d.decl)}")
        elif isinstance(d.body, EnumBody):
            self.out.append(f"{name} = {self.body_expr(d.body)}")
        elif isinstance(d.body, StructBody):
            self.out.append(f"{name}.fields = (" + ", ".join(self.fields(d.body)) + ",)")
        elif isinstance(d.body, UnionBody):
            self.out.append(f"{name}.__init__({self.union_parts(d.body)})")

    def proc_types(self, proc: Procedure) -> tuple[str, str, str, str]:
        """The argument's and the result's XDR expressions and Python annotations."""
        if len(proc.args) > 1:
            args = "_xdr.Struct(" + ", ".join(
                f"('arg{i}', {self.type_expr(a)})" for i, a in enumerate(proc.args, 1)) + ")"
            py_args = "dict[str, _Any]"
        elif proc.args:
            args, py_args = self.type_expr(proc.args[0]), self.py_type(proc.args[0], True)
        else:
            args, py_args = "_xdr.VOID", "None"
        return (args, self.type_expr(proc.result), py_args,
                self.py_type(proc.result, False))
