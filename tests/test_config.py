"""Configuration: the example loads, and every kind of mistake names the file and the key."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest

from gateway.config import Config, Secret, load_config, parse_config
from gateway.daemon import exposure_warnings
from gateway.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[service]
port = 9000
public_url = "https://sms.example.com"

[phone]
default_region = "IR"

[provider]
kind = "twilio"

[provider.twilio]
account_sid = "AC0123456789abcdef0123456789abcdef"
auth_token = "env:TEST_TWILIO_TOKEN"

[[short_codes]]
code = "30001234"
messages_per_second = 30

[[short_codes]]
code = "+989121234567"

[[programs]]
id = "news"
name = "News"
short_code = "30001234"
keywords = ["NEWS"]
help_text = "News: send 11 to stop."

[api]
tokens = ["env:TEST_ADMIN_TOKEN"]
"""

ENV = {"TEST_TWILIO_TOKEN": "secret-token-value", "TEST_ADMIN_TOKEN": "a" * 24}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_sandbox_defaults() -> None:
    config = load_config(ROOT / "config.example.toml", environ={})
    assert config.provider.kind == "sandbox"
    assert [p.id for p in config.programs] == ["deals", "alerts"]
    assert config.short_code("12345") is not None
    assert config.database_path() == ROOT / "var" / "mcrm.sqlite3"


def test_good_file_is_typed_and_secrets_come_from_the_environment(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD), environ=ENV)
    assert config.service.port == 9000
    assert config.short_codes[0].messages_per_second == 30.0
    assert isinstance(config.short_codes[0].messages_per_second, float)
    assert config.programs[0].keywords == ("NEWS",)
    assert config.provider.twilio is not None
    assert config.provider.twilio.auth_token == "secret-token-value"
    assert "secret-token-value" not in repr(config)
    assert isinstance(config.api.tokens[0], Secret)
    with pytest.raises(AttributeError):
        config.service.port = 1  # type: ignore[misc]


