"""The audit export: every ledger event as CSV or JSON Lines, one line per event."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from typing import Any

COLUMNS = ("event_id", "phone", "program", "kind", "source", "occurred_at", "inbound_sid",
           "inbound_text", "reply_text", "evidence")
CSV_HEADER = ",".join(COLUMNS) + "\r\n"


def _values(row: Mapping[str, Any]) -> list[Any]:
    return [row["id"], row["phone"], row["program_id"], row["kind"], row["source"],
            row["occurred_at"], row["inbound_sid"], row["inbound_text"], row["reply_text"],
            row["evidence_json"]]


def csv_line(row: Mapping[str, Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow(_values(row))
    return out.getvalue()


def jsonl_line(row: Mapping[str, Any]) -> str:
    values = dict(zip(COLUMNS, _values(row), strict=True))
    values["evidence"] = json.loads(values["evidence"])
    return json.dumps(values, ensure_ascii=False) + "\n"
