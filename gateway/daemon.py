"""`mcrm serve`: run the app in the foreground until SIGTERM/SIGINT, then drain and stop.

Shutdown order: mark not-ready, stop accepting connections, let requests in flight finish
(up to ``service.shutdown_timeout_seconds``), stop workers, close the database.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal

from aiohttp import web

from consent.compliance import lint
from gateway import keys
from gateway.app import create_app
from gateway.config import Config
from gateway.systemd import notify

log = logging.getLogger(__name__)


def exposure_warnings(config: Config) -> list[str]:
    """Settings fine on a laptop and dangerous on a network."""
    warnings = []
    local = config.service.host in ("127.0.0.1", "localhost", "::1")
    if not local and config.provider.kind == "sandbox":
        what = ("accepts unsigned webhooks" if not config.provider.sandbox.validate_signatures
                else "sends nothing")
        warnings.append(f"the sandbox provider {what}, and the gateway listens on "
                        f"{config.service.host}: keep it on 127.0.0.1")
    if any("change-me" in token for token in config.api.tokens):
        warnings.append("api.tokens holds the example token: replace it (env:NAME)")
    return warnings


def tune_gc() -> None:
    """Collect garbage less often: everything built at start-up (config, routes, imported
    modules) is frozen out of collections, and the youngest generation is collected every
    50,000 allocations instead of 700. Messages make short-lived objects by the thousand per
    second; the default thresholds cost the send path about an eighth of its throughput
    (bench/outbound.py)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)


async def serve(config: Config) -> None:
    for finding in lint(config):  # the carrier audit's findings, as warnings at start
        log.warning("compliance %s in program %s: %s (see `mcrm check`)", finding.level,
                    finding.program, finding.message)
    for warning in exposure_warnings(config):
        log.warning("%s", warning)
    app = create_app(config)
    svc = config.service
    runner = web.AppRunner(app, handle_signals=False, access_log=logging.getLogger(
        "aiohttp.access"), shutdown_timeout=svc.shutdown_timeout_seconds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig, stop)
    await runner.setup()
    try:
        site = web.TCPSite(runner, svc.host, svc.port)
        await site.start()
        tune_gc()
        log.info("mcrm-gateway listening on http://%s:%d (public URL %s, provider %s)",
                 svc.host, svc.port, svc.public_url, config.provider.kind)
        notify("READY=1\nSTATUS=serving")
        await stop.wait()
        app[keys.LIFECYCLE].stopping = True
        notify("STOPPING=1")
        log.info("shutting down: finishing requests in flight (up to %gs)",
                 svc.shutdown_timeout_seconds)
    finally:
        await runner.cleanup()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    log.info("mcrm-gateway stopped")


def _on_signal(sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("received %s", sig.name)
    stop.set()
