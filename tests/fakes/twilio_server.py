"""A Twilio-shaped HTTP server on 127.0.0.1 for the real `twilio` library to talk to.

It checks HTTP basic auth as Twilio does, records every request, answers from a script of
responses (success, an API error, a delay longer than the client's timeout), and can send
signed status callbacks the way Twilio does after a message is accepted.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator


@dataclass
class Scripted:
    """One scripted answer: `status` with a Twilio error body, or success after `delay`."""

    status: int = 201
    code: int | None = None
    message: str = ""
    delay: float = 0.0


@dataclass
class Recorded:
    account_sid: str
    form: dict[str, str]
    headers: dict[str, str]


@dataclass
class FakeTwilio:
    account_sid: str
    auth_token: str
    script: deque[Scripted] = field(default_factory=deque)
    requests: list[Recorded] = field(default_factory=list)
    #: Send "sent" then "delivered" callbacks to StatusCallback after each accepted message.
    send_callbacks: bool = False
    callback_responses: list[int] = field(default_factory=list)
    base_url: str = ""
    _runner: web.AppRunner | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self._create)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    def then(self, **kwargs: Any) -> FakeTwilio:
        self.script.append(Scripted(**kwargs))
        return self

    def _authorised(self, request: web.Request, account: str) -> bool:
        header = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}" and account == self.account_sid

    async def _create(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.requests.append(Recorded(account, form, dict(request.headers)))
        if not self._authorised(request, account):
            return _error(401, 20003, "Authenticate")
        step = self.script.popleft() if self.script else Scripted()
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status >= 300:
            return _error(step.status, step.code, step.message)
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC), usegmt=True)
        body = form.get("Body", "")
        resource = {
            "sid": sid, "account_sid": account, "to": form.get("To"),
            "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "body": body, "status": "accepted" if "MessagingServiceSid" in form else "queued",
            "num_segments": "1", "num_media": "0", "direction": "outbound-api",
            "api_version": "2010-04-01", "price": None, "price_unit": "USD",
            "error_code": None, "error_message": None, "date_created": now,
            "date_updated": now, "date_sent": None,
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
            "subresource_uris": {}}
        callback = form.get("StatusCallback")
        if self.send_callbacks and callback:
            task = asyncio.create_task(self._callbacks(callback, sid, form))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(resource, status=201)

    async def _callbacks(self, url: str, sid: str, form: dict[str, str]) -> None:
        validator = RequestValidator(self.auth_token)
        async with aiohttp.ClientSession() as session:
            for status in ("sent", "delivered"):
                params = {"MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
                          "SmsStatus": status, "AccountSid": self.account_sid,
                          "To": form.get("To", ""), "From": form.get("From", ""),
                          "ApiVersion": "2010-04-01"}
                headers = {"X-Twilio-Signature": validator.compute_signature(url, params)}
                async with session.post(url, data=params, headers=headers) as response:
                    self.callback_responses.append(response.status)


def _error(status: int, code: int | None, message: str) -> web.Response:
    return web.json_response({
        "code": code, "message": message or "error", "status": status,
        "more_info": f"https://www.twilio.com/docs/errors/{code}"}, status=status)
