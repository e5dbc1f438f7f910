"""One Program subclass per ``program`` definition (see emit.py for the whole module).

Each procedure is a method named after it in lower case (``DOUBLE`` -> ``double``).  A
procedure declared alike in several versions (same number, argument and result) is one method
listed in all of them; one that differs between versions gets a method per version, suffixed
as rpcgen's C functions are (``double_1``, ``double_2``).  Procedure 0 is NULL, which every
version answers without a method.
"""

from __future__ import annotations

from prefork.rpc.rpcgen.emit import RESERVED, Emitter, py_name
from prefork.rpc.rpcgen.parser import Procedure, Program

Entry = tuple[int, int, Procedure, tuple[str, str, str, str]]  # version, number, proc, types


def method_name(name: str) -> str:
    low = py_name(name.lower())
    return low + "_" if low in RESERVED or low.startswith("_") else low


def program_class(em: Emitter, program: Program) -> list[str]:
    number = em.value(program.number, 0)
    by_name: dict[str, list[Entry]] = {}
    versions: list[int] = []
    for version in program.versions:
        vers = em.value(version.number, 0)
        if vers in versions:
            raise em.error(version.line, f"version {vers} of {program.name} appears twice")
        versions.append(vers)
        seen: dict[int, str] = {}
        for proc in version.procedures:
            proc_number = em.value(proc.number, 0)
            if proc_number in seen:
                raise em.error(proc.line, f"procedure {proc_number} appears twice in version "
                               f"{version.name} ({seen[proc_number]} and {proc.name})")
            seen[proc_number] = proc.name
            types = em.proc_types(proc)
            if proc_number == 0:
                if types[:2] != ("_xdr.VOID", "_xdr.VOID"):
                    raise em.error(proc.line, f"procedure 0 is NULL: void {proc.name}(void)")
                continue
            by_name.setdefault(proc.name, []).append((vers, proc_number, proc, types))
    lines = [f"class {py_name(program.name)}(_Program):",
             f'    """program {program.name} = {number} ({em.where} line {program.line}), '
             f'versions {", ".join(map(str, versions))}.',
             "",
             "    Every procedure answers PROC_UNAVAIL until a subclass overrides its method.",
             '    """',
             "",
             f"    number = {number}",
             f"    versions = {tuple(versions)!r}"]
    methods: dict[str, int] = {}
    for name, entries in by_name.items():
        alike = len({(n, t[:2]) for _, n, _, t in entries}) == 1
        groups = [entries] if alike else [[e] for e in entries]
        for group in groups:
            method = method_name(name) + ("" if alike else f"_{group[0][0]}")
            proc = group[0][2]
            if method in methods:
                raise em.error(proc.line, f"procedure {name} gives a method named {method}, "
                               f"as another one does (line {methods[method]})")
            methods[method] = proc.line
            lines += stub(method, group)
    return lines


def stub(method: str, group: list[Entry]) -> list[str]:
    vers = tuple(v for v, _, _, _ in group)
    _, number, proc, (args, result, py_args, py_result) = group[0]
    listed = ", ".join(map(str, vers))
    return ["",
            f"    @_procedure({number}, args={args}, result={result}, versions={vers!r})",
            f"    def {method}(self, ctx: _Context, arg: {py_args}) -> {py_result}:",
            f'        """{proc.name} = {number}, in version{"s" if len(vers) > 1 else ""} '
            f'{listed} (line {proc.line})."""',
            f"        raise _Unavailable({proc.name!r})"]
