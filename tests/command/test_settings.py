"""The settings table: every setting complete, defaults from the server, docs in step, aliases."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

import pytest

from helpers import ROOT
from prefork.command.app import DEFAULT_APP
from prefork.command.cli import build_parser
from prefork.command.config import ConfigError, describe, load_config
from prefork.command.convert import number
from prefork.command.reference import reference
from prefork.command.settings import (
    BY_NAME,
    HOOKS,
    LIVE_SETTINGS,
    SERVE_KEYS,
    SERVER_SETTINGS,
    SETTINGS,
    Config,
    Setting,
    server_name,
)
from prefork.core.servers import PreforkMixIn, default_workers


def _serve_parser() -> argparse.ArgumentParser:
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    return commands.choices["serve"]


def test_every_setting_has_env_help_and_flags() -> None:
    for setting in SETTINGS:
        assert setting.help and not setting.help.endswith("."), setting.name
        assert f"PREFORK_{setting.name.upper()}" in setting.env_names
        if setting.section == HOOKS:
            assert not setting.flags, setting.name
        else:
            assert setting.flags, setting.name


def test_the_serve_flags_are_the_table() -> None:
    dests = {action.dest for action in _serve_parser()._actions}
    assert set(SERVE_KEYS) <= dests
    assert dests - set(SERVE_KEYS) == {"help", "config", "print_config"}
    options = {flag: action.dest for action in _serve_parser()._actions
               for flag in action.option_strings}
    for name in SERVE_KEYS:
        for flag in BY_NAME[name].flags:
            if flag.startswith("-"):
                assert options[flag] == name


def test_flags_arrive_under_the_setting_names() -> None:
    args = _serve_parser().parse_args(
        ["x:Y", "-w", "3", "--timeout", "2.5", "-b", ":1", "-b", ":2", "--preload"]
    )
    cli = {key: getattr(args, key) for key in SERVE_KEYS}
    config = load_config(cli, env={}, cwd=Path("/nonexistent"))
    assert (config.app, config.workers, config.request_timeout) == ("x:Y", 3, 2.5)
    assert config.bind == [":1", ":2"] and config.preload is True
    args = _serve_parser().parse_args(["--request-timeout", "4", "-t", "5"])
    assert args.request_timeout == 5.0


def test_server_defaults_come_from_the_server() -> None:
    assert "graceful_timeout" in SERVER_SETTINGS and "request_timeout" in SERVER_SETTINGS
    for name in SERVER_SETTINGS:
        declared = getattr(PreforkMixIn, name)
        assert BY_NAME[name].default == (declared or None if isinstance(declared, str)
                                         else declared), name
        assert Config().get(name) == BY_NAME[name].default


def test_server_defaults_follow_a_changed_server(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(PreforkMixIn, "graceful_timeout", 12.5)

    class Probe:
        graceful_timeout = Setting(number(0), BY_NAME["graceful_timeout"]._declared_default,
                                   section=HOOKS, help="probe")

    assert Probe.graceful_timeout.default == 12.5


def test_server_tunables_and_live_settings_are_server_attributes() -> None:
    for name in (*SERVER_SETTINGS, *LIVE_SETTINGS):
        assert hasattr(PreforkMixIn, name), name
    assert set(LIVE_SETTINGS) <= set(SERVER_SETTINGS)
    assert "timeout" not in SERVER_SETTINGS  # socketserver's own timeout is not shadowed


def test_config_is_typed_and_compares_by_value() -> None:
    config = Config(workers=3)
    assert config.workers == 3 and config == Config(workers=3) and config != Config()
    config.workers = 4
    assert config.get("workers") == 4
    with pytest.raises(TypeError, match="unknown settings: timeout"):
        Config(timeout=1)
    assert Config().bind is not Config().bind  # no shared mutable default


def test_docs_do_not_drift() -> None:
    committed = (ROOT / "docs" / "settings.md").read_text()
    assert committed == reference(), "run: python scripts/gen_settings_doc.py"
    for setting in SETTINGS:
        assert f"`{setting.name}`" in committed


def test_alias_in_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("timeout = 4\n")
    config = load_config({}, env={}, cwd=tmp_path, config_file="p.toml")
    assert config.request_timeout == 4.0
    assert config.sources["request_timeout"] == "file p.toml (as timeout)"
    config = load_config({}, env={"PREFORK_TIMEOUT": "6"}, cwd=tmp_path)
    assert config.request_timeout == 6.0
    assert config.sources["request_timeout"] == "env PREFORK_TIMEOUT"
    config = load_config({}, env={"PREFORK_REQUEST_TIMEOUT": "7"}, cwd=tmp_path)
    assert config.request_timeout == 7.0


def test_alias_and_name_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("timeout = 4\nrequest-timeout = 5\n")
    with pytest.raises(ConfigError, match=r"^p.toml: request-timeout: set twice \(as timeout"):
        load_config({}, env={}, cwd=tmp_path, config_file="p.toml")
    env = {"PREFORK_TIMEOUT": "1", "PREFORK_REQUEST_TIMEOUT": "2"}
    with pytest.raises(ConfigError, match=r"^PREFORK_TIMEOUT: set twice"):
        load_config({}, env=env, cwd=tmp_path)


def test_print_config_shows_the_effective_app_and_workers(tmp_path: Path) -> None:
    config = load_config({}, env={}, cwd=tmp_path)
    lines = describe(config, effective=True).splitlines()
    app = next(line for line in lines if line.startswith("app = "))
    assert app.startswith('app = "prefork.demo:DemoHandler"  # default: "" means the built-in')
    workers = next(line for line in lines if line.startswith("workers = "))
    assert int(workers.split()[2]) == _cpus()
    assert "# default: 0 means one per usable CPU" in workers
    # Still a config file, and it serves the same thing.
    (tmp_path / "printed.toml").write_text(describe(config, effective=True))
    again = load_config({}, env={}, cwd=tmp_path, config_file="printed.toml")
    assert again.app == "prefork.demo:DemoHandler" and again.workers == _cpus()


def test_print_config_keeps_given_values(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text(textwrap.dedent("""
        app = "x:Y"
        workers = 2
    """))
    config = load_config({}, env={}, cwd=tmp_path, config_file="p.toml")
    text = describe(config, effective=True)
    assert 'app = "x:Y"  # file p.toml\n' in text
    assert "workers = 2  # file p.toml\n" in text
    assert 'name = "x:Y"  # file p.toml' not in text and 'name = "x:Y"  # default' in text


def _cpus() -> int:
    return min(default_workers(), PreforkMixIn.max_children)


@pytest.mark.parametrize(
    ("layer", "raw", "expected"),
    [("cli", "660", 0o660), ("env", "0o640", 0o640), ("file", "600", 0o600),
     ("file", 0o660, 0o660), ("env", "", None)],
)
def test_socket_mode_is_octal(tmp_path: Path, layer: str, raw: object, expected: int) -> None:
    if layer == "file":
        value = f'"{raw}"' if isinstance(raw, str) else f"0o{raw:o}"
        (tmp_path / "p.toml").write_text(f"socket_mode = {value}\n")
        config = load_config({}, env={}, cwd=tmp_path, config_file="p.toml")
    elif layer == "env":
        config = load_config({}, env={"PREFORK_SOCKET_MODE": str(raw)}, cwd=tmp_path)
    else:
        config = load_config({"socket_mode": raw}, env={}, cwd=tmp_path)
    assert config.socket_mode == expected


@pytest.mark.parametrize("raw", ["668", "rw-rw----", "1777"])
def test_socket_mode_refuses_what_is_not_octal_permission_bits(
    tmp_path: Path, raw: str
) -> None:
    with pytest.raises(ConfigError, match="socket-mode: must be octal permission bits"):
        load_config({"socket_mode": raw}, env={}, cwd=tmp_path)


def test_socket_mode_refuses_a_decimal_integer_in_a_file(tmp_path: Path) -> None:
    (tmp_path / "p.toml").write_text("socket_mode = 660\n")  # decimal: 0o1224, not 0o660
    with pytest.raises(ConfigError, match="socket_mode"):
        load_config({}, env={}, cwd=tmp_path, config_file="p.toml")


def test_socket_mode_prints_as_toml_octal_and_reads_back(tmp_path: Path) -> None:
    config = load_config({"socket_mode": "660", "user": "nobody"}, env={}, cwd=tmp_path)
    text = describe(config, effective=True)
    assert "socket_mode = 0o660" in text
    (tmp_path / "printed.toml").write_text(text)
    again = load_config({}, env={}, cwd=tmp_path, config_file="printed.toml")
    assert again.socket_mode == 0o660 and again.user == "nobody"


def test_http_parser_refuses_httptools_where_it_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefork.command import convert

    assert convert.http_parser_choice(" Python ", "file") == "python"
    with pytest.raises(convert.Invalid, match="one of"):
        convert.http_parser_choice("llhttp", "file")
    monkeypatch.setattr(convert.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(convert.Invalid, match="not installed"):
        convert.http_parser_choice("httptools", "file")
    assert convert.http_parser_choice("auto", "file") == "auto"  # auto falls back


def test_the_server_is_named_by_name_else_by_the_app() -> None:
    assert server_name(Config(app="mod:Handler")) == "mod:Handler"
    assert server_name(Config(app="mod:Handler", name="web")) == "web"
    assert server_name(Config()) == DEFAULT_APP  # the demo, as --print-config says

