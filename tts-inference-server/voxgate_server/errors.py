"""OpenAI's error envelope for every failure, so SDKs raise the right exception class.

The OpenAI SDK reads ``body["error"]`` and maps the status: 400 BadRequest, 401 Authentication,
404 NotFound, 413/415 APIStatusError, 429 RateLimit, >=500 InternalServer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from voxgate_server.asgi.allow import allowed_methods

log = logging.getLogger("voxgate.errors")

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """Raise anywhere in a route to answer with the envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}


def envelope(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def encodable(text: str | None) -> str | None:
    """``text`` with anything UTF-8 cannot carry (lone surrogates) escaped, so echoing a client's
    value in an error can never turn the error itself into a 500."""
    if text is None:
        return None
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(exc: APIError) -> JSONResponse:
    body = envelope(encodable(exc.message) or "", exc.type, encodable(exc.param), exc.code)
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or None


def validation_error(exc: RequestValidationError | Any) -> APIError:
    """Turn pydantic's first complaint into a 400 that names the field."""
    errors = exc.errors() if hasattr(exc, "errors") else []
    if not errors:
        return APIError(400, "Invalid request.", code="invalid_request")
    first = errors[0]
    param = _param_from_loc(tuple(first.get("loc", ())))
    msg = first.get("msg", "Invalid value")
    if first.get("type") == "missing":
        message = f"Missing required parameter: '{param}'."
        code = "missing_required_parameter"
    elif first.get("type") == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {param}"
        code = "unknown_parameter"
    else:
        message = f"Invalid value for '{param}': {msg}." if param else f"{msg}."
        code = "invalid_value"
    return APIError(400, message, param=param, code=code)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "Not found.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            methods = allowed_methods(request.app.routes, request.scope)
            if methods:
                headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
                headers["Allow"] = ", ".join(methods)
                message = f"Method {request.method} not allowed; this route serves {', '.join(methods)}."
        return error_response(APIError(exc.status_code, message, headers=headers))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(APIError(500, "The server had an error while processing your request.", type="server_error"))
