"""A company CRM's webhook receiver on 127.0.0.1: checks signatures, records events, and can
be told to be slow or to fail, the way a real one sometimes is."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from gateway.sync import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify


@dataclass
class CrmReceiver:
    secret: str
    port: int
    #: Each request: chance of answering 500, and of sleeping `slow_seconds` first.
    fail_rate: float = 0.0
    slow_rate: float = 0.0
    slow_seconds: float = 0.0
    status: int = 200  # answer when not failing at random
    slow_next: int = 0  # the next N requests are slow, whatever slow_rate says
    fail_next: int = 0  # the next N requests fail, whatever fail_rate says
    failures: int = 0
    slow: int = 0
    in_flight: int = 0
    seed: int = 1
    events: list[dict[str, Any]] = field(default_factory=list)  # processed, in arrival order
    requests: int = 0
    bad_signatures: int = 0
    _runner: web.AppRunner | None = None
    _random: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcrm/events"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/mcrm/events", self._receive)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        try:
            return await self._handle(request)
        finally:
            self.in_flight -= 1

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(self.secret, timestamp, body, signature):
            self.bad_signatures += 1
            return web.json_response({"error": "bad signature"}, status=401)
        # Decided on arrival, whatever the settings are by the time a slow answer is ready.
        slow = self.slow_next > 0 or self._random.random() < self.slow_rate
        fail = self.fail_next > 0 or self._random.random() < self.fail_rate
        status = self.status
        if slow:
            self.slow_next -= 1
            self.slow += 1
            await asyncio.sleep(self.slow_seconds)  # the sender may give up meanwhile
        if fail:
            self.fail_next -= 1
            self.failures += 1
            return web.json_response({"error": "try later"}, status=500)
        if status >= 300:
            return web.json_response({"error": "refused"}, status=status)
        # Processed even if the sender already gave up waiting: a duplicate may follow.
        self.events.extend(json.loads(body)["events"])
        return web.json_response({"ok": True})

    def ids(self) -> list[str]:
        return [event["id"] for event in self.events]
