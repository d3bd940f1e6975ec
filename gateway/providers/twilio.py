"""Twilio through the official `twilio` library's asyncio client.

`api_base_url` points the library at a Twilio-compatible endpoint (our tests' local fake,
or a proxy); everything else — auth, form encoding, error parsing — is the real library.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
from twilio.base.exceptions import (
    TwilioException,
    TwilioRestException,
    TwilioServiceException,
)
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from gateway.config import TwilioConfig
from gateway.models import OutgoingSMS
from gateway.phone import mask
from gateway.providers.base import (
    ProviderMessage,
    ProviderStatus,
    SendError,
    SendErrorKind,
    SendResult,
    unexpected,
)
from gateway.providers.error_codes import CONTACT_STOPPED, describe

log = logging.getLogger(__name__)


class _HttpClient(AsyncTwilioHttpClient):
    """The library's asyncio client, made cheaper per request (the send path's hot spot).

    aiohttp turns a dict body into a FormData, which builds a multipart writer (and a random
    boundary) even for a plain urlencoded form; encoding the form here sends the same bytes
    for a fraction of the work. The library also formats its request log lines whether or
    not anyone logs them.
    """

    async def request(self, method: str, url: str, params: dict[str, object] | None = None,
                      data: dict[str, object] | None = None,
                      headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        body: Any = data
        if isinstance(data, dict):
            body = urlencode([(k, v) for k, v in data.items() if v is not None],
                             doseq=True).encode()
            headers = {**(headers or {}), "Content-Type": "application/x-www-form-urlencoded"}
        return await super().request(method, url, params=params, data=body, headers=headers,
                                     **kwargs)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_request(kwargs)

    def log_response(self, status_code: int, response: Any) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            super().log_response(status_code, response)


class TwilioProvider:
    name = "twilio"

    def __init__(self, config: TwilioConfig) -> None:
        self.config = config
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Client | None = None

    async def start(self) -> None:
        # The library opens its aiohttp session in the constructor: build it inside the loop.
        self._http = _HttpClient(timeout=self.config.timeout_seconds)
        self._client = Client(self.config.account_sid, str(self.config.auth_token),
                              http_client=self._http)
        if self.config.api_base_url:
            self._client.api.base_url = self.config.api_base_url.rstrip("/")

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("TwilioProvider.start() was not awaited")
        return self._client

    @contextlib.asynccontextmanager
    async def _calling(self, what: str) -> AsyncIterator[None]:
        """One call to Twilio, bounded in time; whatever it raises leaves as a SendError
        (the taxonomy is closed: the pipeline never sees another exception from here)."""
        try:
            # The async client ignores its own `timeout` setting (twilio 9.13), so bound it here.
            async with asyncio.timeout(self.config.timeout_seconds):
                yield
        except SendError:
            raise
        except (TwilioRestException, TwilioServiceException) as exc:
            raise classify(exc) from exc
        except TwilioException as exc:  # a list page that was not 200, or not a page at all
            raise _library_error(exc, what) from exc
        except TimeoutError as exc:
            # A send may have reached Twilio: the pipeline must look it up before resending.
            raise SendError(SendErrorKind.TIMEOUT,
                            detail=f"no answer from Twilio within "
                                   f"{self.config.timeout_seconds:g}s") from exc
        except aiohttp.ClientConnectorError as exc:  # refused, DNS, TLS handshake: never sent
            raise SendError(SendErrorKind.CONNECTION,
                            detail=f"cannot reach Twilio: {exc}") from exc
        except (aiohttp.ClientError, ssl.SSLError, ConnectionError) as exc:
            raise SendError(SendErrorKind.INTERRUPTED,
                            detail=f"connection to Twilio broke: {type(exc).__name__}"
                                   f"{': ' + str(exc) if str(exc) else ''}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SendError(SendErrorKind.MALFORMED,
                            detail=f"Twilio's answer to the {what} is not JSON: {exc}") from exc
        except Exception as exc:
            raise unexpected(exc, f"the Twilio {what}") from exc

    async def send(self, sms: OutgoingSMS) -> SendResult:
        sender: dict[str, str] = {}
        if self.config.messaging_service_sid:
            sender["messaging_service_sid"] = self.config.messaging_service_sid
        else:
            sender["from_"] = sms.from_number
        async with self._calling("send"):
            message = await self.client.messages.create_async(
                to=sms.to_number, body=sms.body,
                status_callback=sms.status_callback or None, **sender)
            if not message.sid:
                raise SendError(SendErrorKind.MALFORMED,
                                detail="Twilio's answer to the send has no message sid")
            segments = int(message.num_segments) if message.num_segments else None
        log.info("twilio accepted %s → %s as %s (%s)", sms.from_number, mask(sms.to_number),
                 message.sid, message.status)
        return SendResult(provider_sid=str(message.sid), status=str(message.status),
                          num_segments=segments)


    async def lookup(self, sms: OutgoingSMS, since: datetime) -> list[ProviderMessage]:
        """Twilio's Messages list, filtered by recipient and sender (newest first there)."""
        sender: dict[str, str] = {}
        if not self.config.messaging_service_sid:  # a service picks its own sender
            sender["from_"] = sms.from_number
        async with self._calling("look-up"):
            found = await self.client.messages.list_async(to=sms.to_number, limit=100,
                                                          **sender)
            out = [ProviderMessage(
                sid=str(m.sid), to_number=str(m.to), from_number=str(m.from_),
                body=str(m.body), status=str(m.status), created_at=m.date_created,
                num_segments=int(m.num_segments) if m.num_segments else None) for m in found]
        return sorted((m for m in out if m.created_at is None or m.created_at >= since),
                      key=lambda m: (m.created_at or since, m.sid))

    async def fetch(self, sid: str) -> ProviderStatus:
        """The Message resource: its status now (a receipt we never got)."""
        async with self._calling("status fetch"):
            message = await self.client.messages(sid).fetch_async()
            if not message.status:
                raise SendError(SendErrorKind.MALFORMED,
                                detail=f"Twilio's record of {sid} has no status")
            code = str(message.error_code) if message.error_code else None
            return ProviderStatus(sid=str(message.sid or sid), status=str(message.status),
                                  error_code=code)


