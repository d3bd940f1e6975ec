"""What a provider's webhook may carry, checked before anything reads it.

A carrier posts `application/x-www-form-urlencoded` UTF-8 (Twilio's webhooks) and sends no
browser fetch metadata. So a multipart body, bytes that are not UTF-8 (raw, or once
percent-decoded), more than :data:`MAX_FIELDS` fields, or a post a browser made from another
site (its `Sec-Fetch-Site` or `Origin` says so: a web page the operator opens must not be
able to text STOP on a customer's behalf) are refused with a 4xx that says why, before the
signature is checked and before a byte is stored.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from aiohttp import web

from gateway.errors import BadRequest, Forbidden, UnsupportedMediaType

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 1000


def refuse_cross_site(request: web.Request) -> None:
    """After Go's net/http CrossOriginProtection: fetch metadata first, then Origin."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        if site not in ("same-origin", "none"):
            raise Forbidden(f"a browser post from another site (Sec-Fetch-Site: "
                            f"{_shown(site)}) is not a provider's webhook")
        return
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        raise Forbidden(f"a browser post from {_shown(origin)} is not a provider's webhook")


def _shown(header: str) -> str:
    """A header value fit for a message and a log line: its bytes that are not UTF-8 (which
    aiohttp hands on as surrogates) written as escapes, and cut short."""
    return header[:80].encode("utf-8", "backslashreplace").decode("utf-8")


async def read_form(request: web.Request) -> dict[str, str]:
    """The webhook's fields (the last of a repeated name wins, as Twilio signs them)."""
    if request.content_type != FORM:
        raise UnsupportedMediaType(f"a webhook body must be {FORM}, "
                                   f"not {request.content_type or 'missing'}")
    body = await request.read()
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict",
                          max_num_fields=MAX_FIELDS)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the form is not UTF-8 (byte {exc.object[exc.start:exc.end]!r} "
                         f"at {exc.start})") from None
    except ValueError:
        raise BadRequest(f"the form has more than {MAX_FIELDS} fields") from None
    for name, value in pairs:
        if "\x00" in name or "\x00" in value:
            raise BadRequest(f"form field {name[:40]!r} holds a NUL character")
    return dict(pairs)
