"""The admin API under /api/v1 (bearer-token protected by gateway.http.auth)."""

from __future__ import annotations

from aiohttp import web

from gateway import keys
from gateway.db import sandbox as sandbox_store
from gateway.errors import InvalidNumber
from gateway.http.openapi import SPEC
from gateway.http.params import limit_param
from gateway.phone import normalise_address

routes = web.RouteTableDef()


@routes.get("/api/v1/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(SPEC)


@routes.get("/api/v1/programs")
async def list_programs(request: web.Request) -> web.Response:
    config = request.app[keys.CONFIG]
    return web.json_response({
        "short_codes": [{"code": s.code, "messages_per_second": s.messages_per_second}
                        for s in config.short_codes],
        "programs": [{"id": p.id, "name": p.name, "short_code": p.short_code,
                      "keywords": list(p.keywords), "help_text": p.help_text,
                      "description": p.description} for p in config.programs],
    })


@routes.get("/api/v1/sandbox/messages")
async def sandbox_messages(request: web.Request) -> web.Response:
    """What the sandbox provider 'sent', newest first: the newcomer's phone screen."""
    config = request.app[keys.CONFIG]
    if config.provider.kind != "sandbox":
        raise web.HTTPNotFound(text="the sandbox provider is not in use (provider.kind)")
    to = request.query.get("to")
    if to:
        try:
            to = normalise_address(to, config.phone.default_region)
        except InvalidNumber as exc:
            raise InvalidNumber(f"to: {exc}") from exc
    rows = await sandbox_store.list_messages(request.app[keys.DB], to_number=to,
                                             limit=limit_param(request, most=500))
    return web.json_response({"messages": [dict(row) for row in rows]})
