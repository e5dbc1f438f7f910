from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prefork.command.config import (
    HOOK_NAMES,
    Config,
    ConfigError,
    describe,
    load_config,
    resolve_hook,
)
from prefork.command.settings import SETTINGS


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def load(
    tmp_path: Path,
    cli: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    return load_config(cli or {}, env=env or {}, cwd=tmp_path, config_file=config_file)


def error(tmp_path: Path, **kwargs: Any) -> str:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- defaults and precedence ----------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    config = load(tmp_path)
    assert config == Config()
    assert config.bind == ["127.0.0.1:8000"]
    assert config.workers == 0
    assert config.max_children == 64
    assert config.mode == "prefork"
    assert config.graceful_timeout == 30.0
    assert config.app is None and config.post_fork is None
    assert set(config.sources.values()) == {"default"}
    assert "sources" not in config.sources


def test_each_layer_beats_the_one_before(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", """
        workers = 2
        timeout = 5
        max_requests = 100
        preload = true
    """)
    env = {"PREFORK_TIMEOUT": "7.5", "PREFORK_MAX_REQUESTS": "200", "PREFORK_PRELOAD": "no"}
    config = load(tmp_path, cli={"preload": True}, env=env, config_file="prefork.toml")
    assert config.graceful_timeout == 30.0  # default
    assert config.workers == 2  # file
    assert config.request_timeout == 7.5  # env over file
    assert config.max_requests == 200  # env over file
    assert config.preload is True  # cli over env over file
    assert config.sources["graceful_timeout"] == "default"
    assert config.sources["workers"] == "file prefork.toml"
    assert config.sources["request_timeout"] == "env PREFORK_TIMEOUT"
    assert config.sources["preload"] == "command line"


def test_cli_none_counts_as_not_given(tmp_path: Path) -> None:
    config = load(tmp_path, cli={"workers": None}, env={"PREFORK_WORKERS": "3"})
    assert config.workers == 3
    assert config.sources["workers"] == "env PREFORK_WORKERS"


def test_cli_values_may_be_strings(tmp_path: Path) -> None:
    config = load(tmp_path, cli={"workers": "4", "request_timeout": "1.5", "preload": "on"})
    assert (config.workers, config.request_timeout, config.preload) == (4, 1.5, True)


def test_pyproject_tool_prefork_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", """
        [project]
        name = "app"

        [tool.prefork]
        app = "myapp:Handler"
        bind = "unix:/tmp/app.sock"
        max-children = 8
    """)
    config = load(tmp_path)
    assert config.app == "myapp:Handler"
    assert config.bind == ["unix:/tmp/app.sock"]
    assert config.max_children == 8
    assert config.sources["max_children"] == "file pyproject.toml"


def test_pyproject_without_table_or_absent(tmp_path: Path) -> None:
    assert load(tmp_path) == Config()
    write(tmp_path / "pyproject.toml", '[project]\nname = "app"\n')
    assert load(tmp_path) == Config()


def test_config_file_replaces_pyproject(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", "[tool.prefork]\nworkers = 3\n")
    write(tmp_path / "other.toml", "max_requests = 9\n")
    config = load(tmp_path, config_file="other.toml")
    assert config.workers == 0
    assert config.max_requests == 9


def test_config_file_from_env(tmp_path: Path) -> None:
    write(tmp_path / "p.toml", "workers = 5\n")
    config = load(tmp_path, env={"PREFORK_CONFIG": "p.toml"})
    assert config.workers == 5
    assert config.sources["workers"] == "file p.toml"


def test_absolute_config_file(tmp_path: Path) -> None:
    path = write(tmp_path / "abs.toml", "workers = 6\n")
    config = load_config({}, env={}, cwd=Path("/"), config_file=str(path))
    assert config.workers == 6


def test_web_concurrency(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", "workers = 2\n")
    config = load(tmp_path, env={"WEB_CONCURRENCY": "5"}, config_file="prefork.toml")
    assert config.workers == 5
    assert config.sources["workers"] == "env WEB_CONCURRENCY"


def test_prefork_workers_beats_web_concurrency(tmp_path: Path) -> None:
    config = load(tmp_path, env={"WEB_CONCURRENCY": "5", "PREFORK_WORKERS": "3"})
    assert config.workers == 3
    assert config.sources["workers"] == "env PREFORK_WORKERS"
    # WEB_CONCURRENCY belongs to every server; when it is not used it is not judged either.
    config = load(tmp_path, env={"WEB_CONCURRENCY": "lots", "PREFORK_WORKERS": "3"})
    assert config.workers == 3


def test_cli_beats_web_concurrency(tmp_path: Path) -> None:
    config = load(tmp_path, cli={"workers": 1}, env={"WEB_CONCURRENCY": "5"})
    assert config.workers == 1
    assert config.sources["workers"] == "command line"


def test_unrelated_env_is_ignored(tmp_path: Path) -> None:
    assert load(tmp_path, env={"HOME": "/root", "XPREFORK_WORKERS": "x"}) == Config()


# --- conversions ----------------------------------------------------------------------------------


def test_bind_from_env_is_comma_separated(tmp_path: Path) -> None:
    config = load(tmp_path, env={"PREFORK_BIND": " 127.0.0.1:1, [::1]:2,unix:/tmp/s, "})
    assert config.bind == ["127.0.0.1:1", "[::1]:2", "unix:/tmp/s"]
    assert [str(spec) for spec in config.bind_specs()] == [
        "127.0.0.1:1", "[::1]:2", "unix:/tmp/s",
    ]


def test_env_and_pythonpath_from_each_layer(tmp_path: Path) -> None:
    config = load(tmp_path, env={"PREFORK_ENV": "A=1, B=x=y,", "PREFORK_PYTHONPATH": "a,b"})
    assert (config.env, config.pythonpath) == (["A=1", "B=x=y"], ["a", "b"])
    write(tmp_path / "prefork.toml", 'env = ["C=a,b"]\npythonpath = ["c", "d,e"]\n')
    config = load(tmp_path, config_file="prefork.toml")  # a file's item may hold a comma
    assert (config.env, config.pythonpath) == (["C=a,b"], ["c", "d", "e"])
    config = load(tmp_path, cli={"env": ["D=1,2"], "pythonpath": ["f,g", "h"]})
    assert (config.env, config.pythonpath) == (["D=1,2"], ["f", "g", "h"])
    assert error(tmp_path, cli={"env": ["=1"]}).startswith("command line: --env: must be KEY=")
    assert "KEY=VALUE" in error(tmp_path, env={"PREFORK_ENV": "1A=b"})
    assert "must be directories" in error(tmp_path, cli={"pythonpath": 3})


def test_critical_is_a_log_level(tmp_path: Path) -> None:
    assert load(tmp_path, env={"PREFORK_LOG_LEVEL": "CRITICAL"}).log_level == "critical"


def test_bind_from_file_list_and_cli(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", 'bind = [":1", "udp://0.0.0.0:2"]\n')
    assert load(tmp_path, config_file="prefork.toml").bind == [":1", "udp://0.0.0.0:2"]
    assert load(tmp_path, cli={"bind": ["a:1", "b:2"]}).bind == ["a:1", "b:2"]
    assert load(tmp_path, cli={"bind": "a:1"}).bind == ["a:1"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("on", True),
     ("0", False), ("false", False), ("No", False), ("off", False)],
)
def test_env_booleans(tmp_path: Path, text: str, expected: bool) -> None:
    assert load(tmp_path, env={"PREFORK_PRELOAD": text}).preload is expected


def test_empty_string_unsets_optional_setting(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", 'pidfile = "/run/p.pid"\n')
    config = load(tmp_path, env={"PREFORK_PIDFILE": ""}, config_file="prefork.toml")
    assert config.pidfile is None
    assert config.sources["pidfile"] == "env PREFORK_PIDFILE"


def test_choices_are_case_insensitive(tmp_path: Path) -> None:
    config = load(tmp_path, env={"PREFORK_LOG_LEVEL": "DEBUG", "PREFORK_MODE": "Thread"})
    assert (config.log_level, config.mode) == ("debug", "thread")


def test_all_options_from_env(tmp_path: Path) -> None:
    env = {
        "PREFORK_APP": "pkg.mod:Handler", "PREFORK_MAX_CHILDREN": "10",
        "PREFORK_GRACEFUL_TIMEOUT": "3", "PREFORK_MAX_REQUESTS_JITTER": "7",
        "PREFORK_MAX_AGE": "3600", "PREFORK_MAX_MEMORY": "512", "PREFORK_NAME": "web",
        "PREFORK_LOG_FILE": "/tmp/log", "PREFORK_USER": "www", "PREFORK_GROUP": "www",
        "PREFORK_CONTROL": "/tmp/ctl", "PREFORK_METRICS": "127.0.0.1:9100",
        **{f"PREFORK_{hook.upper()}": f"hooks:{hook}" for hook in HOOK_NAMES},
    }
    config = load(tmp_path, env=env)
    assert config.app == "pkg.mod:Handler"
    assert config.max_children == 10
    assert config.graceful_timeout == 3.0
    assert config.max_requests_jitter == 7
    assert config.max_age == 3600.0
    assert config.max_memory == 512
    assert (config.name, config.log_file, config.user, config.group) == (
        "web", "/tmp/log", "www", "www",
    )
    assert (config.control, config.metrics) == ("/tmp/ctl", "127.0.0.1:9100")
    assert config.worker_exit == "hooks:worker_exit"
    assert all(source.startswith("env PREFORK_") for source in config.sources.values()
               if source != "default")


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("PREFORK_WORKERS", "many", "PREFORK_WORKERS: must be an integer >= 0, not 'many'"),
        ("PREFORK_WORKERS", "-1", "PREFORK_WORKERS: must be an integer >= 0, not '-1'"),
        ("PREFORK_MAX_CHILDREN", "0", "PREFORK_MAX_CHILDREN: must be an integer >= 1, not '0'"),
        ("PREFORK_TIMEOUT", "x", "PREFORK_TIMEOUT: must be a number >= 0, not 'x'"),
        ("PREFORK_GRACEFUL_TIMEOUT", "-2", "PREFORK_GRACEFUL_TIMEOUT: must be a number >= 0"),
        ("PREFORK_TIMEOUT", "nan", "PREFORK_TIMEOUT: must be a number >= 0"),
        ("PREFORK_MAX_REQUESTS_JITTER", "-5", "PREFORK_MAX_REQUESTS_JITTER: must be an integer"),
        ("PREFORK_MAX_REQUESTS", "1.5", "PREFORK_MAX_REQUESTS: must be an integer >= 0"),
        ("PREFORK_PRELOAD", "maybe", "PREFORK_PRELOAD: must be one of 1/0, true/false"),
        ("PREFORK_MODE", "gevent", "PREFORK_MODE: must be one of prefork, fork, thread, sync"),
        ("PREFORK_LOG_LEVEL", "loud", "PREFORK_LOG_LEVEL: must be one of debug, info"),
        ("PREFORK_BIND", "nowhere", "PREFORK_BIND: bind spec 'nowhere': expected HOST:PORT"),
        ("PREFORK_BIND", ",", "PREFORK_BIND: must name at least one listener"),
        ("PREFORK_METRICS", "unix:/tmp/m", "PREFORK_METRICS: must be HOST:PORT"),
        ("PREFORK_POST_FORK", "hooks.post_fork", "PREFORK_POST_FORK: must be module:callable"),
        ("PREFORK_APP", "my-app:X", "PREFORK_APP: must be module:HandlerClass"),
        ("WEB_CONCURRENCY", "lots", "WEB_CONCURRENCY: must be an integer >= 0, not 'lots'"),
    ],
)
def test_env_value_errors(tmp_path: Path, var: str, value: str, expected: str) -> None:
    assert error(tmp_path, env={var: value}).startswith(expected)


def test_unknown_prefork_variable(tmp_path: Path) -> None:
    message = error(tmp_path, env={"PREFORK_WORKRES": "2"})
    assert message == "PREFORK_WORKRES: unknown setting (did you mean PREFORK_WORKERS?)"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('workers = "many"', "prefork.toml: workers: must be an integer >= 0, not 'many'"),
        ('workers = "4"', "prefork.toml: workers: must be an integer >= 0, not '4'"),
        ("workers = true", "prefork.toml: workers: must be an integer >= 0, not True"),
        ('timeout = "5"', "prefork.toml: timeout: must be a number >= 0, not '5'"),
        ('preload = "yes"', "prefork.toml: preload: must be true or false, not 'yes'"),
        ("pidfile = 3", "prefork.toml: pidfile: must be a string, not 3"),
        ("bind = 8000", "prefork.toml: bind: must be a bind spec or a list of them"),
        ("bind = []", "prefork.toml: bind: must name at least one listener"),
        ('bind = ["a:1", 2]', "prefork.toml: bind: must be a bind spec or a list of them"),
        ('bind = ["a:99999"]', "prefork.toml: bind: bind spec 'a:99999': port must be"),
        ("max_children = 0", "prefork.toml: max_children: must be an integer >= 1, not 0"),
        ('on_exit = "nocolon"', "prefork.toml: on_exit: must be module:callable"),
        ("wrokers = 2", "prefork.toml: wrokers: unknown setting (did you mean workers?)"),
        ("[hooks]\npre_fork = 'a:b'", "prefork.toml: hooks: unknown setting"),
        ("max-children = 2\nmax_children = 3", "prefork.toml: max_children: set twice"),
    ],
)
def test_file_value_errors(tmp_path: Path, toml: str, expected: str) -> None:
    write(tmp_path / "prefork.toml", toml + "\n")
    assert error(tmp_path, config_file="prefork.toml").startswith(expected)


def test_file_errors_are_raised_even_when_overridden(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", 'workers = "many"\n')
    message = error(tmp_path, cli={"workers": 2}, config_file="prefork.toml")
    assert message.startswith("prefork.toml: workers:")


def test_pyproject_errors_name_the_table(tmp_path: Path) -> None:
    write(tmp_path / "pyproject.toml", '[tool.prefork]\nmode = "async"\n')
    assert error(tmp_path).startswith("pyproject.toml: tool.prefork.mode: must be one of")
    write(tmp_path / "pyproject.toml", '[tool]\nprefork = 3\n')
    assert error(tmp_path) == "pyproject.toml: [tool.prefork] must be a table"


def test_missing_config_file(tmp_path: Path) -> None:
    message = error(tmp_path, config_file="absent.toml")
    assert message == "absent.toml: cannot read: No such file or directory"


def test_config_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    assert error(tmp_path, config_file="dir.toml").startswith("dir.toml: cannot read:")


def test_malformed_config_file(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", "workers = \n[[[\n")
    message = error(tmp_path, config_file="prefork.toml")
    assert message.startswith("prefork.toml: not valid TOML:")
    assert "line 1" in message


def test_malformed_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_bytes(b"name = \xff\n")
    assert error(tmp_path).startswith("pyproject.toml: not valid TOML:")


def test_cli_errors_name_the_flag(tmp_path: Path) -> None:
    message = error(tmp_path, cli={"max_requests": -1})
    assert message == "command line: --max-requests: must be an integer >= 0, not -1"
    message = error(tmp_path, cli={"app": "not an app"})
    assert message.startswith("command line: APP: must be module:HandlerClass")
    assert error(tmp_path, cli={"colour": "red"}) == "command line: --colour: unknown setting"


def test_workers_above_max_children(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", "max_children = 4\n")
    message = error(tmp_path, cli={"workers": 5}, config_file="prefork.toml")
    assert message == (
        "command line: --workers: must be <= max_children (4, from file prefork.toml), not 5"
    )
    assert error(tmp_path, env={"WEB_CONCURRENCY": "65"}).startswith("WEB_CONCURRENCY: must be <=")
    # 0 means "auto" and is never above the bound; equal is fine.
    assert load(tmp_path, cli={"workers": 0, "max_children": 1}).workers == 0
    assert load(tmp_path, cli={"workers": 3, "max_children": 3}).workers == 3


# --- describe -------------------------------------------------------------------------------------


def test_describe(tmp_path: Path) -> None:
    write(tmp_path / "prefork.toml", 'bind = [":1", "unix:/tmp/a b"]\nname = "say \\"hi\\""\n')
    config = load(tmp_path, cli={"preload": True}, env={"PREFORK_WORKERS": "3"},
                  config_file="prefork.toml")
    lines = describe(config).splitlines()
    # Every setting once, in the order of the table (a valid TOML file: see the round trip).
    assert [line.split(" = ")[0] for line in lines] == [s.name for s in SETTINGS]
    assert 'app = ""  # default' in lines
    assert 'bind = [":1", "unix:/tmp/a b"]  # file prefork.toml' in lines
    assert "workers = 3  # env PREFORK_WORKERS" in lines
    assert 'mode = "prefork"  # default' in lines
    assert "graceful_timeout = 30.0  # default" in lines
    assert "preload = true  # command line" in lines
    assert 'name = "say \\"hi\\""  # file prefork.toml' in lines


def test_describe_output_is_a_config_file(tmp_path: Path) -> None:
    env = {"PREFORK_BIND": ":1,unix:/tmp/x", "PREFORK_TIMEOUT": "2.5", "PREFORK_PIDFILE": "/p",
           "PREFORK_ON_EXIT": "hooks:bye", "PREFORK_LOG_LEVEL": "warning"}
    config = load(tmp_path, env=env)
    write(tmp_path / "printed.toml", describe(config))
    again = load(tmp_path, config_file="printed.toml")
    assert again == config
    assert set(again.sources.values()) == {"file printed.toml"}


# --- hooks ----------------------------------------------------------------------------------------


@pytest.fixture
def hooks_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"hooks_{tmp_path.name.replace('-', '_')}"
    write(tmp_path / f"{name}.py", """
        def post_fork(server, worker):
            return ("post_fork", server, worker)

        class Holder:
            @staticmethod
            def on_exit():
                return "bye"

        not_callable = 42
    """)
    (tmp_path / f"{name}_broken.py").write_text("raise RuntimeError('boom\\nagain')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for module in (name, f"{name}_broken"):
        sys.modules.pop(module, None)


def test_resolve_hook(hooks_module: str) -> None:
    hook = resolve_hook(f"{hooks_module}:post_fork")
    assert hook("s", "w") == ("post_fork", "s", "w")
    assert resolve_hook(f"{hooks_module}:Holder.on_exit")() == "bye"


@pytest.mark.parametrize(
    ("attr", "expected"),
    [
        ("missing", "has no 'missing'"),
        ("not_callable", "not_callable is not callable (int)"),
    ],
)
def test_resolve_hook_bad_attribute(hooks_module: str, attr: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_hook(f"{hooks_module}:{attr}", key="post_fork")
    assert str(info.value).startswith(f"post_fork: hook '{hooks_module}:{attr}': ")
    assert expected in str(info.value)


def test_resolve_hook_import_failures(hooks_module: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_hook("no_such_module_xyz:f")
    assert str(info.value) == (
        "hook 'no_such_module_xyz:f': cannot import no_such_module_xyz: "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    )
    with pytest.raises(ConfigError) as info:
        resolve_hook(f"{hooks_module}_broken:f", key="on_exit")
    assert str(info.value) == (
        f"on_exit: hook '{hooks_module}_broken:f': cannot import {hooks_module}_broken: "
        "RuntimeError: boom again"
    )


def test_resolve_hook_bad_spec() -> None:
    with pytest.raises(ConfigError, match=r"^hook 'nocolon': expected module:callable$"):
        resolve_hook("nocolon")
