"""Query strings held to the OpenAPI document: a parameter the operation does not declare,
or one given empty, is a 400 that names it (`GET /messages?direction=in` must not quietly
list everything)."""

from __future__ import annotations

import functools
from typing import Any

from aiohttp import web

from gateway.errors import BadRequest
from gateway.http.openapi import SPEC


@functools.cache
def declared(path: str, method: str) -> frozenset[str] | None:
    """The query parameters the spec gives this operation; None when it is not in the spec
    (webhooks, health: not the admin API)."""
    operation = SPEC["paths"].get(path, {}).get(method.lower())
    if operation is None:
        return None
    return frozenset(p["name"] for p in operation.get("parameters", ()) if p["in"] == "query")


@web.middleware
async def query_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    route = request.match_info.route.resource
    allowed = declared(route.canonical, request.method) if route is not None else None
    if allowed is not None:
        for name, value in request.query.items():
            if name not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                raise BadRequest(f"{name[:40]}: unknown query parameter (known here: {known})")
            if not value:
                raise BadRequest(f"{name}: empty; leave the parameter out instead")
    return await handler(request)