CASES = [
    ("unknown top-level key", 'colour = "blue"', "colour", "unknown key"),
    ("unknown nested key", "[service]\nprot = 1", "service.prot", "unknown key"),
    ("wrong type", '[service]\nport = "eighty"', "service.port",
     "expected an integer, got a string"),
    ("bool is not an int", "[service]\nport = true", "service.port", "expected an integer"),
    ("table expected", 'service = "x"', "service", "expected a table"),
    ("array expected", '[api]\ntokens = "x"', "api.tokens", "expected an array"),
    ("bad choice", '[provider]\nkind = "nexmo"', "provider.kind", "must be one of"),
    ("missing required value", '[[short_codes]]\nmessages_per_second = 5',
     "short_codes[0].code", "missing required value"),
    ("invalid short code", '[[short_codes]]\ncode = "12"', "short_codes[0].code",
     "not a short code"),
    ("invalid phone number", '[[short_codes]]\ncode = "+1555"', "short_codes[0].code",
     "nor a valid phone number"),
    ("unknown region", '[phone]\ndefault_region = "XX"', "phone.default_region",
     "not a known region"),
    ("port out of range", "[service]\nport = 70000", "service.port", "between 0 and 65535"),
    ("twilio without table", '[provider]\nkind = "twilio"', "provider.twilio",
     "missing required table"),
    ("bad account sid", '[provider]\nkind = "twilio"\n[provider.twilio]\n'
     'account_sid = "XX1"\nauth_token = "t"', "provider.twilio.account_sid", "'AC'"),
    ("env variable unset", '[api]\ntokens = ["env:NOT_SET_ANYWHERE"]', "api.tokens[0]",
     "environment variable NOT_SET_ANYWHERE is not set"),
    ("short api token", '[api]\ntokens = ["short"]', "api.tokens[0]", "at least 16"),
    ("program on unknown short code", '[[short_codes]]\ncode = "12345"\n[[programs]]\n'
     'id = "p"\nname = "P"\nshort_code = "99999"\nhelp_text = "h"', "programs[0].short_code",
     "not one of the configured short_codes"),
    ("duplicate keyword", '[[short_codes]]\ncode = "12345"\n'
     '[[programs]]\nid = "a"\nname = "A"\nshort_code = "12345"\nhelp_text = "h"\n'
     'keywords = ["JOIN"]\n[[programs]]\nid = "b"\nname = "B"\nshort_code = "12345"\n'
     'help_text = "h"\nkeywords = ["join"]', "programs[1].keywords[0]", "already used"),
    ("sync endpoint without secret", '[[sync.endpoints]]\nname = "crm"\n'
     'url = "https://crm.example.com"', "sync.endpoints[0].secret", "missing required value"),
    ("sync secret too short", '[[sync.endpoints]]\nname = "crm"\n'
     'url = "https://crm.example.com"\nsecret = "short"', "sync.endpoints[0].secret",
     "at least 16"),
    ("sync url", '[[sync.endpoints]]\nname = "crm"\nurl = "crm.example.com"\n'
     'secret = "0123456789abcdef"', "sync.endpoints[0].url", "must start with http"),
    ("sync endpoint twice", '[[sync.endpoints]]\nname = "crm"\nurl = "http://a"\n'
     'secret = "0123456789abcdef"\n[[sync.endpoints]]\nname = "crm"\nurl = "http://b"\n'
     'secret = "0123456789abcdef"', "sync.endpoints[1].name", "used twice"),
    ("sync retry bounds", "[sync]\nretry_initial_seconds = 10\nretry_max_seconds = 1",
     "sync.retry_max_seconds", "must not be less"),
    ("bad quiet hours", '[[short_codes]]\ncode = "12345"\n[[programs]]\nid = "p"\n'
     'name = "P"\nshort_code = "12345"\nhelp_text = "h"\nquiet_hours = "21:00-08:00"',
     "programs[0].quiet_hours", "neither a preset"),
    ("outbound validity", "[outbound]\nvalidity_minutes = 0", "outbound.validity_minutes",
     "greater than 0"),
    ("outbound body limit", "[outbound]\nmax_body_chars = 5000", "outbound.max_body_chars",
     "1600"),
    ("outbound slow-down", "[outbound]\nslow_down_factor = 2", "outbound.slow_down_factor",
     "at most 1"),
    ("outbound retry bounds", "[outbound]\nretry_initial_seconds = 9\nretry_max_seconds = 1",
     "outbound.retry_max_seconds", "must not be less"),
    ("campaign batch", "[campaigns]\nbatch_size = 0", "campaigns.batch_size",
     "from 1 to 1000000"),
    ("campaign grace", "[campaigns]\nmissed_run_grace_minutes = -5",
     "campaigns.missed_run_grace_minutes", "must not be negative"),
    ("account rate", "[provider]\nmessages_per_second = -1", "provider.messages_per_second",
     "must not be negative"),
    ("read rate", "[provider]\nreads_per_second = 0", "provider.reads_per_second",
     "greater than 0"),
    ("breaker threshold", "[provider]\ndown_after_failures = 0",
     "provider.down_after_failures", "from 1 to 1000"),
    ("probe interval", "[provider]\nprobe_max_seconds = 0.1", "provider.probe_max_seconds",
     "at least 1"),
    ("unknown-outcome policy", '[outbound]\nunknown_outcome = "guess"',
     "outbound.unknown_outcome", "must be one of 'give_up', 'resend'"),
    ("unknown outcome before its look-up", "[outbound]\nunknown_outcome_minutes = 0.1",
     "outbound.unknown_outcome_minutes", "longer than outbound.reconcile_after_seconds"),
    ("receipt checks", "[outbound]\nreceipt_check_after_seconds = 0",
     "outbound.receipt_check_after_seconds", "greater than 0"),
    ("sync breaker threshold", "[sync]\ndown_after_failures = 0", "sync.down_after_failures",
     "from 1 to 1000"),
    ("nan", "[outbound]\nvalidity_minutes = nan", "outbound.validity_minutes",
     "must be a finite number, got nan"),
    ("infinity", "[service]\nshutdown_timeout_seconds = inf",
     "service.shutdown_timeout_seconds", "must be a finite number, got inf"),
    ("minus infinity", "[provider]\nmessages_per_second = -inf",
     "provider.messages_per_second", "must be a finite number"),
    ("absurd hours", "[consent]\ncap_window_hours = 1e12", "consent.cap_window_hours",
     "out of range (at most 1e+06)"),
    ("absurd float", "[provider.sandbox]\nreceipt_delay_seconds = 1e300",
     "provider.sandbox.receipt_delay_seconds", "out of range"),
    ("absurd integer", "[database]\nbusy_timeout_ms = 99999999999999999",
     "database.busy_timeout_ms", "out of range"),
    ("stop scope", '[consent]\nstop_scope = "galaxy"', "consent.stop_scope",
     "must be one of"),
    ("double opt-in expiry", "[consent]\ndouble_opt_in_expiry_hours = 0",
     "consent.double_opt_in_expiry_hours", "greater than 0"),
    ("empty help text", '[[short_codes]]\ncode = "12345"\n[[programs]]\nid = "p"\n'
     'name = "P"\nshort_code = "12345"\nhelp_text = " "', "programs[0].help_text",
     "must not be empty"),
]


