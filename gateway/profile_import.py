"""Bulk import of profiles from CSV or JSON Lines: validate every row, merge duplicates.

Rows are checked first (each problem reported with its line number), rows for the same
normalised number are merged (later values win, tags are united), then the profiles are
written in batches of a few statements each. ``atomic=True`` writes all or nothing: one
invalid row, and nothing is written.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import csv
import itertools
import json
import multiprocessing
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gateway.db import Database, Tx
from gateway.errors import BadRequest, GatewayError, InvalidNumber
from gateway.profiles import (
    FIELDS,
    ImportedConsent,
    ProfileChanges,
    ProfileStore,
    check_attribute,
    check_attribute_value,
    check_field,
    check_tag,
    parse_date,
)

KNOWN_TARGETS = {"phone", "tags", *FIELDS}
TYPES = ("auto", "string", "number", "integer", "boolean", "date")
MAX_REPORTED_ERRORS = 1000
BATCH = 5000
WORKER_CHUNK = 5000  # lines a worker process checks at a time
#: Inputs from this size on are checked in a worker process (see import_profiles).
WORKER_THRESHOLD_BYTES = 2 * 1024 * 1024
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


def resolve_target(column: str, mapping: dict[str, str],
                   programs: frozenset[str] = frozenset()) -> Target:
    """A column's target: from the mapping, else a known name, else a string attribute."""
    spec = mapping.get(column, column)
    name, _, type_ = spec.partition(":")
    type_ = type_ or "auto"  # CSV cells stay strings, JSON values keep their JSON type
    if type_ not in TYPES:
        raise ImportRejected(f"column {column!r}: type {type_!r} is not one of {', '.join(TYPES)}")
    if name.startswith("consent."):
        program = name.removeprefix("consent.")
        if program not in programs:
            raise ImportRejected(f"column {column!r}: {program!r} is not a configured program")
        return Target("consent", program)
    if name.startswith("consent_"):
        key = name.removeprefix("consent_")
        if key not in EVIDENCE_KEYS:
            raise ImportRejected(
                f"column {column!r}: consent is imported as consent.<program> columns "
                f"(opted_in or opted_out) with evidence columns "
                f"{', '.join('consent_' + k for k in EVIDENCE_KEYS)}")
        return Target("evidence", key)
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


_SPLIT_TAGS = re.compile(r"[;,]")


def _row_changes(record: dict[str, Any], targets: dict[str, Target], store: ProfileStore
                 ) -> tuple[str, ProfileChanges]:
    """One row as (E.164 number, changes); ValueError naming the column otherwise.

    This runs for every row of files with millions of them: keep it lean.
    """
    phone = ""
    fields: dict[str, str | None] = {}
    attributes: dict[str, Any] = {}
    tags: list[str] = []
    consents: dict[str, str] | None = None
    evidence: dict[str, str] | None = None
    for column, raw in record.items():
        if raw is None or raw == "" or (isinstance(raw, str) and raw.isspace()):
            continue  # an empty cell changes nothing
        target = targets[column]
        kind = target.kind
        try:
            if kind == "phone":
                phone = store.normalise(str(raw))
            elif kind == "field":
                fields[target.name] = check_field(target.name, raw)
            elif kind == "tags":
                items = raw if isinstance(raw, list) else _SPLIT_TAGS.split(str(raw))
                tags += [check_tag(t) for t in items if str(t).strip()]
            elif kind == "consent":
                consents = consents or {}
                consents[target.name] = str(raw).strip()
            elif kind == "evidence":
                evidence = evidence or {}
                evidence[target.name] = str(raw).strip()
            else:  # the attribute's name was checked once, when the header was read
                attributes[target.name] = check_attribute_value(target.name,
                                                                convert(raw, target.type))
        except (BadRequest, InvalidNumber, ValueError) as exc:
            raise ValueError(f"column {column!r}: {exc}") from None
    if not phone:
        raise ValueError("no phone number")
    given = _consents(consents, evidence or {}) if consents else ()
    return phone, ProfileChanges(fields=fields, attributes=attributes, tags_add=tuple(tags),
                                 consents=given)


