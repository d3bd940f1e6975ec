"""Every typed application key in one place; only app.py and gateway/http use them."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from campaigns import Campaigns
from consent import Consent
from gateway.clock import Clock
from gateway.config import Config
from gateway.db import Database
from gateway.ingest import Ingest
from gateway.lifecycle import Lifecycle
from gateway.metrics import GatewayMetrics
from gateway.outbound import Outbound
from gateway.profiles import ProfileStore
from gateway.providers import Provider
from gateway.sync import SyncHub
from gateway.workers import Workers

CONFIG = web.AppKey("config", Config)
CLOCK = web.AppKey("clock", Clock)
DB = web.AppKey("db", Database)
METRICS = web.AppKey("metrics", GatewayMetrics)
PROVIDER = web.AppKey("provider", Provider)
WORKERS = web.AppKey("workers", Workers)
INGEST = web.AppKey("ingest", Ingest)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
PROFILES = web.AppKey("profiles", ProfileStore)
SYNC = web.AppKey("sync", SyncHub)
HTTP = web.AppKey("http", aiohttp.ClientSession)
CONSENT = web.AppKey("consent", Consent)
OUTBOUND = web.AppKey("outbound", Outbound)
CAMPAIGNS = web.AppKey("campaigns", Campaigns)
#: The key provider webhooks are signed with (Twilio's auth token, the sandbox's secret);
#: None when signatures are not checked.
WEBHOOK_KEY = web.AppKey("webhook_key", str)
