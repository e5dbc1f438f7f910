"""``prefork rpcgen``: the RPC language compiled to Python types and Program classes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import prefork.rpc.message as message
from helpers import clean_env, server_process
from prefork.rpc import Context, xdr
from prefork.rpc.client import Client
from prefork.rpc.program import dispatch
from prefork.rpc.rpcgen import XSyntaxError, compile_source

CALC_X = Path(__file__).resolve().parent / "c" / "calc.x"

EVERYTHING = """\
/* Every construct of RFC 4506 section 6 and RFC 5531 section 12. */
%#include <stdio.h>
const MAXNAME = 0x20;   // hex
const EIGHT = 010;      /* octal */
const MINUS = -3;
enum color { RED = 0, GREEN = 1, BLUE = EIGHT };
typedef string name<MAXNAME>;
typedef opaque digest[16];
typedef int triple[3];
struct node { int value; node *next; };          /* a linked list: a forward * */
struct item { name label; color shade; unsigned hyper big; float f; bool ok;
              digest sum; triple three; short s; unsigned u; opaque raw<>; item *more; };
union result switch (int status) {
  case 0: item found;
  case 1: case 2: void;
  default: string why<>;
};
union flag switch (bool set) { case TRUE: int value; case FALSE: void; };
program EVERY_PROG {
  version EVERY_V1 {
    void EVERY_NULL(void) = 0;
    result LOOKUP(name) = 1;
    int ADD(int, int) = 2;
    node REVERSE(node) = 3;
  } = 1;
  version EVERY_V2 {
    result LOOKUP(name) = 1;
    hyper ADD(hyper, hyper) = 2;
    string HELLO(string) = 4;
  } = 2;
} = 0x20000100;
"""


def load(source: str, tmp_path: Path, name: str = "generated") -> ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(compile_source(source, f"{name}.x"))
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call(program: Any, vers: int, proc: int, args: bytes = b"") -> message.Reply:
    request = message.read_call(message.encode_call(7, program.number, vers, proc, args))
    assert isinstance(request, message.Call)
    return message.read_reply(dispatch({program.number: program}, request, None, "tcp"))


def test_every_construct_compiles_and_round_trips(tmp_path: Path) -> None:
    gen = load(EVERYTHING, tmp_path)
    assert (gen.MAXNAME, gen.EIGHT, gen.MINUS, gen.BLUE, gen.EVERY_V2) == (32, 8, -3, 8, 2)
    linked = {"value": 1, "next": {"value": 2, "next": None}}
    assert xdr.decode(gen.node, xdr.encode(gen.node, linked)) == linked
    item = {"label": "x", "shade": gen.BLUE, "big": 2**64 - 1, "f": 0.5, "ok": True,
            "sum": bytes(16), "three": [1, 2, 3], "s": -1, "u": 7, "raw": b"abc",
            "more": None}
    for value in [(0, item), (2, None), (9, "no such thing")]:
        decoded = xdr.decode(gen.result, xdr.encode(gen.result, value))
        assert decoded[0] == value[0]
    decoded = xdr.decode(gen.result, xdr.encode(gen.result, (0, item)))[1]
    assert bytes(decoded["raw"]) == b"abc" and decoded["three"] == [1, 2, 3]
    with pytest.raises(xdr.XdrError):
        xdr.encode(gen.name, "n" * 33)  # string<MAXNAME>
    assert xdr.decode(gen.flag, xdr.encode(gen.flag, (True, 5))) == (True, 5)
    program = gen.EVERY_PROG
    assert program.number == 0x20000100 and sorted(program.table) == [1, 2]
    assert program.table[1][1].method == program.table[2][1].method == "lookup"  # alike
    assert {program.table[1][2].method, program.table[2][2].method} == {"add_1", "add_2"}


def test_the_class_as_generated_answers_null_and_proc_unavail(tmp_path: Path) -> None:
    gen = load(EVERYTHING, tmp_path)
    assert call(gen.EVERY_PROG, 1, 0).detail == message.SUCCESS
    assert call(gen.EVERY_PROG, 2, 4, xdr.encode(xdr.String(), "hi")).detail == \
        message.PROC_UNAVAIL
    assert call(gen.EVERY_PROG, 3, 0).detail == message.PROG_MISMATCH


def test_a_subclass_implements_by_overriding(tmp_path: Path) -> None:
    gen = load(EVERYTHING, tmp_path)

    class Every(gen.EVERY_PROG):  # type: ignore[name-defined,misc]
        def add_1(self, ctx: Context, arg: dict[str, int]) -> int:
            return arg["arg1"] + arg["arg2"]

        def hello(self, ctx: Context, arg: str) -> str:
            return f"hello {arg}"

    added = call(Every, 1, 2, xdr.encode(xdr.INT, 40) + xdr.encode(xdr.INT, 2))
    assert xdr.decode(xdr.INT, added.body) == 42
    hello = call(Every, 2, 4, xdr.encode(xdr.String(), "you"))
    assert xdr.decode(xdr.String(), hello.body) == "hello you"
    assert call(Every, 2, 2, bytes(16)).detail == message.PROC_UNAVAIL  # add_2: still a stub


BAD = [
    ("const A = 1\nconst B = 2;", 2, "expected ';' after the constant, found 'const'"),
    ("struct s { int a; };\nstruct t { nothing b; };", 2, "type nothing: unknown"),
    ("const N = 4;\ntypedef N x;", 2, "type N: a constant, not a type"),
    ("union u switch (int d) {\n case 1: int a;\n case 1: void; };", 3, "case 1 appears twice"),
    ("program P { version V {\n int A(int) = 1;\n int B(int) = 1;\n } = 1; } = 9;", 3,
     "procedure 1 appears twice in version V (A and B)"),
    ("typedef string s;", 1, "string s needs a size: [N] or <N> (<> for any)"),
    ("/* never\nclosed", 1, "comment not closed (no */)"),
    ("#define X 1", 1, "preprocessor lines (#...) are not supported"),
    ("typedef later x;\ntypedef int later;", 1, "type later is used before its definition "
     "on line 2"),
    ("enum e { A = 1, B };", 1, "expected '=' after B (every enum value needs one)"),
    ("typedef int a<-1>;", 1, "-1 is out of range [0, 4294967295]"),
    ("struct s { int a; };\nstruct s { int b; };", 2, "s is defined twice (first on line 1)"),
    ("program P { } = 1;", 1, "program P has no version"),
    ("int x;", 1, "expected a definition (const, typedef, enum, struct, union or program), "
     "found 'int'"),
    ("typedef quadruple q;", 1, "quadruple (128-bit floats) is not supported"),
    ("union u switch (string s<>) { case 1: void; };", 1, "a union's discriminant is an int, "
     "unsigned int, bool or enum"),
]


@pytest.mark.parametrize(("source", "line", "what"), BAD, ids=[b[2][:30] for b in BAD])
def test_bad_input_is_one_line_with_its_number(source: str, line: int, what: str) -> None:
    with pytest.raises(XSyntaxError) as caught:
        compile_source(source, "bad.x")
    assert str(caught.value).startswith(f"bad.x:{line}: {what}"), str(caught.value)
    assert caught.value.line == line


def rpcgen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefork", "rpcgen", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, env=clean_env())


def test_the_command_writes_beside_or_to_o_and_refuses_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "calc.x").write_text(CALC_X.read_text())
    assert rpcgen("calc.x", cwd=tmp_path).returncode == 0
    assert "class CALC_PROG(_Program):" in (tmp_path / "calc.py").read_text()
    assert rpcgen("calc.x", "-o", "elsewhere.py", cwd=tmp_path).returncode == 0
    assert (tmp_path / "elsewhere.py").read_text() == (tmp_path / "calc.py").read_text()
    (tmp_path / "bad.x").write_text("const A = 1;\nstruct s { int a }\n")
    done = rpcgen("bad.x", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "prefork: bad.x:2: expected ';' after the field, found '}'\n"
    assert not (tmp_path / "bad.py").exists()


def test_prefork_serve_serves_the_generated_class(tmp_path: Path) -> None:
    (tmp_path / "calc.x").write_text(CALC_X.read_text())
    assert rpcgen("calc.x", cwd=tmp_path).returncode == 0
    with server_process("serve", "calc:CALC_PROG", "-b", "127.0.0.1:0", "-w", "1",
                        "--no-rpcbind", cwd=tmp_path) as server:
        address = server.tcp_address()
        server.wait_workers(1)
        with Client(address, 536871065, 1) as client:
            assert client.call(0).detail == message.SUCCESS
            assert client.call(1, xdr.encode(xdr.INT, 2)).detail == message.PROC_UNAVAIL
        server.stop_ok()