_YES = _TRUE | {"opted_in", "opt_in"}
_NO = _FALSE | {"opted_out", "opt_out"}
#: The sources consent.ledger.Source knows (it checks that the two agree).
CONSENT_SOURCES = ("web_form", "store", "api", "import", "keyword", "carrier")
#: consent_<key> columns: the first two are required with any consent.<program> column.
EVIDENCE_KEYS = ("source", "captured_at", "ip", "user_agent", "form_url", "terms",
                 "text", "evidence")


def _consents(values: dict[str, str], evidence: dict[str, str]
              ) -> tuple[ImportedConsent, ...]:
    """Consent columns need evidence columns: consent_source and consent_captured_at."""
    missing = [f"consent_{k}" for k in ("source", "captured_at") if not evidence.get(k)]
    if missing:
        raise ValueError(f"consent needs evidence: missing {', '.join(missing)}")
    source = evidence["source"]
    if source not in CONSENT_SOURCES:
        raise ValueError(f"column 'consent_source': {source!r} is not one of "
                         f"{', '.join(CONSENT_SOURCES)}")
    try:
        captured = parse_date(evidence["captured_at"])
    except ValueError:
        raise ValueError(f"column 'consent_captured_at': {evidence['captured_at']!r} is not a "
                         "date (YYYY-MM-DD or ISO 8601 with offset)") from None
    extra = {k: v for k, v in evidence.items() if k not in ("source", "captured_at")}
    out = []
    for program, value in values.items():
        word = value.casefold()
        if word not in _YES and word not in _NO:
            raise ValueError(f"column 'consent.{program}': {value!r} is not opted_in or "
                             "opted_out")
        out.append(ImportedConsent(program, word in _YES, source, captured, extra))
    return tuple(out)


#: The longest cell taken (a name, an attribute): longer ones are an error in the report.
MAX_CELL = 10_000
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _bad_cell(record: dict[str, Any]) -> str | None:
    """Why one cell of the row cannot be taken: too long, or a control character (NUL …)
    that no name or attribute holds; None when every cell is fine."""
    for column, value in record.items():
        for text in (column, value):
            if not isinstance(text, str):
                continue
            if len(text) > MAX_CELL:
                return (f"column {str(column)[:40]!r}: {len(text):,} characters, more than "
                        f"{MAX_CELL:,}")
            found = _CONTROL.search(text)
            if found:
                return (f"column {str(column)[:40]!r}: holds the control character "
                        f"U+{ord(found.group()):04X}")
    return None


