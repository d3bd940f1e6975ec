"""Bulk import of profiles from CSV or JSON Lines: validate every row, merge duplicates.

Rows are checked first (each problem reported with its line number), rows for the same
normalised number are merged (later values win, tags are united), then the profiles are
written in batches of a few statements each. ``atomic=True`` writes all or nothing: one
invalid row, and nothing is written.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.db import Database, Tx
from gateway.errors import BadRequest, GatewayError, InvalidNumber
from gateway.profiles import (
    FIELDS,
    ProfileChanges,
    ProfileStore,
    check_attribute,
    check_field,
    check_tag,
    parse_date,
)

KNOWN_TARGETS = {"phone", "tags", *FIELDS}
TYPES = ("auto", "string", "number", "integer", "boolean", "date")
MAX_REPORTED_ERRORS = 1000
BATCH = 5000
_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


class ImportRejected(GatewayError):
    """The file as a whole cannot be imported (no phone column, bad mapping, bad format)."""

    code = "import_error"
    http_status = 400


@dataclass(frozen=True)
class Target:
    """Where a column goes: a profile field, `tags`, or a typed custom attribute."""

    kind: str  # "phone", "field", "tags", "attribute"
    name: str
    type: str = "auto"


@dataclass
class ImportReport:
    rows: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates_merged: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    applied: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    applied_rows: int = 0  # rows handed to the writer after merging

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "valid": self.valid, "invalid": self.invalid,
                "duplicates_merged": self.duplicates_merged, "created": self.created,
                "updated": self.updated, "unchanged": self.unchanged, "applied": self.applied,
                "errors": [{"line": line, "message": msg} for line, msg in self.errors]}


def parse_mapping(spec: str) -> dict[str, str]:
    """``"Mobile=phone,Age=attributes.age:integer"`` → {"Mobile": "phone", ...}."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        source, sep, target = part.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ImportRejected(f"mapping {part!r}: write COLUMN=TARGET")
        mapping[source.strip()] = target.strip()
    return mapping


def resolve_target(column: str, mapping: dict[str, str]) -> Target:
    """A column's target: from the mapping, else a known name, else a string attribute."""
    spec = mapping.get(column, column)
    name, _, type_ = spec.partition(":")
    type_ = type_ or "auto"  # CSV cells stay strings, JSON values keep their JSON type
    if type_ not in TYPES:
        raise ImportRejected(f"column {column!r}: type {type_!r} is not one of {', '.join(TYPES)}")
    if name.startswith("consent"):
        raise ImportRejected(
            f"column {column!r}: consent cannot be imported as a profile column; consent "
            "needs evidence (source, time, text shown) and is recorded in the consent ledger")
    if name.startswith("attributes."):
        attribute = name.removeprefix("attributes.")
        try:
            check_attribute(attribute, None)
        except BadRequest as exc:
            raise ImportRejected(f"column {column!r}: {exc}") from None
        return Target("attribute", attribute, type_)
    if name == "phone":
        return Target("phone", "phone")
    if name == "tags":
        return Target("tags", "tags")
    if name in FIELDS:
        return Target("field", name)
    if column in mapping:
        raise ImportRejected(f"mapping {column}={spec}: unknown target (known: "
                           f"{', '.join(sorted(KNOWN_TARGETS))}, attributes.NAME[:TYPE])")
    return Target("attribute", _attribute_name(column), type_)


def _attribute_name(column: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]+", "_", column.strip()).strip("_").lower() or "column"
    return name if not name[0].isdigit() else f"_{name}"


def convert(value: Any, type_: str) -> Any:
    """A cell's value as `type_`; ValueError with a short reason otherwise."""
    if type_ == "auto" and isinstance(value, str | int | float | bool):
        return value
    if type_ in ("auto", "string"):
        return value if isinstance(value, str) else json.dumps(value)
    text = str(value).strip() if not isinstance(value, bool | int | float) else value
    if type_ == "boolean":
        if isinstance(text, bool):
            return text
        if str(text).lower() in _TRUE:
            return True
        if str(text).lower() in _FALSE:
            return False
        raise ValueError(f"{value!r} is not true/false")
    if type_ == "integer":
        if isinstance(text, bool) or (isinstance(text, float) and not text.is_integer()):
            raise ValueError(f"{value!r} is not a whole number")
        try:
            return int(text)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a whole number") from None
    if type_ == "number":
        try:
            number = float(text)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        return int(number) if number.is_integer() and "." not in str(text) else number
    try:
        return parse_date(str(text))
    except ValueError:
        raise ValueError(f"{value!r} is not a date (YYYY-MM-DD or ISO 8601 with offset)") \
            from None


