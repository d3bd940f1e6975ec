"""Every error leaves as JSON ``{"error": {"code", "message"}}`` with the right status."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.errors import GatewayError

log = logging.getLogger(__name__)

_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
    415: "unsupported_media_type", 429: "too_many_requests", 500: "internal",
    503: "unavailable",
}


def json_error(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}, **extra},
                             status=status)


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[keys.CONFIG].service.max_body_bytes
        return json_error(413, "payload_too_large",
                          f"request body is larger than the limit of {limit} bytes "
                          "(service.max_body_bytes)")
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        default = f"{exc.status}: {exc.reason}"
        message = exc.text if exc.text and exc.text != default else exc.reason
        response = json_error(exc.status, _CODES.get(exc.status, "http_error"), message)
        for name in ("Allow", "WWW-Authenticate", "Retry-After"):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except GatewayError as exc:
        if exc.http_status >= 500:
            log.exception("error answering %s %s", request.method, request.path)
        return json_error(exc.http_status, exc.code, str(exc))
    except Exception:
        log.exception("unhandled error answering %s %s", request.method, request.path)
        return json_error(500, "internal", "internal error; see the gateway log")

