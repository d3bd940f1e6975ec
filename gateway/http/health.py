"""Liveness, readiness and Prometheus metrics: for systemd, load balancers and Grafana."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from gateway import keys
from gateway.http.errors import json_error
from gateway.metrics import CONTENT_TYPE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    """The process answers: nothing more is claimed."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the database answers and every background worker runs.

    The provider's and the CRM endpoints' states are in the detail (and in `degraded`), but
    do not make this instance unready: another instance would meet the same outage, and
    taking webhooks away from it would lose customers' texts, which it can still store.
    """
    app = request.app
    checks: dict[str, str] = {}
    db = app[keys.DB]
    try:
        await asyncio.wait_for(db.ping(), timeout=2.0)
        checks["database"] = "ok" if db.running else "committer stopped"
    except Exception as exc:  # any failure means "not ready", and says which
        checks["database"] = f"unreachable: {exc or type(exc).__name__}"
    for name, running in app[keys.WORKERS].status().items():
        checks[f"worker:{name}"] = "ok" if running else "stopped"
    if app[keys.LIFECYCLE].stopping:
        checks["lifecycle"] = "shutting down"
    links: dict[str, dict[str, Any]] = {"providers": {}, "crm": {}}
    if keys.OUTBOUND in app:
        health = app[keys.OUTBOUND].health
        links["providers"][health.provider] = health.snapshot()
    if keys.SYNC in app:
        for relay in app[keys.SYNC].relays:
            links["crm"][relay.endpoint.name] = relay.link.snapshot()
    degraded = sorted(
        [f"provider {name}: {p['state']}" for name, p in links["providers"].items()
         if p["state"] != "ok"]
        + [f"CRM endpoint {name}: {c['state']}" for name, c in links["crm"].items()
           if c["state"] != "ok"])
    failing = {k: v for k, v in checks.items() if v != "ok"}
    if failing:
        summary = "; ".join(f"{k}: {v}" for k, v in failing.items())
        return json_error(503, "not_ready", f"not ready: {summary}", checks=checks,
                          degraded=degraded, **links)
    return web.json_response({"status": "ready", "checks": checks, "degraded": degraded,
                              **links})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    text = await request.app[keys.METRICS].registry.render()
    response = web.Response(text=text)
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
