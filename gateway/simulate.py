"""`mcrm simulate`: post a text to a running gateway as the provider would, signed if needed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from xml.etree import ElementTree

import aiohttp
from twilio.request_validator import RequestValidator

from gateway.config import Config
from gateway.providers.sandbox import webhook_secret

WEBHOOK_PATH = "/webhooks/twilio/sms"


@dataclass(frozen=True)
class SimulatedReply:
    status: int
    content_type: str
    body: str

    def messages(self) -> list[str]:
        """The texts of the TwiML <Message> elements: what the customer's phone would show."""
        if self.content_type != "text/xml" or not self.body:
            return []
        try:
            root = ElementTree.fromstring(self.body)
        except ElementTree.ParseError:
            return []
        return [m.text or "" for m in root.iter("Message")]


def inbound_form(config: Config, *, from_number: str, text: str, to: str | None) -> dict[str, str]:
    """Twilio's inbound SMS parameters, with a fresh MessageSid each time."""
    to_number = to or (config.short_codes[0].code if config.short_codes else "")
    twilio = config.provider.twilio
    return {
        "MessageSid": "SM" + uuid.uuid4().hex,
        "SmsSid": "",
        "AccountSid": twilio.account_sid if twilio else "AC" + "0" * 32,
        "From": from_number,
        "To": to_number,
        "Body": text,
        "NumMedia": "0",
        "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }


def signature_headers(config: Config, url: str, form: dict[str, str]) -> dict[str, str]:
    """The X-Twilio-Signature the provider would send, when this gateway checks signatures:
    Twilio's with the auth token, the sandbox's with its webhook secret."""
    twilio = config.provider.twilio
    if config.provider.kind == "twilio" and twilio is not None:
        if not twilio.validate_signatures:
            return {}
        key = str(twilio.auth_token)
    elif config.provider.sandbox.validate_signatures:
        key = webhook_secret(config, create=True)  # the gateway reads the same file
    else:
        return {}
    return {"X-Twilio-Signature": RequestValidator(key).compute_signature(url, form)}


async def simulate(config: Config, *, from_number: str, text: str, to: str | None = None,
                   base_url: str | None = None, timeout_seconds: float = 10.0) -> SimulatedReply:
    public_url = config.service.public_url.rstrip("/")
    form = inbound_form(config, from_number=from_number, text=text, to=to)
    # Sign for the public URL (what the gateway checks), but post to where it listens.
    headers = signature_headers(config, public_url + WEBHOOK_PATH, form)
    target = (base_url or public_url).rstrip("/") + WEBHOOK_PATH
    client_timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    async with aiohttp.ClientSession(timeout=client_timeout) as session, \
            session.post(target, data=form, headers=headers) as response:
        return SimulatedReply(response.status, response.content_type, await response.text())
