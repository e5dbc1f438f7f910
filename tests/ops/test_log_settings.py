"""The command's log settings, read in ops/logs.py only: which combinations are refused, and
which files the workers' user is given (the ones a worker reopens on USR1)."""

from __future__ import annotations

from prefork.command.settings import Config
from prefork.ops import logs


def test_capture_output_needs_a_log_file() -> None:
    assert logs.refusal(Config(capture_output=True)) == "--capture-output needs --log-file"
    assert logs.refusal(Config(capture_output=True, log_file="/x/p.log")) is None
    assert logs.refusal(Config()) is None


def test_the_files_a_worker_reopens_are_the_log_and_the_access_log_not_stdout() -> None:
    assert logs.reopened_files(Config()) == []
    assert logs.reopened_files(Config(log_file="/x/p.log", access_logfile="-")) == ["/x/p.log"]
    both = Config(log_file="/x/p.log", access_logfile="/x/a.log")
    assert logs.reopened_files(both) == ["/x/p.log", "/x/a.log"]
