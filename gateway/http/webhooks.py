"""Twilio's webhooks: verify the signature, parse the form, hand it on, answer.

The signature is computed over the URL Twilio was told to call — the configured public URL —
not the URL this process sees behind a proxy.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web
from twilio.request_validator import RequestValidator, compare

from gateway import keys
from gateway.errors import BadRequest, Forbidden, InvalidNumber, UnsupportedMediaType
from gateway.http.errors import json_error
from gateway.http.forms import read_form, refuse_cross_site
from gateway.http.params import whole_number
from gateway.models import InboundMessage, StatusUpdate
from gateway.phone import normalise_address, to_e164

log = logging.getLogger(__name__)

routes = web.RouteTableDef()

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SIGNATURE_HEADER = "X-Twilio-Signature"

Handler = Callable[[web.Request, dict[str, str]], Awaitable[web.StreamResponse]]


def twilio_webhook(name: str) -> Callable[[Handler], Callable[[web.Request],
                                                               Awaitable[web.StreamResponse]]]:
    """Wraps a webhook view with form parsing, signature check and latency metrics."""

    def wrap(view: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            metrics = request.app[keys.METRICS]
            try:
                refuse_cross_site(request)
                form = await read_form(request)
                problem = check_signature(request, form)
                if problem:
                    metrics.webhook_rejected.inc(endpoint=name, reason="signature")
                    log.warning("refused %s webhook: %s", name, problem)
                    return json_error(403, "invalid_signature", problem)
                return await view(request, form)
            except (BadRequest, InvalidNumber, Forbidden, UnsupportedMediaType) as exc:
                metrics.webhook_rejected.inc(endpoint=name, reason=exc.code)
                log.warning("refused %s webhook: %s", name, exc)
                raise
            finally:
                metrics.webhook_latency.observe(time.perf_counter() - started, endpoint=name)

        return handle

    return wrap


def check_signature(request: web.Request, form: dict[str, str]) -> str | None:
    """None when the request is authentic (or checks are off); else why it is not.

    Twilio signs with the account's auth token; the sandbox's carrier (`mcrm simulate`)
    signs the same way with the sandbox's webhook secret.
    """
    key = request.app.get(keys.WEBHOOK_KEY)
    if key is None:
        return None
    config = request.app[keys.CONFIG]
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature:
        return f"missing {SIGNATURE_HEADER} header"
    url = config.service.public_url.rstrip("/") + request.path_qs
    validator = _validator(key)
    # Fast path: the URL exactly as configured (the library's validate() always computes
    # two signatures, with and without a port; receipts come two per message).
    if compare(validator.compute_signature(url, form), signature):
        return None
    if not validator.validate(url, form, signature):
        if config.provider.kind == "sandbox":
            return (f"{SIGNATURE_HEADER} does not match: sandbox webhooks are signed with "
                    "provider.sandbox.webhook_secret (or the secret file beside the "
                    "database), over service.public_url; `mcrm simulate` signs them")
        return (f"{SIGNATURE_HEADER} does not match: check that service.public_url "
                f"({config.service.public_url}) is the URL configured at Twilio and that "
                "provider.twilio.auth_token is this account's token")
    return None


@functools.lru_cache(maxsize=4)
def _validator(auth_token: str) -> RequestValidator:
    return RequestValidator(auth_token)


def _required(form: dict[str, str], *names: str) -> str:
    for name in names:
        if form.get(name):
            return form[name]
    raise BadRequest(f"missing form field {names[0]}")


@routes.post("/webhooks/twilio/sms")
@twilio_webhook("sms")
async def inbound_sms(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    config = request.app[keys.CONFIG]
    region = config.phone.default_region
    sid = _required(form, "MessageSid", "SmsSid")
    sender = _required(form, "From")
    recipient = _required(form, "To")
    try:
        from_number = to_e164(sender, region)
    except InvalidNumber as exc:
        raise InvalidNumber(f"From: {exc}") from exc
    try:
        to_number = normalise_address(recipient, region)
    except InvalidNumber as exc:
        raise InvalidNumber(f"To: {exc}") from exc
    segments = form.get("NumSegments", "")
    msg = InboundMessage(
        provider="twilio", provider_sid=sid, from_number=from_number, to_number=to_number,
        body=form.get("Body", ""), received_at=request.app[keys.CLOCK].now(),
        num_segments=int(segments) if segments.isascii() and segments.isdigit()
        and len(segments) <= 4 else None, params=form)
    if config.short_code(to_number) is None:
        log.warning("inbound %s is for %s, which is not a configured short code", sid,
                    to_number)
    replies = await request.app[keys.INGEST].inbound(msg)
    return web.Response(text=twiml(replies, config.service.public_url),
                        content_type="text/xml")


def twiml(replies: list[tuple[int, str]], public_url: str) -> str:
    """Twilio's answer format: each reply a <Message>, sent by Twilio at once; its `action`
    URL names our stored message, so its receipts are logged against it."""
    if not replies:
        return EMPTY_TWIML
    status_url = public_url.rstrip("/") + "/webhooks/twilio/status?outbound="
    messages = "".join(
        f'<Message action={quoteattr(status_url + str(reply_id))}>{escape(text)}</Message>'
        for reply_id, text in replies)
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{messages}</Response>'


@routes.post("/webhooks/twilio/status")
@twilio_webhook("status")
async def status_callback(request: web.Request, form: dict[str, str]) -> web.StreamResponse:
    sid = _required(form, "MessageSid", "SmsSid")
    status = _required(form, "MessageStatus", "SmsStatus")
    update = StatusUpdate(
        provider="twilio", provider_sid=sid, status=status,
        received_at=request.app[keys.CLOCK].now(), error_code=form.get("ErrorCode") or None,
        params=form)
    outbound = request.query.get("outbound", "")
    message_id = whole_number(outbound, "outbound") if outbound else None
    await request.app[keys.INGEST].status(update, message_id)
    return web.Response(status=200)  # Twilio wants a 2xx; an empty 200 is what it documents
