"""The master's Operations: the server announces its listeners when the master claims them,
and withdraws them at close unless it handed them to a new master (USR2)."""

from __future__ import annotations

import selectors

import pytest
from master_fakes import FakeServer

from prefork.master.operations import Operations


def operations(server: FakeServer) -> Operations:
    return Operations(server, selectors.DefaultSelector(), dict, lambda request: {})  # type: ignore[arg-type]


@pytest.mark.parametrize(("handed_off", "withdrawn"), [(False, True), (True, False)])
def test_withdraw_unless_handed_off(handed_off: bool, withdrawn: bool) -> None:
    server = FakeServer()
    ops = operations(server)
    ops.close()
    assert server.calls == []  # never announced: nothing to withdraw
    ops.take_over(replacing=False)
    assert server.calls == [("announce", None)]
    ops.close(handed_off=handed_off)
    assert (("withdraw", None) in server.calls) is withdrawn
    ops.close()
    assert server.calls.count(("withdraw", None)) == int(withdrawn)  # once at most


def test_a_failing_hook_is_logged_and_the_master_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    server = FakeServer()

    def broken() -> None:
        raise RuntimeError("rpcbind exploded")

    server.announce = broken  # type: ignore[method-assign]
    ops = operations(server)
    ops.take_over(replacing=False)
    assert "announce() failed" in caplog.text and "rpcbind exploded" in caplog.text