def read_records(lines: Iterable[str], fmt: str, *, first_line: int = 0
                 ) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) pairs; a JSON line that does not parse is yielded as an error.

    `first_line`: the file's line number of the first record, when `lines` is a chunk of a
    larger file (for CSV, the header followed by the chunk).
    """
    if fmt == "csv":
        reader = csv.DictReader(lines, strict=True)
        try:
            fieldnames = reader.fieldnames
        except csv.Error as exc:
            raise ImportRejected(f"line 1: the header row is not valid CSV: {exc}") from None
        if not fieldnames:
            raise ImportRejected("the file is empty: expected a header row")
        offset: int | None = None if first_line else 0
        while True:
            started = reader.line_num + 1  # the line the next record starts on
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                at = started + (offset if offset is not None else first_line - started)
                if "unexpected end of data" in str(exc):
                    yield at, {"__error__": "a quote opened on this line is never closed "
                                            "(the rest of the file would be one cell)"}
                    return
                yield at, {"__error__": f"not valid CSV: {exc}"}
                continue
            if offset is None:
                offset = first_line - reader.line_num
            if None in record:
                yield reader.line_num + offset, {"__error__": "more cells than header columns"}
                continue
            problem = _bad_cell(record)
            if problem:
                yield reader.line_num + offset, {"__error__": problem}
                continue
            yield reader.line_num + offset, dict(record)
    elif fmt == "jsonl":
        for number, line in enumerate(lines, start=first_line or 1):
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
            problem = _bad_cell(value)
            if problem:
                yield number, {"__error__": problem}
                continue
            attributes = value.pop("attributes", None)
            if isinstance(attributes, dict):
                value.update({f"attributes.{k}": v for k, v in attributes.items()})
            yield number, value
    else:
        raise ImportRejected(f"unknown format {fmt!r}: use csv or jsonl")


#: Records imported consent in the ledger, inside the import's transaction.
ConsentWriter = Callable[[Tx, list[tuple[str, ImportedConsent]], datetime], Awaitable[None]]

_DONE = None  # end of the chunks
_INVALID = "invalid"  # atomic mode: a row was invalid, roll back


async def import_profiles(db: Database, store: ProfileStore, lines: Iterable[str], *,
                          fmt: str, at: datetime, mapping: dict[str, str] | None = None,
                          atomic: bool = False,
                          progress: Callable[[int, bool], None] | None = None,
                          committed: Callable[[], None] = lambda: None,
                          in_worker: bool | None = None, size_hint: int | None = None,
                          consent_writer: ConsentWriter | None = None,
                          programs: frozenset[str] = frozenset()) -> ImportReport:
    """Validate and apply `lines`; see the module docstring for the rules.

    `in_worker`: parse and check rows in a second process while this one writes; by default
    when `size_hint` (the input's size in bytes) says it is worth the process's start-up.
    `consent_writer` records the rows' consent columns (``consent.<program>``, for the
    `programs` given) in the same transaction.
    """
    report = ImportReport()
    chunks: asyncio.Queue[Any] = asyncio.Queue(maxsize=2)
    state = {"abandoned": False}
    if fmt not in ("csv", "jsonl"):
        raise ImportRejected(f"unknown format {fmt!r}: use csv or jsonl")
    if in_worker is None:
        in_worker = size_hint is not None and size_hint >= WORKER_THRESHOLD_BYTES
    source = _checked_in_worker if in_worker else _checked_inline
    producer = asyncio.create_task(_validate(
        source(lines, fmt, mapping or {}, store.default_region,
               programs if consent_writer else frozenset()),
        report, chunks, atomic, state, progress))

    async def apply(tx: Tx, part: list[tuple[str, ProfileChanges]]) -> tuple[int, int]:
        counts = await store.apply_many(tx, part, at, source="import",
                                        event_type="profile.imported")
        consents = [(phone, c) for phone, changes in part for c in changes.consents]
        if consents and consent_writer is not None:
            await consent_writer(tx, consents, at)
        return counts

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
                report.created, report.updated = await db.write_session(apply_all)
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


Checked = tuple[int, str | None, Any]  # (line, phone, changes) or (line, None, error)


def check_records(records: Iterable[tuple[int, dict[str, Any]]], mapping: dict[str, str],
                  region: str, *, phone_column: bool,
                  programs: frozenset[str] = frozenset()) -> list[Checked]:
    """Check rows; pure, so it runs as well in a worker process as here.

    `phone_column`: the rows share one header (CSV), which must name a phone column.
    """
    store = ProfileStore(default_region=region)
    targets: dict[str, Target] = {}
    out: list[Checked] = []
    for line, record in records:
        error = record.pop("__error__", None)
        if error is None:
            try:
                for column in record:
                    if column not in targets:
                        targets[column] = resolve_target(column, mapping, programs)
                if phone_column and not any(t.kind == "phone" for t in targets.values()):
                    raise ImportRejected("no phone column: name one 'phone' or map one "
                                         "(e.g. --map Mobile=phone)")
                phone, changes = _row_changes(record, targets, store)
            except ValueError as exc:
                error = str(exc)
        out.append((line, None, error) if error is not None else (line, phone, changes))
    return out


def _check_chunk(header: str, first_line: int, lines: list[str], fmt: str,
                 mapping: dict[str, str], region: str, programs: frozenset[str]
                 ) -> list[Checked]:
    """A worker process's share: parse and check one chunk of the file."""
    source = [header, *lines] if fmt == "csv" else lines
    return check_records(read_records(source, fmt, first_line=first_line), mapping, region,
                         phone_column=fmt == "csv", programs=programs)