def classify(exc: TwilioRestException | TwilioServiceException) -> SendError:
    """Map a Twilio API error to our taxonomy: what may be retried, what never."""
    # Without a JSON error body the library puts the HTTP status where the code goes.
    code = str(exc.code) if exc.code is not None and exc.code != exc.status else None
    words = exc.msg if isinstance(exc, TwilioRestException) else (exc.detail or exc.title)
    return from_status(exc.status, code, words or describe(code) or f"HTTP {exc.status}")


def from_status(status: int, code: str | None, detail: str) -> SendError:
    if status == 429 or code == "20429":
        # Twilio says requests refused with 429 were not processed, so a retry is safe.
        kind = SendErrorKind.RATE_LIMITED
    elif status == 408:
        kind = SendErrorKind.TIMEOUT
    elif status >= 500:
        kind = SendErrorKind.SERVER_ERROR
    elif status in (401, 403) or code == "20003":
        kind = SendErrorKind.AUTH
    elif code == CONTACT_STOPPED:
        kind = SendErrorKind.CONTACT_STOPPED
    elif status in (404, 405) and code in (None, "20404"):
        kind = SendErrorKind.ENDPOINT
    elif 200 <= status < 400:
        kind = SendErrorKind.MALFORMED  # a success status whose body was not what we asked
    else:
        kind = SendErrorKind.REJECTED
    return SendError(kind, provider_code=code, detail=detail, http_status=status)


def _library_error(exc: TwilioException, what: str) -> SendError:
    """The library's plain TwilioException: a page that was not 200 carries the response."""
    response = exc.args[1] if len(exc.args) > 1 else None
    status = getattr(response, "status_code", None)
    reason = str(exc.args[0]) if exc.args else type(exc).__name__
    if isinstance(status, int):
        return from_status(status, None, f"{reason} (HTTP {status})")
    return SendError(SendErrorKind.MALFORMED, detail=f"the Twilio {what}: {reason}")
