"""Bearer-token authentication for the admin API, compared in constant time."""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.http.errors import json_error

API_PREFIX = "/api/"


def token_matches(presented: str, tokens: tuple[str, ...]) -> bool:
    """Compares against every token, so the time taken does not reveal which one is close.
    A header's bytes that are not UTF-8 reach us as surrogates: they compare, and fail."""
    given = presented.encode("utf-8", "surrogateescape")
    found = False
    for token in tokens:
        found |= hmac.compare_digest(given, token.encode())
    return found


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    tokens = request.app[keys.CONFIG].api.tokens
    challenge = {"WWW-Authenticate": 'Bearer realm="mcrm-gateway"'}
    if not tokens:
        response = json_error(401, "unauthorized",
                              "the admin API is disabled: no api.tokens are configured")
        response.headers.update(challenge)
        return response
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        response = json_error(401, "unauthorized",
                              "missing bearer token: send 'Authorization: Bearer <token>'")
        response.headers.update(challenge)
        return response
    if not token_matches(presented.strip(), tokens):
        response = json_error(401, "unauthorized", "invalid bearer token")
        response.headers.update(challenge)
        return response
    return await handler(request)
