"""Profile import: every row checked with its line number, duplicates merged, atomic mode,
big files through the CLI with progress, and the API."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from consent import Consent, ConsentEvent, Kind, Status
from consent.imports import consent_writer
from gateway import profile_import
from gateway.config import parse_config
from gateway.db import Database
from gateway.profile_import import ImportRejected, import_profiles, parse_mapping
from gateway.profiles import ProfileStore
from tests.conftest import admin

ROOT = Path(__file__).resolve().parent.parent
AT = datetime(2026, 11, 23, 12, tzinfo=UTC)

MIXED = """Mobile,First,email,tags,Age,Joined,Plan
+12125550101,Ada,ada@example.com,vip;beta,36,2025-03-01,gold
(212) 555-0102,Grace,,beta,41,2024-12-24,
not a number,Nobody,,,,,
+12125550103,Linus,linus@example,,,,
+12125550104,Ken,,,forty,,
+12125550105,Dennis,,,,2024-13-01,
212-555-0101,Ada L.,,founder,37,,platinum
"""
MAPPING = "Mobile=phone,First=first_name,Age=attributes.age:integer,Joined=attributes.joined:date"


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = await Database.open(tmp_path / "mcrm.sqlite3")
    yield database
    await database.close()


CONSENT_CONFIG = parse_config({"short_codes": [{"code": "12345"}], "programs": [
    {"id": "deals", "name": "Deals", "short_code": "12345", "help_text": "Deals"}]},
    environ={})


async def run(db: Database, text: str, *, fmt: str = "csv", mapping: str = MAPPING,
              atomic: bool = False, in_worker: bool = False) -> profile_import.ImportReport:
    store = ProfileStore(default_region="US")
    consent = Consent(CONSENT_CONFIG, store)
    return await import_profiles(db, store, text.splitlines(keepends=True), fmt=fmt, at=AT,
                                 mapping=parse_mapping(mapping), atomic=atomic,
                                 in_worker=in_worker,
                                 consent_writer=consent_writer(consent.ledger),
                                 programs=frozenset(consent.catalog.programs))


async def profiles(db: Database) -> dict[str, dict[str, Any]]:
    rows = await db.fetchall("SELECT * FROM profiles ORDER BY phone")
    return {r["phone"]: {**dict(r), "attributes": json.loads(r["attributes_json"]),
                         "tags": json.loads(r["tags_json"])} for r in rows}


@pytest.mark.parametrize("in_worker", [False, True], ids=["inline", "worker-process"])
async def test_mixed_rows_report_line_numbers_and_merge_duplicates(db: Database,
                                                                   in_worker: bool) -> None:
    report = await run(db, MIXED, in_worker=in_worker)
    assert report.errors == [
        (4, "column 'Mobile': phone: cannot parse phone number 'not a number': (1) The "
            "string supplied did not seem to be a phone number."),
        (5, "column 'email': email: 'linus@example' is not an email address"),
        (6, "column 'Age': 'forty' is not a whole number"),
        (7, "column 'Joined': '2024-13-01' is not a date (YYYY-MM-DD or ISO 8601 with "
            "offset)"),
    ]
    assert (report.rows, report.valid, report.invalid, report.duplicates_merged) == (7, 3, 4, 1)
    assert (report.created, report.updated, report.applied) == (2, 0, True)
    stored = await profiles(db)
    assert list(stored) == ["+12125550101", "+12125550102"]
    ada = stored["+12125550101"]
    # The later row wins field by field; tags are united; an empty cell changes nothing.
    assert (ada["first_name"], ada["email"]) == ("Ada L.", "ada@example.com")
    assert ada["attributes"] == {"age": 37, "joined": "2025-03-01", "plan": "platinum"}
    assert ada["tags"] == ["vip", "beta", "founder"]
    assert stored["+12125550102"]["attributes"] == {"age": 41, "joined": "2024-12-24"}
    events = await db.fetchall("SELECT phone, type, data_json FROM profile_events")
    assert {(r[0], r[1]) for r in events} == {("+12125550101", "profile.imported"),
                                              ("+12125550102", "profile.imported")}
    assert json.loads(events[0][2])["source"] == "import"


async def test_atomic_mode_writes_nothing_when_one_row_is_bad(db: Database) -> None:
    report = await run(db, MIXED, atomic=True)
    assert not report.applied and report.invalid == 4
    assert await profiles(db) == {}
    assert await db.fetchall("SELECT * FROM profile_events") == []


async def test_atomic_mode_writes_everything_when_all_rows_are_good(db: Database) -> None:
    good = "\n".join(line for line in MIXED.splitlines() if "Ada" in line or "Mobile" in line)
    report = await run(db, good + "\n", atomic=True)
    assert report.applied and report.created == 1 and report.invalid == 0


async def test_importing_again_updates_only_what_changed(db: Database) -> None:
    await run(db, MIXED)
    report = await run(db, MIXED.replace("Grace,,beta,41", "Grace,,beta,42"))
    assert (report.created, report.updated, report.unchanged) == (0, 1, 1)
    events = await db.fetchall("SELECT seq FROM profile_events WHERE phone = '+12125550102'"
                               " ORDER BY seq")
    assert [r[0] for r in events] == [1, 2]


async def test_jsonl_keeps_json_types(db: Database) -> None:
    lines = "\n".join([
        json.dumps({"phone": "+12125550101", "first_name": "Ada",
                    "attributes": {"score": 9.5, "active": True, "visits": 3}, "tags": ["a"]}),
        "{broken",
        json.dumps(["not", "an", "object"]),
        json.dumps({"first_name": "no phone"}),
    ]) + "\n"
    report = await run(db, lines, fmt="jsonl", mapping="")
    assert [line for line, _ in report.errors] == [2, 3, 4]
    assert "invalid JSON" in report.errors[0][1]
    assert report.errors[2][1] == "no phone number"
    ada = (await profiles(db))["+12125550101"]
    assert ada["attributes"] == {"score": 9.5, "active": True, "visits": 3}
    assert ada["tags"] == ["a"]


@pytest.mark.parametrize(("text", "mapping", "message"), [
    ("First,Last\nAda,L\n", "", "no phone column"),
    ("phone,consent_deals\n+12125550101,yes\n", "", "consent is imported as consent.<program>"),
    ("phone,consent.nope\n+12125550101,yes\n", "", "'nope' is not a configured program"),
    ("Mobile\n+12125550101\n", "Mobile=colour", "unknown target"),
    ("Mobile,Age\n+12125550101,3\n", "Mobile=phone,Age=attributes.age:decimal",
     "type 'decimal' is not one of"),
    ("", "", "the file is empty"),
])
async def test_whole_file_problems_are_refused_before_writing(db: Database, text: str,
                                                              mapping: str,
                                                              message: str) -> None:
    with pytest.raises(ImportRejected, match=message):
        await run(db, text, mapping=mapping)
    assert await profiles(db) == {}


def test_bad_mapping_syntax() -> None:
    with pytest.raises(ImportRejected, match="write COLUMN=TARGET"):
        parse_mapping("Mobile")


async def test_worker_chunks_never_split_a_quoted_cell(db: Database,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_import, "WORKER_CHUNK", 2)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["phone", "note"])
    for n in range(7):
        writer.writerow([f"+1212555{n:04d}", f"line one\nline two of {n}"])
    writer.writerow(["bad", "x"])
    report = await run(db, out.getvalue(), mapping="", in_worker=True)
    assert report.valid == 7 and report.created == 7
    assert report.errors[0][0] == 2 + 7 * 2  # the file's line, counting the cells' breaks
    stored = await profiles(db)
    assert stored["+12125550006"]["attributes"]["note"] == "line one\nline two of 6"


def write_big_csv(path: Path, rows: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["phone", "first_name", "last_name", "email", "tags", "city",
                         "notes"])
        for n in range(rows):
            writer.writerow([f"+1415{2000000 + n:07d}", f"Name{n}", f"Last{n}",
                             f"user{n}@example.com", "vip;beta", "San Francisco",
                             "x" * 40])
        writer.writerow(["+1415", "Broken", "", "", "", "", ""])


def test_cli_imports_a_big_file_with_progress(tmp_path: Path) -> None:
    big = tmp_path / "customers.csv"
    write_big_csv(big, 25_000)  # over 2 MB: checked in a worker process
    assert big.stat().st_size > profile_import.WORKER_THRESHOLD_BYTES
    config = tmp_path / "config.toml"
    config.write_text('[database]\npath = "db.sqlite3"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "profiles", "import", str(big), "-c", str(config),
         "--progress"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1, result.stderr  # one invalid row
    progress = [line for line in result.stderr.splitlines() if line.startswith("checked ")]
    assert len(progress) >= 5 and progress[-1].startswith("checked 25,001 rows")
    assert f"{big}:25002: column 'phone'" in result.stderr
    assert "imported: 25001 rows, 25000 valid, 1 invalid" in result.stdout
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM profiles").fetchone()[0] == 25_000
        assert conn.execute("SELECT COUNT(*) FROM profile_events").fetchone()[0] == 25_000


def test_cli_atomic_import_of_a_file_with_a_bad_row(tmp_path: Path) -> None:
    source = tmp_path / "c.csv"
    source.write_text(MIXED, encoding="utf-8")
    config = tmp_path / "config.toml"
    config.write_text('[database]\npath = "db.sqlite3"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "profiles", "import", str(source), "-c", str(config),
         "--map", MAPPING, "--atomic"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout.startswith("nothing imported (--atomic)")
    assert f"{source}:4: column 'Mobile'" in result.stderr
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM profiles").fetchone()[0] == 0


async def test_api_import(client: Any) -> None:
    response = await client.post(f"/api/v1/profiles/import?map={MAPPING}", data=MIXED,
                                 headers={**admin(), "Content-Type": "text/csv"})
    assert response.status == 200
    report = await response.json()
    assert (report["created"], report["invalid"]) == (2, 4)
    assert report["errors"][0]["line"] == 4
    response = await client.post(f"/api/v1/profiles/import?atomic=true&map={MAPPING}",
                                 data=MIXED, headers=admin())
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "import_rejected"
    assert body["report"]["applied"] is False
    response = await client.post("/api/v1/profiles/import", data="First\nAda\n",
                                 headers=admin())
    assert response.status == 400
    assert "no phone column" in (await response.json())["error"]["message"]


async def test_api_import_size_limit(make_config: Any, make_client: Any) -> None:
    client = await make_client(make_config(imports={"max_bytes": 2048}))
    response = await client.post("/api/v1/profiles/import", data="phone\n" + "+12125550101\n"
                                 * 400, headers=admin())
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "payload_too_large"


CONSENT_CSV = """phone,consent.deals,consent_source,consent_captured_at,consent_form_url,consent_ip
+12125550101,opted_in,web_form,2026-05-01T10:00:00+00:00,https://acme.example/join,203.0.113.5
+12125550102,yes,,,,
+12125550103,opted_in,fax,2026-05-01,,
+12125550104,maybe,store,2026-05-01,,
+12125550105,opted_out,store,2026-05-02,,
"""


@pytest.mark.parametrize("in_worker", [False, True], ids=["inline", "worker-process"])
async def test_consent_columns_need_evidence_and_land_in_the_ledger(
        db: Database, in_worker: bool) -> None:
    report = await run(db, CONSENT_CSV, mapping="", in_worker=in_worker)
    assert [(line, message) for line, message in report.errors] == [
        (3, "consent needs evidence: missing consent_source, consent_captured_at"),
        (4, "column 'consent_source': 'fax' is not one of web_form, store, api, import, "
            "keyword, carrier"),
        (5, "column 'consent.deals': 'maybe' is not opted_in or opted_out"),
    ]
    consent = Consent(CONSENT_CONFIG, ProfileStore())
    [event] = await consent.ledger.history(db, "+12125550101")
    assert (event.kind, event.source, event.occurred_at.isoformat()) == (
        "imported", "web_form", "2026-05-01T10:00:00+00:00")
    assert event.evidence["form_url"] == "https://acme.example/join"
    assert event.evidence["ip"] == "203.0.113.5"
    state = await consent.ledger.state(db, "+12125550101", "deals")
    assert state.status is Status.OPTED_IN and state.opt_in_event_id == event.id
    out = await consent.ledger.state(db, "+12125550105", "deals")
    assert out.status is Status.OPTED_OUT
    assert await consent.ledger.history(db, "+12125550102") == []  # nothing recorded


async def test_an_old_imported_opt_in_does_not_undo_a_newer_stop(db: Database) -> None:

    consent = Consent(CONSENT_CONFIG, ProfileStore())
    await db.write(lambda tx: consent.ledger.record(tx, ConsentEvent(
        "+12125550101", "deals", Kind.OPT_OUT, "keyword", AT)))
    await run(db, CONSENT_CSV.splitlines()[0] + "\n" + CONSENT_CSV.splitlines()[1] + "\n",
              mapping="")
    history = await consent.ledger.history(db, "+12125550101")
    assert [e.kind for e in history] == ["opt_out", "imported"]  # kept as proof …
    state = await consent.ledger.state(db, "+12125550101", "deals")
    assert state.status is Status.OPTED_OUT  # … but the newer STOP stands
    assert await db.write(consent.ledger.rebuild) == 0


HOSTILE_FILES = [
    # (id, format, text, (line, words) expected in the errors, valid rows)
    ("unterminated-quote", "csv",
     'phone,first_name\n+12125550101,Ada\n+12125550102,"Bob\n+12125550103,Cy\n'
     '+12125550104,Di\n', (3, "never closed"), 1),
    ("huge-field", "csv",
     "phone,first_name\n+12125550101," + "x" * 200_000 + "\n+12125550102,Bob\n",
     (2, "field larger than field limit"), 1),
    ("long-field", "csv", "phone,first_name\n+12125550101," + "x" * 20_000 + "\n"
     "+12125550102,Bob\n", (2, "20,000 characters, more than 10,000"), 1),
    ("nul-in-name", "csv", "phone,first_name\n+12125550101,A\x00da\n+12125550102,Bob\n",
     (2, "control character U+0000"), 1),
    ("control-in-name", "csv", "phone,first_name\n+12125550101,A\x1bda\n+12125550102,Bob\n",
     (2, "control character U+001B"), 1),
    ("bad-quote", "csv", 'phone,first_name\n+12125550101,"Ada"x\n+12125550102,Bob\n',
     (2, "not valid CSV"), 1),
    ("jsonl-huge-field", "jsonl",
     '{"phone": "+12125550101", "first_name": "' + "x" * 200_000 + '"}\n'
     '{"phone": "+12125550102", "first_name": "Bob"}\n', (1, "more than 10,000"), 1),
    ("jsonl-nul", "jsonl", '{"phone": "+12125550101", "first_name": "A\\u0000da"}\n'
     '{"phone": "+12125550102", "first_name": "Bob"}\n', (1, "U+0000"), 1),
]


@pytest.mark.parametrize("in_worker", [False, True], ids=["inline", "worker-process"])
@pytest.mark.parametrize(("fmt", "text", "error", "valid"), [h[1:] for h in HOSTILE_FILES],
                         ids=[h[0] for h in HOSTILE_FILES])
async def test_hostile_files_are_line_numbered_errors(
        db: Database, fmt: str, text: str, error: tuple[int, str], valid: int,
        in_worker: bool) -> None:
    report = await run(db, text, fmt=fmt, in_worker=in_worker)
    line, words = error
    assert [(n, m) for n, m in report.errors if n == line and words in m], report.errors
    assert report.valid == valid, report.errors
    stored = await profiles(db)
    assert all(len(p["first_name"] or "") <= 10_000 and "\x00" not in (p["first_name"] or "")
               for p in stored.values())
