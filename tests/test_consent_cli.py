"""`mcrm check`, `mcrm consent show|export|rebuild`, and the compliance lint."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from consent import Consent, ConsentEvent, Kind
from consent.compliance import lint
from gateway.config import load_config, parse_config
from gateway.db import Database
from gateway.profiles import ProfileStore

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def test_the_example_configuration_passes_the_audit_and_replays() -> None:
    result = run("check", "-c", "config.example.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 programs: 0 errors, 0 warnings" in result.stdout
    lines = result.stdout.splitlines()
    stop = lines.index("  12345 > STOP")
    assert lines[stop + 1].startswith("  12345 < Acme Deals, Acme Alerts: you are unsubscribed")
    assert "  12345 > HELP" in lines
    assert any("reply Y to confirm" in line for line in lines)


def program(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": "deals", "name": "Acme Deals", "short_code": "12345", "keywords": ["DEALS"],
        "help_text": "Acme Deals: help@acme.example. Reply STOP to cancel.",
        "frequency": "4 msgs/wk", "terms_url": "https://acme.example/t"}
    base.update(changes)
    return base


@pytest.mark.parametrize(("changes", "level", "message"), [
    ({"keywords": ["STOP"]}, "error", "keyword 'stop' is reserved"),
    ({"keywords": ["Help"]}, "error", "keyword 'help' is reserved"),
    ({"help_text": "Acme Deals. Reply STOP."}, "error", "no customer-care contact"),
    ({"help_text": "Call help@acme.example. Reply STOP."}, "error", "does not name the program"),
    ({"help_text": "Acme Deals: help@acme.example"}, "error", "how to opt out"),
    ({"confirmation_request": "{program}: reply Y! {frequency}. HELP/STOP."}, "error",
     "lacks 'Msg & data rates may apply'"),
    ({"welcome_text": "Welcome! Msg & data rates may apply. HELP/STOP"}, "error",
     "welcome text does not name the program"),
    ({"opt_out_text": "{programs}: bye! 20% off if you come back: https://x.example"},
     "error", "carries marketing content"),
    ({"opt_out_text": "{programs}: you will get no more messages."}, "warning",
     "how to rejoin"),
    ({"terms_url": ""}, "warning", "no terms_url"),
    ({"quiet_hours": "always"}, "warning", "without quiet hours"),
])
def test_lint(changes: dict[str, object], level: str, message: str) -> None:
    config = parse_config({"short_codes": [{"code": "12345"}], "programs": [program(**changes)]},
                          environ={})
    findings = [(f.level, f.message) for f in lint(config)]
    assert any(lv == level and message in m for lv, m in findings), findings


def test_a_clean_program_has_no_findings() -> None:
    config = parse_config({"short_codes": [{"code": "12345"}], "programs": [program()]},
                          environ={})
    assert lint(config) == []


def test_check_fails_on_errors(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[[short_codes]]\ncode = "12345"\n[[programs]]\nid = "p"\nname = "P"\n'
                      'short_code = "12345"\nhelp_text = "nothing useful"\nkeywords = ["END"]\n',
                      encoding="utf-8")
    result = run("check", "-c", str(config))
    assert result.returncode == 1
    assert "error   p: keyword 'end' is reserved" in result.stdout


def test_consent_show_and_export(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text((ROOT / "config.example.toml").read_text(encoding="utf-8").replace(
        'path = "var/mcrm.sqlite3"', 'path = "db.sqlite3"'), encoding="utf-8")


    async def seed() -> None:
        loaded = load_config(config)
        db = await Database.open(loaded.database_path())
        consent = Consent(loaded, ProfileStore())
        await db.write(lambda tx: consent.ledger.record(tx, ConsentEvent(
            "+12125550101", "deals", Kind.OPT_IN_CONFIRMED, "web_form",
            datetime(2026, 5, 1, tzinfo=UTC), evidence={"ip": "203.0.113.9"})))
        await db.close()

    asyncio.run(seed())
    shown = run("consent", "show", "(212) 555-0101", "-c", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "deals                opted_in" in shown.stdout
    assert "opt_in_confirmed via web_form" in shown.stdout and "203.0.113.9" in shown.stdout
    exported = run("consent", "export", "--program", "deals", "-c", str(config))
    assert exported.returncode == 0
    assert exported.stdout.splitlines()[0].startswith("event_id,phone,program,kind")
    assert "+12125550101,deals,opt_in_confirmed,web_form" in exported.stdout
    later = run("consent", "export", "--since", "2026-06-01", "-c", str(config))
    assert len(later.stdout.splitlines()) == 1  # the header only
    bad = run("consent", "export", "--program", "nope", "-c", str(config))
    assert bad.returncode == 2 and "not a configured program" in bad.stderr
    rebuilt = run("consent", "rebuild", "-c", str(config))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt 1 consent statuses from the ledger: all matched" in rebuilt.stdout
    with sqlite3.connect(tmp_path / "db.sqlite3") as conn:
        conn.execute("UPDATE consent_status SET status = 'opted_out'")  # tampered
    rebuilt = run("consent", "rebuild", "-c", str(config))
    assert rebuilt.returncode == 1 and "1 differed and were corrected" in rebuilt.stdout
    shown = run("consent", "show", "+12125550101", "-c", str(config))
    assert "deals                opted_in" in shown.stdout
