"""uvicorn's HTTP/1.1 protocol (h11) with Nagle's algorithm off on every connection.

asyncio turns on ``TCP_NODELAY`` only for sockets whose protocol field is ``IPPROTO_TCP``.
With ``WEB_CONCURRENCY`` > 1, uvicorn binds the listening socket itself as
``socket.socket(family)`` (protocol 0), so the workers' connections kept Nagle's algorithm:
a response leaves as two writes (head, body), the second waited for the client's delayed ACK,
and every request took ~40 ms longer than the server worked on it (a 4 ms request answered in
48 ms). One process was not affected: there asyncio creates the socket with protocol 6.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """:class:`H11Protocol` that sets ``TCP_NODELAY`` on its connection's socket."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)  # type: ignore[arg-type]
