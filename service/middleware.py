"""Per request: its id, the body-size cap, the last-resort 500, one log line and metrics.

Every response leaves through here and gets ``X-Request-ID`` (the client's, when it is a
sane token, else a fresh one); error bodies carry the same id. An exception no handler took
(a bug) is logged here with its traceback while the request id is still set, and answered
with the table's generic 500 as a complete response, so the connection stays usable; if the
response had already started, the server can only drop the connection.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import PayloadTooLarge
from service.handlers import render
from service.logs import request_id
from service.metrics import Metrics
from service.settings import Settings

log = logging.getLogger("service.app")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Multipart framing and the small form fields around the file.
BODY_SLACK = 64 * 1024


class RequestMiddleware:
    """Request ids, the body-size cap, the last-resort 500, one log line and metrics."""

    def __init__(self, app: ASGIApp, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.settings = settings
        self.metrics = metrics
        self.limit = settings.max_upload_bytes + BODY_SLACK

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id.set(rid)
        status = 500
        started = False
        received = 0
        limit = self.limit

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI turns anything but an HTTPException raised while it parses a
                    # body into a 400; the handler maps this one to the table's 413.
                    raise HTTPException(413, f"the request body is larger than {limit} bytes")
            return message

        async def answer(exc: BaseException) -> None:
            response = render(exc, rid, self.settings.retry_after_s, self.metrics)
            await response(scope, receive, send_with_id)

        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                await answer(PayloadTooLarge(f"the request body is larger than {limit} bytes"))
            else:
                await self.app(scope, capped_receive, send_with_id)
        except Exception as exc:
            log.error("unhandled error", exc_info=exc)
            if started:
                raise  # half a response went out: only dropping the connection is left
            await answer(exc)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.requests.labels(
                endpoint=endpoint, method=scope["method"], status=status
            ).inc()
            self.metrics.latency.labels(endpoint=endpoint).observe(elapsed)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(1e3 * elapsed, 2),
                },
            )
            request_id.reset(token)


class HeadAsGet:
    """``HEAD`` wherever ``GET`` is served (HTTP's rule; FastAPI's routes take only the
    methods they name): the request goes on as a ``GET`` and its answer without the body,
    its headers (``Content-Length`` included) as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
