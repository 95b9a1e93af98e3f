"""The HTTP side of :mod:`service.errors`: the app's exception handlers and the one function
that renders any exception as a response (the request middleware uses it too)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from service.errors import ERRORS, BadRequest, InvalidRequest, describe, from_http_status
from service.logs import request_id
from service.metrics import Metrics

log = logging.getLogger("service.errors")


def render(
    exc: BaseException, rid: str | None, retry_after_s: int, metrics: Metrics
) -> JSONResponse:
    """``exc`` as its response from the table; counted in the errors metric by kind."""
    spec, headers, body = describe(exc, rid, retry_after_s)
    metrics.errors.labels(kind=spec.kind).inc()
    return JSONResponse(body.model_dump(), status_code=spec.status, headers=headers)


# A request with a bad value in each of thousands of fields (a descriptor of strings) is
# told of the first few, not answered with a line per field.
SHOWN_VALIDATION_ERRORS = 5


def validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    parts = []
    for error in errors[:SHOWN_VALIDATION_ERRORS]:
        where = ".".join(str(x) for x in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    if len(errors) > SHOWN_VALIDATION_ERRORS:
        parts.append(f"and {len(errors) - SHOWN_VALIDATION_ERRORS} more")
    return "; ".join(parts) or "invalid request"


def undecodable_body(exc: RequestValidationError) -> bool:
    """FastAPI reports a JSON body it cannot decode as a validation error: it is a 400."""
    return any(error.get("type") == "json_invalid" for error in exc.errors())


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at the request's path (Starlette's 405 names the
    first route's only), found by asking each route whether it would take the method."""
    allowed = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    if "GET" in allowed and "HEAD" not in allowed:  # service.middleware.HeadAsGet
        allowed.insert(allowed.index("GET") + 1, "HEAD")
    return allowed


def install_error_handlers(app: FastAPI, retry_after_s: int, metrics: Metrics) -> None:
    """Every exception of the table, FastAPI's validation errors and Starlette's HTTP errors
    through :func:`render`.

    An exception none of these takes (a bug) reaches
    :class:`service.middleware.RequestMiddleware`, which logs it and renders the table's 500
    while the request id is still known.
    """

    async def known(request: Request, exc: Exception) -> JSONResponse:
        return render(exc, request_id.get(), retry_after_s, metrics)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        if undecodable_body(exc):
            message = f"the JSON body cannot be decoded ({validation_message(exc)})"
            return await known(request, BadRequest(message))
        return await known(request, InvalidRequest(validation_message(exc)))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        allowed = allowed_methods(request) if exc.status_code == 405 else []
        translated = from_http_status(exc.status_code, str(exc.detail), allowed)
        if translated is None:
            log.error("an HTTP error the table lacks: %s %s", exc.status_code, exc.detail)
            return await known(request, exc)
        return await known(request, translated)

    for cls in ERRORS:
        app.add_exception_handler(cls, known)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
