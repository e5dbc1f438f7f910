"""prefork.rpc.make_server: one program on TCP and UDP (one port), counted for /metrics."""

from __future__ import annotations

import threading

import psutil
from apps.rpc_calc import PROG, Calc

import prefork.rpc.message as message
from helpers import wait_for
from prefork.rpc import make_server, xdr
from prefork.rpc.client import Client
from prefork.rpc.server import announced, listeners


def test_make_server_serves_tcp_and_udp_on_one_port() -> None:
    server = make_server([Calc], host="127.0.0.1", rpcbind=False, workers=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: len([c for c in psutil.Process().children()
                              if c.status() != psutil.STATUS_ZOMBIE]) == 2, what="two workers")
        address = server.server_address
        assert [s.listener_name() for s in server.listening_servers()] == [
            f"127.0.0.1:{address[1]}", f"udp://127.0.0.1:{address[1]}"]
        for transport in ("tcp", "udp"):
            with Client(address, PROG, 2, transport) as client:
                reply = client.call(1, xdr.encode(xdr.INT, 8))
            assert reply.detail == message.SUCCESS
            assert xdr.decode(xdr.INT, reply.body) == 16
        text = server.metrics_text()
        assert ('prefork_rpc_calls_total{program="536871065",version="2",procedure="1",'
                'name="Calc.double"} 2') in text
        assert 'prefork_rpc_replies_total{status="success"} 2' in text
    finally:
        server.shutdown()
        thread.join(30)
        server.server_close()


def test_a_program_may_stay_out_of_rpcbind() -> None:
    class Private(Calc):
        number = 0x20000123
        rpcbind = False

    assert announced([Calc, Private]) == [(PROG, [1, 2, 3], "Calc")]
    assert listeners([]) == []
