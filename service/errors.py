"""One table from every failure the service reports to (status, kind, message).

Every error leaves the service the same way: something raises an exception, :func:`lookup`
finds its :class:`ErrorSpec` in :data:`ERRORS` (by the exception's class, most specific
first) and :func:`describe` gives the status, headers and
:class:`~service.schemas.ErrorResponse` body with the request id. :mod:`service.handlers`
turns that into the HTTP response for the exception handlers and the request middleware;
routes, the pipeline and the page only raise.
The OpenAPI ``responses`` of each route come from the same table (:func:`responses`).

Anything not in the table is a generic 500 (kind ``internal``) whose traceback goes to the
log only, with the request id. No FastAPI in here: the pipeline raises these too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from raymap.errors import MeshError
from service.batching import Overloaded, ShuttingDown
from service.gallery import DuplicateId, GalleryError, GalleryUnavailable
from service.schemas import ErrorResponse


class ServiceError(Exception):
    """An error the service itself raises; its status and kind are in :data:`ERRORS`."""

    def __init__(self, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class BadRequest(ServiceError):
    """A request the server cannot parse (e.g. a broken multipart body)."""


class Unauthorized(ServiceError):
    """A write without a valid ``X-API-Key``."""


class NotFound(ServiceError):
    """No such route, gallery item or static file."""


class MethodNotAllowed(ServiceError):
    """The path exists, the method does not; ``Allow`` lists the path's methods."""


class PayloadTooLarge(ServiceError):
    """The body or the upload is over the service's limit."""


class UnsupportedFormat(ServiceError):
    """The upload's name does not end in a known mesh format."""


class InvalidRequest(ServiceError):
    """A request whose fields or body fail validation (the framework's checks)."""


class MeshTimeout(ServiceError):
    """Parsing and ray casting took longer than ``mesh_timeout_s``."""


class NotReady(ServiceError):
    """The model is still loading, or loading it failed."""


def _detail(exc: BaseException) -> str:
    return str(getattr(exc, "detail", None) or getattr(exc, "reason", None) or exc)


@dataclass(frozen=True)
class ErrorSpec:
    """How one kind of failure is reported."""

    status: int
    kind: str  # machine-readable; also the ``kind`` label of the errors metric
    description: str  # for the OpenAPI schema
    message: Callable[[BaseException], str] = _detail  # the body's ``detail``
    retry: bool = False  # a ``Retry-After`` header: the client may try again later


INTERNAL = ErrorSpec(500, "internal", "unexpected error", lambda _: "internal server error")

# The table: the only place a status or a kind is chosen.
ERRORS: dict[type[BaseException], ErrorSpec] = {
    BadRequest: ErrorSpec(400, "bad_request", "the request body cannot be parsed"),
    Unauthorized: ErrorSpec(401, "unauthorized", "a write without a valid X-API-Key"),
    NotFound: ErrorSpec(404, "not_found", "no such item"),
    MethodNotAllowed: ErrorSpec(405, "method_not_allowed", "the path has no such method"),
    DuplicateId: ErrorSpec(409, "duplicate_id", "the id is already in the gallery"),
    PayloadTooLarge: ErrorSpec(413, "too_large", "the request body or upload is too large"),
    UnsupportedFormat: ErrorSpec(415, "unsupported_format", "unknown mesh format"),
    InvalidRequest: ErrorSpec(422, "validation", "invalid request"),
    MeshError: ErrorSpec(422, "mesh", "unreadable or degenerate mesh"),
    MeshTimeout: ErrorSpec(422, "mesh_timeout", "parsing and ray casting took too long"),
    GalleryError: ErrorSpec(422, "gallery", "a gallery request that cannot be carried out"),
    Overloaded: ErrorSpec(
        503, "overloaded", "overloaded; retry", lambda e: f"overloaded: {e}; retry later", True
    ),
    ShuttingDown: ErrorSpec(503, "shutting_down", "shutting down; retry", retry=True),
    NotReady: ErrorSpec(503, "not_ready", "the model is not ready; retry", retry=True),
    GalleryUnavailable: ErrorSpec(
        503,
        "gallery_unavailable",
        "the gallery's database is unavailable; retry",
        lambda _: "the gallery's database is unavailable; retry later",
        True,
    ),
}

# Starlette's own HTTP errors (no route, wrong method, unparsable body) as ours.
_HTTP_ERRORS: dict[int, type[ServiceError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedFormat,
}


def lookup(exc: BaseException) -> ErrorSpec:
    """The spec of ``exc``: its most specific class in the table, else a 500."""
    for cls in type(exc).__mro__:
        spec = ERRORS.get(cls)
        if spec is not None:
            return spec
    return INTERNAL


def describe(
    exc: BaseException, rid: str | None, retry_after_s: int
) -> tuple[ErrorSpec, dict[str, str], ErrorResponse]:
    """The spec, headers and body of the response for ``exc``: its status, kind and message
    from the table, the request id in the body (the middleware puts it in the header of
    every response), ``Retry-After`` where the table says so, and the exception's own
    headers (a 405's ``Allow``)."""
    spec = lookup(exc)
    headers = dict(exc.headers) if isinstance(exc, ServiceError) else {}
    if spec.retry:
        headers["Retry-After"] = str(retry_after_s)
    return spec, headers, ErrorResponse(detail=spec.message(exc), kind=spec.kind, request_id=rid)


def from_http_status(status: int, detail: str, allowed: Iterable[str] = ()) -> ServiceError | None:
    """The table's exception for an HTTP error raised by the framework (no route, wrong
    method, unparsable body); ``allowed``: a 405's methods. None if the table has no entry."""
    cls = _HTTP_ERRORS.get(status)
    if cls is None:
        return None
    if cls is MethodNotAllowed:
        methods = ", ".join(allowed)
        return MethodNotAllowed(f"{detail}; this path allows {methods}", {"Allow": methods})
    return cls(detail)


def responses(*errors: type[BaseException]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for a route that can raise ``errors`` (from the table)."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        spec = ERRORS[error]
        entry = out.setdefault(spec.status, {"model": ErrorResponse, "description": ""})
        described = entry["description"]
        entry["description"] = f"{described}; {spec.description}" if described else spec.description
    return out
