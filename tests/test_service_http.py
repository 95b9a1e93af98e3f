"""The connections of ``WEB_CONCURRENCY`` workers send without Nagle's delay.

uvicorn binds the workers' listening socket itself (protocol 0), where asyncio leaves
``TCP_NODELAY`` off; every response then waited ~40 ms for the client's delayed ACK. The test
serves through the options ``python -m service`` gives uvicorn, on a socket bound the way
uvicorn binds it for its workers, and reads the option on the server's side of a connection.
"""

from __future__ import annotations

import asyncio
import socket

import uvicorn
from starlette.types import Receive, Scope, Send

from service.__main__ import server_options
from service.settings import Settings
from tests.service_testing import free_port


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


async def server_side_nodelay(options: dict[str, object]) -> list[int]:
    port = free_port()
    config = uvicorn.Config(**{**options, "app": hello, "factory": False, "port": port})
    sock = config.bind_socket()  # as uvicorn's supervisor binds it for the workers
    assert sock.proto == 0
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
    await writer.drain()
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    flags = [
        connection.transport.get_extra_info("socket").getsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY
        )
        for connection in server.server_state.connections
    ]
    writer.close()
    server.should_exit = True
    await serving
    return flags


def test_worker_connections_have_nagle_off() -> None:
    options = server_options(Settings(host="127.0.0.1"), workers=2)
    flags = asyncio.run(server_side_nodelay(options))
    assert flags and all(flags), flags
