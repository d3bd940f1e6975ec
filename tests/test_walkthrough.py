"""The example configuration, as a newcomer tries it: `mcrm serve` and `mcrm simulate`
through JOIN → Y → a survey (with the gateway killed and restarted in the middle) → STOP."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port
from tests.test_daemon import ROOT, env, running, wait_ready

PHONE = "+12125550101"


def example_config(folder: Path, port: int) -> Path:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    text = text.replace("port = 8080", f"port = {port}").replace(
        'public_url = "http://127.0.0.1:8080"', f'public_url = "http://127.0.0.1:{port}"')
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def simulate(config: Path, body: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "simulate", "--config", str(config), "--from", PHONE,
         "--text", body], capture_output=True, text=True, timeout=30, env=env(),
        cwd=config.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_join_confirm_survey_restart_stop(tmp_path: Path) -> None:
    port = free_port()
    config = example_config(tmp_path, port)
    with running(config) as proc:
        wait_ready(port, proc)
        assert "Acme Deals: reply Y to confirm" in simulate(config, "JOIN")
        assert "Acme Deals: you are subscribed" in simulate(config, "Y")
        survey = simulate(config, "feedback")
        assert "Thanks for helping us improve!" in survey
        assert "Did you enjoy your last visit?" in survey
        assert "How likely are you to recommend us" in simulate(config, "yes")
        proc.send_signal(signal.SIGKILL)  # mid-survey, without a chance to tidy up
        proc.communicate(timeout=20)
    with running(config) as proc:
        wait_ready(port, proc)
        assert "Please answer with a number." in simulate(config, "very")
        assert "What brings you back next?" in simulate(config, "9")
        assert "Thank you, friend!" in simulate(config, "2")
        stop = simulate(config, "STOP")
        assert "unsubscribed" in stop and stop.count("\n") == 1  # exactly one reply
        assert "Sorry, we did not understand" in simulate(config, "hello?")
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
