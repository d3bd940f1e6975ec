"""The application factory: wiring only. Each resource opens and closes in a cleanup context.

Contexts run in order at start and in reverse at stop: the database opens first and closes
last, after every worker that writes to it has stopped.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from consent import Consent, ConsentEvent
from gateway import keys
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.db import Database, Tx
from gateway.db.messages import QUEUED_STATUSES, outbound_counts
from gateway.http import api, consent_api, health, profiles_api, webhooks
from gateway.http.auth import auth_middleware
from gateway.http.errors import error_middleware
from gateway.ingest import Ingest
from gateway.lifecycle import Lifecycle
from gateway.metrics import GatewayMetrics, Labels
from gateway.models import InboundMessage, Reply
from gateway.profiles import ProfileStore
from gateway.providers import Provider
from gateway.providers.sandbox import SandboxProvider
from gateway.providers.twilio import TwilioProvider
from gateway.sync import SyncHub, SyncRelay
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
    app.cleanup_ctx.extend([database_ctx, http_client_ctx, workers_ctx, sync_ctx,
                            services_ctx, provider_ctx])
    app.add_routes(webhooks.routes)
    app.add_routes(health.routes)
    app.add_routes(api.routes)
    app.add_routes(profiles_api.routes)
    app.add_routes(consent_api.routes)
    return app


async def database_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    path = config.database_path()
    db = await Database.open(path, busy_timeout_ms=config.database.busy_timeout_ms,
                             max_batch=config.database.max_batch)
    log.info("database %s open", path)
    app[keys.DB] = db
    app[keys.PROFILES] = ProfileStore(default_region=config.phone.default_region)
    registry = app[keys.METRICS].registry

    async def outbound() -> dict[str, dict[Labels, float]]:
        counts = await outbound_counts(db)
        return {"mcrm_outbound_messages": {(("status", s),): n for s, n in counts.items()},
                "mcrm_outbound_queue_depth": {(): sum(counts.get(s, 0)
                                                      for s in QUEUED_STATUSES)}}

    registry.gauges({"mcrm_outbound_queue_depth": "Messages waiting to be sent.",
                     "mcrm_outbound_messages": "Outbound messages by status."}, outbound)
    yield
    await db.close()
    log.info("database closed")


async def http_client_ctx(app: web.Application) -> AsyncIterator[None]:
    """One shared client session for outgoing HTTP (CRM sync)."""
    async with aiohttp.ClientSession() as session:
        app[keys.HTTP] = session
        yield


async def workers_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[keys.WORKERS].stop()


async def sync_ctx(app: web.Application) -> AsyncIterator[None]:
    config, metrics, db = app[keys.CONFIG], app[keys.METRICS], app[keys.DB]
    relays = [SyncRelay(db, app[keys.CLOCK], app[keys.HTTP], endpoint, config.sync, metrics)
              for endpoint in config.sync.endpoints]
    hub = SyncHub(relays)
    app[keys.SYNC] = hub
    for relay in relays:
        app[keys.WORKERS].start(f"sync:{relay.endpoint.name}", relay.run)

    async def sync_state() -> dict[str, dict[Labels, float]]:
        status = await hub.status()
        return {name: {(("endpoint", s["endpoint"]),): s[key] for s in status}
                for name, key in (("mcrm_sync_backlog", "backlog"),
                                  ("mcrm_sync_dead_letters", "dead_letters"))}

    metrics.registry.gauges({"mcrm_sync_backlog": "Profile events waiting for the CRM.",
                             "mcrm_sync_dead_letters": "Profile events given up on."},
                            sync_state)
    yield
    for relay in relays:
        await app[keys.WORKERS].stop(f"sync:{relay.endpoint.name}")


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Consent and the ingest path: plain objects, wired once the database and sync exist."""
    config, metrics, db, hub = app[keys.CONFIG], app[keys.METRICS], app[keys.DB], app[keys.SYNC]

    def count(event: ConsentEvent) -> None:
        metrics.consent_events.inc(program=event.program_id, kind=event.kind.value,
                                   source=event.source)

    consent = Consent(config, app[keys.PROFILES], on_event=count)
    app[keys.CONSENT] = consent

    async def consent_replies(tx: Tx, msg: InboundMessage) -> list[Reply]:
        # The reserved keywords; the keyword router (handlers/) will wrap this.
        outcome = await consent.responder.handle(tx, msg)
        return outcome.replies if outcome else []

    app[keys.INGEST] = Ingest(db, metrics, app[keys.PROFILES],
                              short_codes=frozenset(s.code for s in config.short_codes),
                              committed=hub.wake, on_inbound=consent_replies,
                              on_status=[consent.carrier.on_status])
    yield


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
