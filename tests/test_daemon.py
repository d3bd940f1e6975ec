"""The real `mcrm serve` process: systemd readiness, graceful SIGTERM, simulate, start errors."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import ACCOUNT_SID, AUTH_TOKEN, free_port

ROOT = Path(__file__).resolve().parent.parent


def write_config(folder: Path, port: int, *, twilio: bool = False,
                 shutdown_timeout: float = 10.0, extra: str = "") -> Path:
    provider = '[provider]\nkind = "sandbox"\n[provider.sandbox]\nreceipt_delay_seconds = 0.1\n'
    if twilio:
        provider = ('[provider]\nkind = "twilio"\n[provider.twilio]\n'
                    f'account_sid = "{ACCOUNT_SID}"\nauth_token = "env:TEST_TWILIO_TOKEN"\n'
                    'api_base_url = "http://127.0.0.1:9"\n')
    path = folder / "config.toml"
    path.write_text(f"""
[service]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
shutdown_timeout_seconds = {shutdown_timeout}

[database]
path = "data/mcrm.sqlite3"

{provider}
[[short_codes]]
code = "12345"

[[programs]]
id = "deals"
name = "Deals"
short_code = "12345"
help_text = "Deals: reply STOP to cancel."

[api]
tokens = ["daemon-test-token-0123"]
{extra}
""", encoding="utf-8")
    return path


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    return base | {"TEST_TWILIO_TOKEN": AUTH_TOKEN, "PYTHONUNBUFFERED": "1"} | extra


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_ready(port: int, proc: subprocess.Popen[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gateway exited early: {proc.communicate()[1]}")
        with contextlib.suppress(OSError):
            if get(f"http://127.0.0.1:{port}/readyz") == 200:
                return
        time.sleep(0.05)
    raise AssertionError("gateway did not become ready")


@contextlib.contextmanager
def running(config: Path, **extra_env: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(**extra_env), cwd=config.parent)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


def test_serve_notifies_systemd_and_drains_in_flight_requests_on_sigterm(
        tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    notify_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    notify.settimeout(20)
    with notify, running(config, NOTIFY_SOCKET=notify_path) as proc:
        assert notify.recv(1024).decode().startswith("READY=1")
        wait_ready(port, proc)

        # Another process holds the write lock, so the webhook is still being handled
        # (waiting to commit) when SIGTERM comes: it must be finished, not cut.
        locker = sqlite3.connect(tmp_path / "data" / "mcrm.sqlite3", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
        form = {"MessageSid": "SM" + "7" * 32, "From": "+15551234567", "To": "12345",
                "Body": "JOIN"}
        body = urlencode(form).encode()
        # Signed as the sandbox's carrier signs, with the secret the gateway made at start.
        secret = (tmp_path / "data" / "sandbox-webhook.secret").read_text().strip()
        signature = RequestValidator(secret).compute_signature(
            f"http://127.0.0.1:{port}/webhooks/twilio/sms", form)
        conn = socket.create_connection(("127.0.0.1", port), timeout=10)
        conn.sendall(b"POST /webhooks/twilio/sms HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"X-Twilio-Signature: " + signature.encode() + b"\r\n"
                     b"Connection: close\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(1024).decode() == "STOPPING=1"
        time.sleep(0.3)
        with pytest.raises(OSError):  # no new connections while draining
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert proc.poll() is None  # still draining
        locker.execute("COMMIT")
        locker.close()
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
        conn.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply
        assert b"<Response/>" in reply
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "received SIGTERM" in stderr
    assert "mcrm-gateway stopped" in stderr
    assert "Traceback" not in stderr
    assert "+1555***4567" in stderr and "+15551234567" not in stderr  # masked in the log
    with sqlite3.connect(tmp_path / "data" / "mcrm.sqlite3") as db:
        rows = db.execute("SELECT from_number, body FROM inbound_messages").fetchall()
    assert rows == [("+15551234567", "JOIN")]


@pytest.mark.parametrize("twilio", [False, True], ids=["sandbox", "twilio-signed"])
def test_simulate_posts_a_text_to_a_running_gateway(tmp_path: Path, twilio: bool) -> None:
    port = free_port()
    config = write_config(tmp_path, port, twilio=twilio)
    with running(config) as proc:
        wait_ready(port, proc)
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "simulate", "--config", str(config),
             "--from", "+15551234567", "--text", "JOIN"],
            capture_output=True, text=True, timeout=30, env=env(), cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout == "(no reply)\n"  # JOIN is no keyword in this configuration
        raw = subprocess.run(
            [sys.executable, "-m", "gateway", "simulate", "--config", str(config),
             "--from", "+15551234567", "--text", "STOP", "--raw"],
            capture_output=True, text=True, timeout=30, env=env(), cwd=tmp_path)
        assert raw.stdout.startswith("HTTP 200 text/xml")
        assert ">Deals: you are unsubscribed" in raw.stdout
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    with sqlite3.connect(tmp_path / "data" / "mcrm.sqlite3") as db:
        assert db.execute("SELECT body FROM inbound_messages").fetchall() == [("JOIN",),
                                                                              ("STOP",)]


def test_simulate_reports_an_unreachable_gateway(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "simulate", "--config", str(config),
         "--from", "+15551234567", "--text", "HI"],
        capture_output=True, text=True, timeout=30, env=env(), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot reach the gateway" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port)
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "serve", "--config", str(config)],
            capture_output=True, text=True, timeout=30, env=env(), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_too_new_database_stops_start_with_a_message(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    migrate = subprocess.run([sys.executable, "-m", "gateway", "migrate", "-c", str(config)],
                             capture_output=True, text=True, timeout=30, env=env(),
                             cwd=tmp_path)
    assert migrate.returncode == 0, migrate.stderr
    with sqlite3.connect(tmp_path / "data" / "mcrm.sqlite3") as db:
        db.execute("INSERT INTO schema_migrations VALUES (99, 'future', 'x')")
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                            capture_output=True, text=True, timeout=30, env=env(),
                            cwd=tmp_path)
    assert result.returncode == 2
    assert "schema version 99" in result.stderr
    assert "Traceback" not in result.stderr


def test_readme_serve_command_runs_the_example_config(tmp_path: Path) -> None:
    """`./scripts/serve` on config.example.toml (moved to a free port) becomes ready."""
    port = free_port()
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace("port = 8080", f"port = {port}").replace(
        "127.0.0.1:8080", f"127.0.0.1:{port}")
    config = tmp_path / "config.toml"
    config.write_text(text, encoding="utf-8")
    proc = subprocess.Popen([str(ROOT / "scripts" / "serve"), "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
    try:
        wait_ready(port, proc, timeout=120)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, stderr
    assert (tmp_path / "var" / "mcrm.sqlite3").exists()


def test_an_unusable_database_path_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port())
    (tmp_path / "data").write_text("a file where the database folder should be")
    result = subprocess.run([sys.executable, "-m", "gateway", "serve", "-c", str(config)],
                            capture_output=True, text=True, timeout=30, env=env(),
                            cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot open the database" in result.stderr and "data/mcrm.sqlite3" in result.stderr
    assert "Traceback" not in result.stderr
