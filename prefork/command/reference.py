"""docs/settings.md, generated from the settings table (prefork/command/settings.py) by
``python scripts/gen_settings_doc.py``; a test fails when the committed file differs."""

from __future__ import annotations

from prefork.command.convert import toml_value
from prefork.command.settings import SECTIONS, SETTINGS


def reference() -> str:
    """The settings reference, docs/settings.md (``python scripts/gen_settings_doc.py``)."""
    lines = [
        "# Settings",
        "",
        "<!-- Generated from prefork/command/settings.py by scripts/gen_settings_doc.py; "
        "do not edit. -->",
        "",
        "Each setting can be given, lowest precedence first: as its default, in a TOML file "
        "(`-c FILE`, or else `[tool.prefork]` in `./pyproject.toml`; `max-children` is read as "
        "`max_children`), in the environment (`PREFORK_<KEY>`), or as a flag of "
        "`prefork serve`. `prefork serve --print-config` shows the effective values and where "
        "each came from. *Reload*: a HUP applies a new value without a restart. *Server*: also "
        "a class attribute of `PreforkMixIn`, where its default is declared. A hook is an "
        "importable `module:callable`, called with the server first.",
    ]
    for section in SECTIONS:
        lines += ["", f"## {section}", "",
                  "| setting | flags | environment | default | reload | server |",
                  "|---|---|---|---|---|---|"]
        for s in (s for s in SETTINGS if s.section == section):
            key = f"`{s.name}`" + "".join(f" (alias `{alias}`)" for alias in s.aliases)
            flags = ", ".join(f"`{f} {s.metavar}`" if s.metavar and f.startswith("-") else f"`{f}`"
                              for f in s.flags)
            env = ", ".join(f"`{e}`" for e in s.env_names)
            default = s.unset or f"`{toml_value(s.default)}`"
            yes = {True: "yes", False: ""}
            lines.append(f"| {key} | {flags or '-'} | {env} | {default} | {yes[s.live]} "
                         f"| {yes[s.server]} |")
        lines += [""] + [f"- `{s.name}`: {s.help}."
                         for s in SETTINGS if s.section == section]
    return "\n".join(lines) + "\n"
