"""A recursive-descent parser for the RPC language: tokens in, the definitions of one file out.

One method per rule of RFC 4506 section 6.3 and RFC 5531 section 12.2 (``definition``,
``declaration``, ``type_specifier``, ``enum_body``, ``struct_body``, ``union_body``,
``program_def``, ...), plus what rpcgen's files use beyond the RFCs: ``unsigned`` alone,
``long``/``short``/``char`` (32-bit on the wire), ``struct NAME`` as a reference to a struct
declared elsewhere, ``string`` as a procedure's argument or result (``string<>``), and
procedures of several arguments.  A mistake raises :class:`XSyntaxError` with the line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prefork.rpc.rpcgen.lexer import Token, XSyntaxError, tokens

BASE_TYPES = {"int": "int", "hyper": "hyper", "float": "float", "double": "double",
              "bool": "bool", "long": "int", "short": "int", "char": "int"}
UNSIGNED = {"int": "uint", "hyper": "uhyper", "long": "uint", "short": "uint", "char": "uint"}


@dataclass(frozen=True)
class Value:
    """A number, or the name of a constant (``number`` None)."""

    number: int | None
    name: str
    line: int


@dataclass
class TypeSpec:
    kind: str  # a base kind (int uint hyper uhyper float double bool void), "name", or
    # "enum"/"struct"/"union" (inline, with a body; or a reference: ``name`` set, no body)
    line: int
    name: str = ""
    body: Body | None = None


@dataclass
class Decl:
    """``type name``, ``type name[n]``, ``type name<n>``, ``type *name``, or void."""

    name: str
    type: TypeSpec
    line: int
    shape: str = "plain"  # plain, fixed, variable, optional, void
    size: Value | None = None  # fixed and variable (None: ``<>``)
    special: str = ""  # "opaque" or "string"


@dataclass
class EnumBody:
    members: list[tuple[str, Value]]


@dataclass
class StructBody:
    fields: list[Decl]


@dataclass
class UnionBody:
    discriminant: Decl
    cases: list[tuple[list[Value], Decl]]
    default: Decl | None


Body = EnumBody | StructBody | UnionBody


@dataclass
class Definition:
    kind: str  # const, typedef, enum, struct, union
    name: str
    line: int
    value: Value | None = None  # const
    decl: Decl | None = None  # typedef
    body: Body | None = None  # enum, struct, union


@dataclass
class Procedure:
    name: str
    number: Value
    result: TypeSpec
    args: list[TypeSpec]
    line: int


@dataclass
class Version:
    name: str
    number: Value
    procedures: list[Procedure]
    line: int


@dataclass
class Program:
    name: str
    number: Value
    versions: list[Version]
    line: int


@dataclass
class Spec:
    definitions: list[Definition] = field(default_factory=list)
    programs: list[Program] = field(default_factory=list)


class Parser:
    def __init__(self, source: str, where: str = "<input>") -> None:
        self.where = where
        self.toks = tokens(source, where)
        self.pos = 0

    # -- tokens -------------------------------------------------------------------------------

    def peek(self, offset: int = 0) -> Token:
        return self.toks[min(self.pos + offset, len(self.toks) - 1)]

    def error(self, what: str, token: Token | None = None) -> XSyntaxError:
        token = token or self.peek()
        return XSyntaxError(self.where, token.line, what)

    def take(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def at(self, text: str) -> bool:
        token = self.peek()
        return token.kind in ("ident", "punct") and token.text == text

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.pos += 1
            return True
        return False

    def expect(self, text: str, context: str = "") -> Token:
        if not self.at(text):
            where = f" {context}" if context else ""
            raise self.error(f"expected {text!r}{where}, found {self.peek()}")
        return self.take()

    def identifier(self, what: str = "a name") -> Token:
        token = self.peek()
        if token.kind != "ident":
            raise self.error(f"expected {what}, found {token}")
        return self.take()

    # -- rules --------------------------------------------------------------------------------

    def specification(self) -> Spec:
        spec = Spec()
        while self.peek().kind != "end":
            if self.at("program"):
                spec.programs.append(self.program_def())
            else:
                spec.definitions.append(self.definition())
        return spec

    def definition(self) -> Definition:
        token = self.peek()
        if self.accept("const"):
            name = self.identifier("the constant's name")
            self.expect("=")
            value = self.value()
            self.expect(";", "after the constant")
            return Definition("const", name.text, name.line, value=value)
        if self.accept("typedef"):
            decl = self.declaration()
            if decl.shape == "void":
                raise self.error("typedef void names nothing", token)
            self.expect(";", "after the typedef")
            return Definition("typedef", decl.name, token.line, decl=decl)
        for kind in ("enum", "struct", "union"):
            if self.accept(kind):
                name = self.identifier(f"the {kind}'s name")
                body = self.body(kind)
                self.expect(";", f"after the {kind}")
                return Definition(kind, name.text, name.line, body=body)
        raise self.error(f"expected a definition (const, typedef, enum, struct, union or "
                         f"program), found {token}")

    def body(self, kind: str) -> Body:
        if kind == "enum":
            return self.enum_body()
        if kind == "struct":
            return self.struct_body()
        return self.union_body()

    def enum_body(self) -> EnumBody:
        self.expect("{", "to open the enum")
        members = []
        while True:
            name = self.identifier("an enum value's name")
            self.expect("=", f"after {name.text} (every enum value needs one)")
            members.append((name.text, self.value()))
            if not self.accept(","):
                break
        self.expect("}", "to close the enum")
        return EnumBody(members)

    def struct_body(self) -> StructBody:
        self.expect("{", "to open the struct")
        fields = []
        while not self.accept("}"):
            decl = self.declaration()
            if decl.shape == "void":
                raise self.error("a struct field cannot be void")
            self.expect(";", "after the field")
            fields.append(decl)
        if not fields:
            raise self.error("a struct needs at least one field")
        return StructBody(fields)

    def union_body(self) -> UnionBody:
        self.expect("switch", "(a union starts with switch)")
        self.expect("(")
        discriminant = self.declaration()
        self.expect(")", "after the discriminant")
        self.expect("{", "to open the union")
        cases: list[tuple[list[Value], Decl]] = []
        default = None
        while not self.accept("}"):
            if self.accept("default"):
                self.expect(":")
                default = self.declaration()
                self.expect(";", "after the default arm")
                continue
            values = []
            while self.accept("case"):
                values.append(self.value())
                self.expect(":")
            if not values:
                raise self.error(f"expected case, default or '}}', found {self.peek()}")
            arm = self.declaration()
            self.expect(";", "after the arm")
            cases.append((values, arm))
        if not cases:
            raise self.error("a union needs at least one case")
        return UnionBody(discriminant, cases, default)

    def declaration(self) -> Decl:
        token = self.peek()
        if self.accept("void"):
            return Decl("", TypeSpec("void", token.line), token.line, shape="void")
        special = token.text if token.kind == "ident" and token.text in ("opaque",
                                                                          "string") else ""
        if special:
            self.take()
            kind = TypeSpec("opaque" if special == "opaque" else "string", token.line)
        else:
            kind = self.type_specifier()
        if self.accept("*"):
            if special:
                raise self.error(f"{special} cannot be optional (*)")
            name = self.identifier("the optional field's name")
            return Decl(name.text, kind, name.line, shape="optional")
        name = self.identifier("the declared name")
        decl = Decl(name.text, kind, name.line, special=special)
        if self.accept("["):
            if special == "string":
                raise self.error("a string has a variable length: string NAME<N>")
            decl.shape, decl.size = "fixed", self.value()
            self.expect("]")
        elif self.accept("<"):
            decl.shape = "variable"
            if not self.at(">"):
                decl.size = self.value()
            self.expect(">")
        elif special:
            raise self.error(f"{special} {name.text} needs a size: [N] or <N> (<> for any)")
        return decl

    def type_specifier(self, what: str = "a type") -> TypeSpec:
        token = self.peek()
        if self.accept("unsigned"):
            after = self.peek()
            if after.kind == "ident" and after.text in UNSIGNED:
                self.take()
                return TypeSpec(UNSIGNED[after.text], token.line)
            return TypeSpec("uint", token.line)  # unsigned alone: unsigned int
        if token.kind == "ident" and token.text in BASE_TYPES:
            self.take()
            return TypeSpec(BASE_TYPES[token.text], token.line)
        if token.kind == "ident" and token.text == "quadruple":
            raise self.error("quadruple (128-bit floats) is not supported")
        for kind in ("enum", "struct", "union"):
            if self.accept(kind):
                if self.peek().kind == "ident":  # ``struct NAME``: a reference (rpcgen's)
                    name = self.take()
                    if not self.at("{"):
                        return TypeSpec("name", name.line, name=name.text)
                    raise self.error(f"a named {kind} is a definition of its own: "
                                     f"declare {kind} {name.text} {{...}}; before it")
                return TypeSpec(kind, token.line, body=self.body(kind))
        if token.kind == "ident":
            self.take()
            return TypeSpec("name", token.line, name=token.text)
        raise self.error(f"expected {what}, found {token}")

    def value(self) -> Value:
        token = self.peek()
        negative = self.accept("-")
        token = self.take()
        if token.kind == "number":
            text = token.text
            number = int(text, 16) if text[:2] in ("0x", "0X") else int(
                text, 8 if len(text) > 1 and text[0] == "0" and text.isdigit() else 10)
            return Value(-number if negative else number, "", token.line)
        if token.kind == "ident" and not negative:
            return Value(None, token.text, token.line)
        raise self.error(f"expected a number or a constant's name, found {token}", token)

    def program_def(self) -> Program:
        self.expect("program")
        name = self.identifier("the program's name")
        self.expect("{", "to open the program")
        versions = []
        while not self.accept("}"):
            versions.append(self.version_def())
        if not versions:
            raise self.error(f"program {name.text} has no version")
        self.expect("=", f"after program {name.text}'s body")
        number = self.value()
        self.expect(";", "after the program")
        return Program(name.text, number, versions, name.line)

    def version_def(self) -> Version:
        self.expect("version", "(a program holds versions)")
        name = self.identifier("the version's name")
        self.expect("{", "to open the version")
        procedures = []
        while not self.accept("}"):
            procedures.append(self.procedure_def())
        self.expect("=", f"after version {name.text}'s body")
        number = self.value()
        self.expect(";", "after the version")
        return Version(name.text, number, procedures, name.line)

    def procedure_def(self) -> Procedure:
        result = self.proc_type("a result type")
        name = self.identifier("the procedure's name")
        self.expect("(", f"after {name.text}")
        args = [self.proc_type("an argument type")]
        while self.accept(","):
            args.append(self.proc_type("an argument type"))
        self.expect(")", "after the arguments")
        if len(args) > 1 and any(a.kind == "void" for a in args):
            raise self.error("void is an argument list of its own")
        self.expect("=", f"after {name.text}(...)")
        number = self.value()
        self.expect(";", "after the procedure")
        return Procedure(name.text, number, result, [a for a in args if a.kind != "void"],
                         name.line)

    def proc_type(self, what: str) -> TypeSpec:
        token = self.peek()
        if self.accept("void"):
            return TypeSpec("void", token.line)
        if self.accept("string"):
            return TypeSpec("string", token.line)  # string<>, as rpcgen reads it
        return self.type_specifier(what)


def parse(source: str, where: str = "<input>") -> Spec:
    return Parser(source, where).specification()
