"""The application factory: wiring only. Each resource opens and closes in a cleanup context.

Contexts run in order at start and in reverse at stop: the database opens first and closes
last, after every worker that writes to it has stopped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from campaigns import Campaigns, PullCampaigns
from consent import Consent, ConsentEvent, Kind
from gateway import keys
from gateway.clock import Clock, SystemClock
from gateway.config import Config
from gateway.db import Database
from gateway.db.campaigns import counts as campaign_counts
from gateway.db.messages import outbound_counts
from gateway.http import (
    api,
    campaigns_api,
    consent_api,
    health,
    messages_api,
    profiles_api,
    webhooks,
)
from gateway.http.auth import auth_middleware
from gateway.http.errors import error_middleware
from gateway.http.query import query_middleware
from gateway.ingest import Ingest
from gateway.lifecycle import Lifecycle
from gateway.links import STATE_VALUE
from gateway.metrics import GatewayMetrics, Labels
from gateway.outbound import CampaignHolds, OptOutWatch, Outbound, Outbox
from gateway.outbound.metrics import OutboundMetrics
from gateway.profiles import ProfileStore
from gateway.providers import Provider
from gateway.providers.sandbox import SandboxProvider, webhook_secret
from gateway.providers.twilio import TwilioProvider
from gateway.sync import SyncHub, SyncRelay
from gateway.workers import Workers
from handlers.conversations import Conversations, Flow
from handlers.inbound import InboundRouter
from handlers.keywords import config_router
from handlers.router import Router

log = logging.getLogger(__name__)

#: Wiring between contexts only (the HTTP layer uses keys.OUTBOUND).
OPT_OUT_WATCH = web.AppKey("opt_out_watch", OptOutWatch)
OUTBOUND_METRICS = web.AppKey("outbound_metrics", OutboundMetrics)
ROUTER = web.AppKey("router", Router)
HOLDS = web.AppKey("campaign_holds", CampaignHolds)
OUTBOX = web.AppKey("outbox", Outbox)
PULL = web.AppKey("pull_campaigns", PullCampaigns)


def create_app(config: Config, *, clock: Clock | None = None,
               router: Router | None = None) -> web.Application:
    """The gateway; `router` adds keyword handlers written in Python (handlers.Router)."""
    app = web.Application(middlewares=[error_middleware, auth_middleware, query_middleware],
                          client_max_size=config.service.max_body_bytes)
    app[keys.CONFIG] = config
    app[keys.CLOCK] = clock or SystemClock()
    app[keys.METRICS] = GatewayMetrics()
    app[keys.WORKERS] = Workers()
    app[keys.LIFECYCLE] = Lifecycle()
    app[ROUTER] = router or Router()
    app.cleanup_ctx.extend([database_ctx, http_client_ctx, workers_ctx, sync_ctx,
                            services_ctx, provider_ctx, outbound_ctx, campaigns_ctx])
    app.add_routes(webhooks.routes)
    app.add_routes(health.routes)
    app.add_routes(api.routes)
    app.add_routes(profiles_api.routes)
    app.add_routes(consent_api.routes)
    app.add_routes(messages_api.routes)
    app.add_routes(campaigns_api.routes)
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
        return {"mcrm_outbound_messages": {(("status", s),): n for s, n in counts.items()}}

    registry.gauges({"mcrm_outbound_messages": "Outbound messages by status."}, outbound)
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
        out = {name: {(("endpoint", s["endpoint"]),): s[key] for s in status}
               for name, key in (("mcrm_sync_backlog", "backlog"),
                                 ("mcrm_sync_dead_letters", "dead_letters"),
                                 ("mcrm_sync_consecutive_failures", "consecutive_failures"))}
        out["mcrm_sync_state"] = {(("endpoint", r.endpoint.name),): STATE_VALUE[r.link.state]
                                  for r in relays}
        return out

    metrics.registry.gauges({"mcrm_sync_backlog": "Profile events waiting for the CRM.",
                             "mcrm_sync_dead_letters": "Profile events given up on.",
                             "mcrm_sync_consecutive_failures": "Failed deliveries in a row.",
                             "mcrm_sync_state": "A CRM endpoint: 0 ok, 1 degraded (failing), "
                                                "2 down (failing again and again)."},
                            sync_state)
    yield
    for relay in relays:
        await app[keys.WORKERS].stop(f"sync:{relay.endpoint.name}")


async def services_ctx(app: web.Application) -> AsyncIterator[None]:
    """Consent and the ingest path: plain objects, wired once the database and sync exist."""
    config, metrics, db, hub = app[keys.CONFIG], app[keys.METRICS], app[keys.DB], app[keys.SYNC]

    app[OUTBOUND_METRICS] = outbound_metrics = OutboundMetrics(metrics.registry)
    watch = app[OPT_OUT_WATCH] = OptOutWatch(app[keys.CLOCK],
                                             observe=outbound_metrics.opt_out_exposure.observe)

    def on_event(event: ConsentEvent) -> None:
        metrics.consent_events.inc(program=event.program_id, kind=event.kind.value,
                                   source=event.source)
        if event.kind is Kind.OPT_OUT:
            watch.noticed(event.phone, event.occurred_at)

    consent = Consent(config, app[keys.PROFILES], on_event=on_event)
    app[keys.CONSENT] = consent

    router = config_router(config)
    router.include(app[ROUTER])  # handlers written in Python match after configured ones
    app[HOLDS] = CampaignHolds()
    app[OUTBOX] = Outbox(config)  # one queue front for handlers, the senders and campaigns
    pull = app[PULL] = PullCampaigns(config, consent, router)
    await pull.load(db, config)
    router.source(pull.match)  # pull campaigns' keywords, after every fixed one
    conversations = Conversations({c.id: Flow(c) for c in config.conversations},
                                  app[keys.PROFILES])
    answer = InboundRouter(config, consent, app[keys.PROFILES], router, conversations,
                           outbox=app[OUTBOX],
                           on_silenced=lambda msg: metrics.inbound_silenced.inc())
    app[keys.INGEST] = Ingest(db, metrics, app[keys.PROFILES],
                              short_codes=frozenset(s.code for s in config.short_codes),
                              committed=hub.wake, on_inbound=answer,
                              on_status=[consent.carrier.on_status])
    yield


async def provider_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[keys.CONFIG]
    provider: Provider
    if config.provider.kind == "twilio" and config.provider.twilio is not None:
        provider = TwilioProvider(config.provider.twilio)
        if config.provider.twilio.validate_signatures:
            app[keys.WEBHOOK_KEY] = str(config.provider.twilio.auth_token)
    else:
        if config.provider.sandbox.validate_signatures:
            app[keys.WEBHOOK_KEY] = await asyncio.to_thread(webhook_secret, config,
                                                            create=True)
        sandbox = SandboxProvider(
            app[keys.DB], app[keys.CLOCK],
            receipt_delay_seconds=config.provider.sandbox.receipt_delay_seconds,
            on_receipt=app[keys.INGEST].record_status, log_text=config.logging.message_text)
        app[keys.WORKERS].start("sandbox-receipts", sandbox.run_receipts)
        provider = sandbox
    await provider.start()
    app[keys.PROVIDER] = provider
    log.info("provider %s ready", provider.name)
    yield
    if isinstance(provider, SandboxProvider):
        await app[keys.WORKERS].stop("sandbox-receipts")
    await provider.close()


async def outbound_ctx(app: web.Application) -> AsyncIterator[None]:
    """The senders: started last, stopped first (before the provider and database close)."""
    outbound = Outbound(app[keys.CONFIG], app[keys.DB], app[keys.PROVIDER], app[keys.CONSENT],
                        app[keys.CLOCK], app[OPT_OUT_WATCH], app[OUTBOUND_METRICS],
                        holds=app[HOLDS], outbox=app[OUTBOX],
                        receipts=app[keys.INGEST].record_statuses,
                        committed=app[keys.SYNC].wake)
    app[keys.OUTBOUND] = outbound
    names = [f"outbound:{code}" for code in outbound.dispatchers]
    for name, dispatcher in zip(names, outbound.dispatchers.values(), strict=True):
        app[keys.WORKERS].start(name, dispatcher.run)

    async def queue() -> dict[str, dict[Labels, float]]:
        status = await outbound.queue_status()
        return {name: {(("short_code", s["short_code"]),): s[key] for s in status
                       if s[key] is not None}
                for name, key in (("mcrm_outbound_queue_depth", "queued"),
                                  ("mcrm_outbound_deferred", "deferred"),
                                  ("mcrm_outbound_in_flight", "sending"),
                                  ("mcrm_outbound_awaiting_receipt", "awaiting_receipt"),
                                  ("mcrm_outbound_drain_seconds", "drain_seconds"))}

    app[keys.METRICS].registry.gauges({
        "mcrm_outbound_queue_depth": "Messages queued to send, by short code.",
        "mcrm_outbound_deferred": "Messages waiting for quiet hours or a frequency cap.",
        "mcrm_outbound_in_flight": "Messages handed to the provider, outcome not yet known.",
        "mcrm_outbound_awaiting_receipt": "Messages sent with no final status yet (their "
                                          "status is fetched if no receipt comes).",
        "mcrm_outbound_drain_seconds": "Time to send what is queued at the current rate "
                                       "(absent while the provider takes no sends)."},
        queue)

    async def provider_links() -> dict[str, dict[Labels, float]]:
        out: dict[str, dict[Labels, float]] = {"mcrm_provider_state": {},
                                               "mcrm_provider_consecutive_failures": {}}
        for op, link in outbound.health.links.items():
            labels = (("operation", op), ("provider", outbound.health.provider))
            out["mcrm_provider_state"][labels] = STATE_VALUE[link.state]
            out["mcrm_provider_consecutive_failures"][labels] = link.failures
        return out

    app[keys.METRICS].registry.gauges({
        "mcrm_provider_state": "A provider's sends, look-ups and status fetches: 0 ok, "
                               "1 degraded (failing), 2 down (breaker open, probing).",
        "mcrm_provider_consecutive_failures": "Failures in a row, by provider and operation."},
        provider_links)
    yield
    for name in names:
        await app[keys.WORKERS].stop(name)


async def campaigns_ctx(app: web.Application) -> AsyncIterator[None]:
    """Schedules and runs: started after the senders, stopped before them."""
    pull = app[PULL]
    outbound = app[keys.OUTBOUND]
    service = Campaigns(app[keys.CONFIG], app[keys.DB], app[keys.PROFILES], app[keys.CLOCK],
                        app[HOLDS], outbound.outbox, wake=outbound.wake, on_change=pull.update,
                        check_keywords=pull.check_keywords)
    app[keys.CAMPAIGNS] = service
    app[keys.WORKERS].start("campaigns", service.run)

    async def counts() -> dict[str, dict[Labels, float]]:
        return {"mcrm_campaigns": {(("kind", kind), ("status", status)): n
                                   for kind, status, n in await campaign_counts(app[keys.DB])}}

    app[keys.METRICS].registry.gauges({"mcrm_campaigns": "Campaigns by kind and status."},
                                      counts)
    yield
    await app[keys.WORKERS].stop("campaigns")
