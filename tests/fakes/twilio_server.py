"""A Twilio-shaped HTTP server on 127.0.0.1 for the real `twilio` library to talk to.

It checks HTTP basic auth as Twilio does, records every request, answers from a script of
responses (success, an API error, a delay longer than the client's timeout), and can send
signed status callbacks the way Twilio does after a message is accepted (and, like Twilio,
never sends a callback again when the receiver was down). Each resource (creates, the
Messages list, a single message's fetch) can be made to fail on its own (`fail`), and the
whole server can stop listening and come back on the same port (`go_away`, `come_back`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from gateway.sms import segment


@dataclass
class Scripted:
    """One scripted answer: `status` with a Twilio error body, or success after `delay`.
    With `accept`, the message is created even though the answer is an error (a 500 after
    the fact, or an answer that comes after the client gave up)."""

    status: int = 201
    code: int | None = None
    message: str = ""
    delay: float = 0.0
    accept: bool = False


@dataclass
class Fault:
    """How a resource fails until healed: an HTTP status with a Twilio error body, a `body`
    sent as it is (malformed JSON), or a connection closed with no answer (`reset`)."""

    status: int = 503
    code: int | None = None
    body: str | None = None
    reset: bool = False


RESOURCES = ("create", "list", "fetch")


@dataclass
class Recorded:
    account_sid: str
    form: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    script: deque[Scripted] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    #: Messages created (accepted), in order: what the "carrier" was asked to deliver.
    created: list[Recorded] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Send "sent" then "delivered" callbacks to StatusCallback after each accepted message.
    send_callbacks: bool = False
    callback_delay: float = 0.0
    callback_concurrency: int = 50
    callback_responses: list[int] = field(default_factory=list)
    #: Seconds every create takes before the message exists (Twilio's own processing).
    latency: float = 0.0
    base_url: str = ""
    #: Resource → how it fails now (see `fail`); and every request per resource.
    faults: dict[str, Fault] = field(default_factory=dict)
    calls: dict[str, list[float]] = field(
        default_factory=lambda: {r: [] for r in RESOURCES})
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None
    _port: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _session: aiohttp.ClientSession | None = None
    _closing: bool = False

    async def start(self, port: int = 0) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages.json", self._list)
        app.router.add_get("/2010-04-01/Accounts/{account}/Messages/{sid}.json", self._fetch)
        app.router.add_get("/fake/created", self._created)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        self._callback_slots = asyncio.Semaphore(self.callback_concurrency)
        await self._listen(port)
        self.base_url = f"http://127.0.0.1:{self._port}"
        return self.base_url

    async def _listen(self, port: int) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True)
        await self._site.start()
        self._port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def go_away(self) -> None:
        """Stop listening: connections are refused until `come_back` (open keep-alive
        connections are closed too, or the client would go on using them)."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for connection in self._runner.server.connections:
                connection.force_close()
            await asyncio.sleep(0.1)  # let clients see their pooled connections close

    async def come_back(self) -> None:
        if self._site is None:
            await self._listen(self._port)

    def fail(self, *resources: str, **fault: Any) -> None:
        """Make `resources` (create, list, fetch; all when none is named) fail as `fault`
        says until `heal`."""
        for resource in resources or RESOURCES:
            assert resource in RESOURCES, resource
            self.faults[resource] = Fault(**fault)

    def heal(self, *resources: str) -> None:
        for resource in resources or RESOURCES:
            self.faults.pop(resource, None)

    def delivered(self) -> set[str]:
        """Sids of the messages this "carrier" delivered."""
        return {sid for sid, m in self.messages.items() if m["status"] == "delivered"}

    def _faulty(self, resource: str, request: web.Request) -> web.Response | None:
        self.calls[resource].append(time.monotonic())
        fault = self.faults.get(resource)
        if fault is None:
            return None
        if fault.reset:
            assert request.transport is not None
            request.transport.abort()  # the client sees the connection drop
            return web.Response(status=500)
        if fault.body is not None:
            return web.Response(status=fault.status, text=fault.body,
                                content_type="application/json")
        return _error(fault.status, fault.code, "fault injected")

    async def close(self) -> None:
        """Stop taking requests first, then stop the callbacks, then close their session (a
        request still arriving must not start callbacks on a session nobody closes)."""
        self._closing = True
        if self._runner is not None:
            await self._runner.cleanup()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def then(self, **kwargs: Any) -> FakeTwilio:
        self.script.append(Scripted(**kwargs))
        return self

    def _authorised(self, request: web.Request, account: str) -> bool:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}" and account == self.account_sid

    async def _create(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()  # before the body is read: as close to the wire as we get
        account = request.match_info["account"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        recorded = Recorded(account, form, dict(request.headers), arrived)
        self.requests.append(recorded)
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        faulty = self._faulty("create", request)
        if faulty is not None:
            return faulty
        step = self.script.popleft() if self.script else Scripted()
        if step.delay or self.latency:
            await asyncio.sleep(step.delay or self.latency)
        if step.status >= 300 and not step.accept:
            return _error(step.status, step.code, step.message)
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC), usegmt=True)
        body = form.get("Body", "")
        segments = segment(body).segments
        resource = {
            "sid": sid, "account_sid": account, "to": form.get("To"),
            "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": body, "status": "accepted" if "MessagingServiceSid" in form else "queued",
            "num_segments": str(segments), "num_media": "0", "direction": "outbound-api",
            "api_version": "2010-04-01", "price": None, "price_unit": "USD",
            "error_code": None, "error_message": None, "date_created": now,
            "date_updated": now, "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            "subresource_uris": {}}
        self.messages[sid] = resource
        self.created.append(recorded)
        callback = form.get("StatusCallback")
        if self.send_callbacks and callback and not self._closing:
            task = asyncio.create_task(self._callbacks(callback, sid, form))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if step.status >= 300:
            return _error(step.status, step.code, step.message)
        return web.json_response(resource, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        """Messages, newest first, filtered by To and From as Twilio's list is."""
        account = request.match_info["account"]
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        faulty = self._faulty("list", request)
        if faulty is not None:
            return faulty
        to, sender = request.query.get("To"), request.query.get("From")
        size = int(request.query.get("PageSize", "50"))
        found = [m for m in reversed(self.messages.values())
                 if (not to or m["to"] == to) and (not sender or m["from"] == sender)][:size]
        uri = f"/2010-04-01/Accounts/{account}/Messages.json"
        return web.json_response({
            "messages": found, "end": len(found) - 1, "first_page_uri": uri,
            "next_page_uri": None, "page": 0, "page_size": size, "previous_page_uri": None,
            "start": 0, "uri": uri})

    async def _fetch(self, request: web.Request) -> web.Response:
        """One message as Twilio keeps it: its status now."""
        account = request.match_info["account"]
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        faulty = self._faulty("fetch", request)
        if faulty is not None:
            return faulty
        message = self.messages.get(request.match_info["sid"])
        if message is None:
            return _error(404, 20404, "The requested resource was not found")
        return web.json_response(message)

    async def _created(self, request: web.Request) -> web.Response:
        """For a fake in another process: every accepted message with its arrival time."""
        return web.json_response([
            {"at": r.at, "to": r.form.get("To"), "body": r.form.get("Body", "")}
            for r in self.created])

    async def _callbacks(self, url: str, sid: str, form: dict[str, str]) -> None:
        if self.callback_delay:
            await asyncio.sleep(self.callback_delay)
        async with self._callback_slots:
            await self._post_callbacks(url, sid, form)

    async def _post_callbacks(self, url: str, sid: str, form: dict[str, str]) -> None:
        validator = RequestValidator(self.auth_token)
        if self._session is None:
            self._session = aiohttp.ClientSession()
        for status in ("sent", "delivered"):
            # The carrier's word is the record, whether or not the callback gets through.
            self.messages[sid]["status"] = status
            params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
                      "SmsStatus": status, "AccountSid": self.account_sid,
                      "To": form.get("To", ""), "From": form.get("From", ""),
                      "ApiVersion": "2010-04-01"}
            headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
            try:
                async with self._session.post(url, data=params, headers=headers) as response:
                    self.callback_responses.append(response.status)
            except aiohttp.ClientError:
                self.callback_responses.append(0)  # the gateway is down: Twilio gives up too


def _error(status: int, code: int | None, message: str) -> web.Response:
    return web.json_response({
        "code": code, "message": message or "error", "status": status,
        "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)


async def _serve(port: int, account_sid: str, auth_token: str, callbacks: bool,
                 callback_delay: float) -> None:
    fake = FakeTwilio(account_sid, auth_token, send_callbacks=callbacks,
                      callback_delay=callback_delay)
    print(await fake.start(port), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await fake.close()


def main() -> None:
    """Run the fake alone (benchmarks put it in its own process, as Twilio would be)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--account-sid", required=True)
    parser.add_argument("--auth-token", required=True)
    parser.add_argument("--callbacks", action="store_true")
    parser.add_argument("--callback-delay", type=float, default=0.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.port, args.account_sid, args.auth_token, args.callbacks,
                           args.callback_delay))


if __name__ == "__main__":
    main()