def _row_changes(record: dict[str, Any], targets: dict[str, Target], store: ProfileStore
                 ) -> tuple[str, ProfileChanges]:
    phone = ""
    fields: dict[str, str | None] = {}
    attributes: dict[str, Any] = {}
    tags: list[str] = []
    for column, raw in record.items():
        target = targets[column]
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue  # an empty cell changes nothing
        where = f"column {column!r}"
        try:
            if target.kind == "phone":
                phone = store.normalise(str(raw))
            elif target.kind == "field":
                fields[target.name] = check_field(target.name, raw)
            elif target.kind == "tags":
                items = raw if isinstance(raw, list) else re.split(r"[;,]", str(raw))
                tags += [check_tag(t) for t in items if str(t).strip()]
            else:
                attributes[target.name] = check_attribute(target.name,
                                                          convert(raw, target.type))
        except (BadRequest, InvalidNumber, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    if not phone:
        raise ValueError("no phone number")
    return phone, ProfileChanges(fields=fields, attributes=attributes, tags_add=tuple(tags))


def read_records(lines: Iterable[str], fmt: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; a JSON line that does not parse is yielded as an error."""
    if fmt == "csv":
        reader = csv.DictReader(lines)
        if not reader.fieldnames:
            raise ImportRejected("the file is empty: expected a header row")
        for record in reader:
            if None in record:
                yield reader.line_num, {"__error__": "more cells than header columns"}
                continue
            yield reader.line_num, dict(record)
    elif fmt == "jsonl":
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, {"__error__": f"invalid JSON: {exc.msg}"}
                continue
            if not isinstance(value, dict):
                yield number, {"__error__": "expected a JSON object"}
                continue
            attributes = value.pop("attributes", None)
            if isinstance(attributes, dict):
                value.update({f"attributes.{k}": v for k, v in attributes.items()})
            yield number, value
    else:
        raise ImportRejected(f"unknown format {fmt!r}: use csv or jsonl")


_DONE = None  # end of the chunks
_INVALID = "invalid"  # atomic mode: a row was invalid, roll back


async def import_profiles(db: Database, store: ProfileStore, lines: Iterable[str], *,
                          fmt: str, at: datetime, mapping: dict[str, str] | None = None,
                          atomic: bool = False,
                          progress: Callable[[int], None] | None = None,
                          committed: Callable[[], None] = lambda: None) -> ImportReport:
    """Validate and apply `lines`; see the module docstring for the rules.

    Validation (Python) of one chunk runs while the previous chunk's SQL runs in the database
    thread, so the two overlap instead of adding up.
    """
    report = ImportReport()
    chunks: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
    state = {"abandoned": False}
    producer = asyncio.create_task(_validate(
        read_records(lines, fmt), mapping or {}, store, report, chunks, atomic, state,
        progress))

    async def apply(tx: Tx, part: list[tuple[str, ProfileChanges]]) -> tuple[int, int]:
        return await store.apply_many(tx, part, at, source="import",
                                      event_type="profile.imported")

    async def apply_all(tx: Tx) -> tuple[int, int]:
        created = updated = 0
        while (part := await chunks.get()) is not _DONE:
            if part == _INVALID:
                raise _Rollback
            c, u = await apply(tx, part)
            created, updated = created + c, updated + u
        return created, updated

    try:
        if atomic:
            try:
                report.created, report.updated = await db.write(apply_all)
            except _Rollback:
                state["abandoned"] = True
                await producer
                return report  # one invalid row: nothing written
        else:
            while (part := await chunks.get()) is not _DONE:
                c, u = await db.write(lambda tx, part=part: apply(tx, part))
                report.created, report.updated = report.created + c, report.updated + u
        await producer
    except BaseException:
        state["abandoned"] = True
        producer.cancel()
        raise
    report.unchanged = report.applied_rows - report.created - report.updated
    report.applied = True
    committed()
    return report


class _Rollback(Exception):
    pass


async def _validate(records: Iterator[tuple[int, dict[str, Any]]], mapping: dict[str, str],
                    store: ProfileStore, report: ImportReport, chunks: asyncio.Queue[Any],
                    atomic: bool, state: dict[str, bool],
                    progress: Callable[[int], None] | None) -> None:
    """Check rows and hand them on in chunks, merged by number; always ends with _DONE."""
    targets: dict[str, Target] = {}
    seen: set[str] = set()
    chunk: dict[str, ProfileChanges] = {}

    async def hand_on(item: Any) -> None:
        if not state["abandoned"]:
            await chunks.put(item)

    try:
        for line, record in records:
            report.rows += 1
            if report.rows % 250 == 0:
                # Let the writer go on as soon as its SQL is done: the two then overlap.
                await asyncio.sleep(0)
                if progress and report.rows % 1000 == 0:
                    progress(report.rows)
            error = record.pop("__error__", None)
            if error is None:
                try:
                    for column in record:
                        if column not in targets:
                            targets[column] = resolve_target(column, mapping)
                    if report.rows == 1 and not any(t.kind == "phone"
                                                     for t in targets.values()):
                        raise ImportRejected("no phone column: name one 'phone' or map one "
                                             "(e.g. --map Mobile=phone)")
                    phone, changes = _row_changes(record, targets, store)
                except ValueError as exc:
                    error = str(exc)
            if error is not None:
                report.invalid += 1
                if len(report.errors) < MAX_REPORTED_ERRORS:
                    report.errors.append((line, error))
                if atomic and report.invalid == 1:
                    await hand_on(_INVALID)
                continue
            report.valid += 1
            if phone in seen:
                report.duplicates_merged += 1
                if phone in chunk:
                    changes = chunk[phone].merge(changes)
            seen.add(phone)
            chunk[phone] = changes
            if len(chunk) >= BATCH:
                report.applied_rows += len(chunk)
                await hand_on(list(chunk.items()))
                chunk = {}
        if progress:
            progress(report.rows)
        if chunk:
            report.applied_rows += len(chunk)
            await hand_on(list(chunk.items()))
    finally:
        if not state["abandoned"]:
            await chunks.put(_DONE)