def _raw_chunks(lines: Iterable[str], fmt: str, size: int
                ) -> Iterator[tuple[str, int, list[str]]]:
    """(header, first line number, lines) cut only between CSV records: where the quotes
    seen so far are balanced (a quoted cell may hold line breaks)."""
    it = iter(lines)
    header, number = "", 1
    if fmt == "csv":
        while True:
            line = next(it, None)
            if line is None:
                raise ImportRejected("the file is empty: expected a header row")
            header += line
            number += 1
            if header.count('"') % 2 == 0:
                break
    buffer: list[str] = []
    quotes, first = 0, number
    for line in it:
        buffer.append(line)
        if fmt == "csv":
            quotes += line.count('"')
        if len(buffer) >= size and quotes % 2 == 0:
            yield header, first, buffer
            first += len(buffer)
            buffer, quotes = [], 0
    if buffer:
        yield header, first, buffer


async def _checked_inline(lines: Iterable[str], fmt: str, mapping: dict[str, str],
                          region: str, programs: frozenset[str]
                          ) -> AsyncIterator[list[Checked]]:
    records = read_records(lines, fmt)
    while True:
        # Small slices, so that the writer goes on as soon as its SQL is done.
        part = check_records(itertools.islice(records, 50), mapping, region,
                             phone_column=fmt == "csv", programs=programs)
        if not part:
            return
        yield part
        await asyncio.sleep(0)


async def _checked_in_worker(lines: Iterable[str], fmt: str, mapping: dict[str, str],
                             region: str, programs: frozenset[str]
                             ) -> AsyncIterator[list[Checked]]:
    """Parsing and checking in a second process, which has a core of its own."""
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        pending: collections.deque[asyncio.Future[list[Checked]]] = collections.deque()
        for header, first, chunk in _raw_chunks(lines, fmt, WORKER_CHUNK):
            pending.append(loop.run_in_executor(pool, _check_chunk, header, first, chunk,
                                                fmt, mapping, region, programs))
            if len(pending) >= 3:
                yield await pending.popleft()
        while pending:
            yield await pending.popleft()


async def _validate(checked: AsyncIterator[list[Checked]], report: ImportReport,
                    chunks: asyncio.Queue[Any], atomic: bool, state: dict[str, bool],
                    progress: Callable[[int, bool], None] | None) -> None:
    """Merge checked rows by number and hand them on in chunks; always ends with _DONE."""
    seen: set[str] = set()
    chunk: dict[str, ProfileChanges] = {}

    async def hand_on(item: Any) -> None:
        if not state["abandoned"]:
            await chunks.put(item)

    try:
        async for part in checked:
            before = report.rows
            for line, phone, result in part:
                report.rows += 1
                if phone is None:
                    report.invalid += 1
                    if len(report.errors) < MAX_REPORTED_ERRORS:
                        report.errors.append((line, result))
                    if atomic and report.invalid == 1:
                        await hand_on(_INVALID)
                    continue
                report.valid += 1
                changes = result
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
            if progress and report.rows // 1000 != before // 1000:
                progress(report.rows, False)
        if progress:
            progress(report.rows, True)
        if chunk:
            report.applied_rows += len(chunk)
            await hand_on(list(chunk.items()))
    finally:
        if not state["abandoned"]:
            await chunks.put(_DONE)
