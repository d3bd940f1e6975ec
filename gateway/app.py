"""The application factory: wiring only. Each resource opens and closes in a cleanup context.

Contexts run in order at start and in reverse at stop: the database opens first and closes
last, after every worker that writes to it has stopped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from gateway import keys
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.db import Database
from gateway.db.messages import outbound_counts, queue_depth
from gateway.http import api, health, webhooks
from gateway.http.auth import auth_middleware
from gateway.http.errors import error_middleware
from gateway.ingest import Ingest
from gateway.lifecycle import Lifecycle
from gateway.metrics import GatewayMetrics
from gateway.providers import Provider
from gateway.providers.sandbox import SandboxProvider
from gateway.providers.twilio import TwilioProvider
from gateway.workers import Workers

log = logging.getLogger(__name__)


def create_app(config: Config, *, clock: Clock | None = None) -> web.Application:
    app = web.Application(middlewares=[error_middleware, auth_middleware],
                          client_max_size=config.service.max_body_bytes)
    app[keys.CONFIG] = config
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.METRICS] = GatewayMetrics()
    app[keys.WORKERS] = Workers()
    app[keys.LIFECYCLE] = Lifecycle()
    app.cleanup_ctx.extend([database_ctx, workers_ctx, provider_ctx])
    app.add_routes(webhooks.routes)
    app.add_routes(health.routes)
    app.add_routes(api.routes)
    return app


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    path = config.database_path()
    db = await Database.open(path, busy_timeout_ms=config.database.busy_timeout_ms,
                             max_batch=config.database.max_batch)
    log.info("database %s open", path)
    app[keys.DB] = db
    app[keys.INGEST] = Ingest(db, app[keys.METRICS],
                              frozenset(s.code for s in config.short_codes))
    registry = app[keys.METRICS].registry

    async def depth() -> dict[tuple[tuple[str, str], ...], float]:
        return {(): float(await queue_depth(db))}

    async def by_status() -> dict[tuple[tuple[str, str], ...], float]:
        return {(("status", status),): float(n)
                for status, n in (await outbound_counts(db)).items()}

    registry.gauge("mcrm_outbound_queue_depth", "Messages waiting to be sent.", depth)
    registry.gauge("mcrm_outbound_messages", "Outbound messages by status.", by_status)
    yield
    await db.close()
    log.info("database closed")


async def workers_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[keys.WORKERS].stop()


async def provider_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    provider: Provider
    if config.provider.kind == "twilio" and config.provider.twilio is not None:
        provider = TwilioProvider(config.provider.twilio)
    else:
        sandbox = SandboxProvider(
            app[keys.DB], app[keys.CLOCK],
            receipt_delay_seconds=config.provider.sandbox.receipt_delay_seconds,
            on_receipt=app[keys.INGEST].record_status)
        app[keys.WORKERS].start("sandbox-receipts", sandbox.run_receipts)
        provider = sandbox
    await provider.start()
    app[keys.PROVIDER] = provider
    log.info("provider %s ready", provider.name)
    yield
    if isinstance(provider, SandboxProvider):
        await app[keys.WORKERS].stop("sandbox-receipts")
    await provider.close()
