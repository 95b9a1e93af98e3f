"""The HTTP side of :mod:`service.errors`: the app's exception handlers and the one function
that renders any exception as a response (the request middleware uses it too)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import ERRORS, InvalidRequest, describe, from_http_status
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


def validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(x) for x in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method any route of ``app`` serves at ``path`` (Starlette's 405 names one)."""
    methods: set[str] = set()
    for route in app.router.routes:
        regex = getattr(route, "path_regex", None)
        route_methods = getattr(route, "methods", None)
        if regex is not None and route_methods and regex.match(path):
            methods |= set(route_methods)
    return sorted(methods)


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
        return await known(request, InvalidRequest(validation_message(exc)))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        allowed = allowed_methods(request.app, request.url.path) if exc.status_code == 405 else ()
        translated = from_http_status(exc.status_code, str(exc.detail), allowed)
        if translated is None:
            log.error("an HTTP error the table lacks: %s %s", exc.status_code, exc.detail)
            return await known(request, exc)
        return await known(request, translated)

    for cls in ERRORS:
        app.add_exception_handler(cls, known)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(HTTPException, http_error)
