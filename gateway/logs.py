"""Logging to stderr, plain or JSON lines, with phone numbers masked in every line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from aiohttp.http_exceptions import BadHttpMessage

from gateway.config import LoggingConfig
from gateway.phone import mask_in_text


class _Masking(logging.Formatter):
    def __init__(self, fmt: str | None, mask: bool) -> None:
        super().__init__(fmt)
        self.mask = mask

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return mask_in_text(text) if self.mask else text


class PlainFormatter(_Masking):
    def __init__(self, mask: bool = True) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", mask)


class JsonFormatter(_Masking):
    """One JSON object per line: easy for journald, Loki or jq."""

    def __init__(self, mask: bool = True) -> None:
        super().__init__(None, mask)

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        text = json.dumps(entry, ensure_ascii=False)
        return mask_in_text(text) if self.mask else text


def _one_line_for_bad_requests(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, BadHttpMessage):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.msg, record.args = "refused a malformed request: %s", (str(exc).splitlines()[0],)
        record.exc_info = record.exc_text = None
    return True


def setup_logging(config: LoggingConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if config.format == "json":
        formatter = JsonFormatter(config.mask_phone_numbers)
    else:
        formatter = PlainFormatter(config.mask_phone_numbers)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    # aiohttp's access log repeats what our own lines say; keep it for debugging only.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if config.level == "debug" else logging.WARNING)
    logging.getLogger("twilio").setLevel(logging.WARNING)
    # A request aiohttp cannot even parse (a NUL in a header …) is answered 400 by aiohttp
    # itself, which logs a traceback at ERROR for it: one line is enough, for anyone's junk.
    logging.getLogger("aiohttp.server").addFilter(_one_line_for_bad_requests)