@pytest.mark.parametrize(("snippet", "key", "message"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_config_errors_name_file_and_key(tmp_path: Path, snippet: str, key: str,
                                         message: str) -> None:
    path = write(tmp_path, snippet)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert caught.value.file == str(path)
    assert caught.value.key == key
    assert message in caught.value.message
    assert str(path) in str(caught.value) and key in str(caught.value)


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[service\nport = 1\n")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 1") as caught:
        load_config(path)
    assert caught.value.file == str(path)


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b'[phone]\ndefault_region = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value) == (f"config error in {path}: not UTF-8 (byte b'\\xff' at "
                                 "offset 26)")


@pytest.mark.parametrize("snippet", [
    "[outbound]\nvalidity_minutes = nan", "[database]\nbusy_timeout_ms = 99999999999999999",
    "[consent]\ncap_window_hours = 1e12", "[service]\nshutdown_timeout_seconds = inf"])
def test_serve_with_a_bad_number_exits_2_with_one_line_at_once(tmp_path: Path,
                                                               snippet: str) -> None:
    path = write(tmp_path, snippet)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "--config", str(path)],
                            capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert result.returncode == 2
    assert time.monotonic() - started < 1.0  # at once, never a process left hanging
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"config error in {path}: "), lines


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_in_memory_dict_is_checked_like_a_file() -> None:
    with pytest.raises(ConfigError, match=r"service.public_url: must start with http"):
        parse_config({"service": {"public_url": "sms.example.com"}})


@pytest.mark.parametrize("command", ["check-config", "serve"])
def test_cli_reports_config_errors_without_traceback(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, '[[short_codes]]\ncode = "abc"\n')
    result = subprocess.run([sys.executable, "-m", "gateway", command, "--config", str(path)],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"config error in {path}: short_codes[0].code" in result.stderr


def test_cli_check_config_accepts_the_example() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "-c", "config.example.toml"],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "ok (2 programs, 1 short codes, provider sandbox)" in result.stdout


def test_the_example_shows_every_setting() -> None:
    """config.example.toml is the reference: each key of every table is in it, commented."""
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    shown = set(re.findall(r"(?:^#? ?|[{,] )([a-z_]+) = ", text, flags=re.MULTILINE))
    missing: list[str] = []

    def walk(cls: type, prefix: str) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "source":
                continue
            inner = [a for a in (typing.get_args(hints[f.name]) or (hints[f.name],))
                     if dataclasses.is_dataclass(a)]
            if inner:
                walk(inner[0], f"{prefix}{f.name}.")
            elif f.name not in shown:
                missing.append(prefix + f.name)

    walk(Config, "")
    assert missing == []


def test_exposure_warnings() -> None:

    example = load_config(ROOT / "config.example.toml", environ={})
    assert exposure_warnings(example) == [
        "api.tokens holds the example token: replace it (env:NAME)"]
    public = parse_config({"service": {"host": "0.0.0.0"}}, environ={})
    assert "the sandbox provider sends nothing" in exposure_warnings(public)[0]
    unsigned = parse_config({"service": {"host": "0.0.0.0"},
                             "provider": {"sandbox": {"validate_signatures": False}}},
                            environ={})
    assert "accepts unsigned webhooks" in exposure_warnings(unsigned)[0]
    safe = parse_config({"api": {"tokens": ["a-long-and-random-token"]}}, environ={})
    assert exposure_warnings(safe) == []
