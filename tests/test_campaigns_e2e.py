"""Campaigns end to end: a real `mcrm serve` subprocess, the `mcrm campaign` CLI, the real
twilio library against the Twilio-shaped fake (with signed receipts), and SIGKILL mid-run."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consent import Kind
from tests.conftest import ACCOUNT_SID, ADMIN_TOKEN, AUTH_TOKEN, eventually, free_port
from tests.daemon import (
    EVIDENCE,
    api,
    environment,
    mcrm,
    post,
    seed,
    serve,
    write_config,
)
from tests.fakes.twilio_server import FakeTwilio

BODY = "Acme: 20% off everything this weekend. Reply STOP to opt out."


def config_file(folder: Path, port: int, fake_url: str, *, rate: int, batch: int = 500,
                ahead: int = 2000) -> Path:
    return write_config(folder, port, fake_url, rate=rate, rest=f"""
[[programs]]
id = "deals"
name = "Acme Deals"
short_code = "12345"
keywords = ["JOIN"]
help_text = "Acme Deals: help@acme.example. Reply STOP to cancel."
quiet_hours = "always"

[[programs]]
id = "news"
name = "Acme News"
short_code = "12345"
keywords = ["NEWS"]
help_text = "Acme News: help@acme.example. Reply STOP to cancel."
quiet_hours = "always"

[outbound]
reconcile_after_seconds = 0.5
retry_initial_seconds = 0.1
retry_max_seconds = 0.5

[campaigns]
batch_size = {batch}
queue_ahead = {ahead}

[api]
tokens = ["{ADMIN_TOKEN}"]
""")


def numbers(n: int, first: int) -> list[str]:
    return [f"+1212555{first + i:04d}" for i in range(n)]


async def test_scheduled_campaign_reaches_exactly_the_opted_in_audience(tmp_path: Path
                                                                         ) -> None:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, send_callbacks=True)
    await fake.start()
    proc = None
    try:
        config = config_file(tmp_path, free_port(), fake.base_url, rate=100)
        opted, stopped = numbers(40, 100), numbers(5, 200)
        pending, elsewhere = numbers(5, 300), numbers(5, 400)
        proc = await serve(config, tmp_path / "serve.log", wait=True)
        # Profiles and consents through the API, as a web form or a store counter would.
        for phone in opted + stopped:
            await post(config, "/api/v1/consent", {
                "phone": phone, "program": "deals", "action": "opt_in", "source": "web_form",
                "evidence": EVIDENCE})
        for phone in stopped:
            await post(config, "/api/v1/consent", {"phone": phone, "program": "deals",
                                                   "action": "opt_out"})
        for phone in pending:  # asked to confirm (that request is sent), never confirmed
            await post(config, "/api/v1/consent", {
                "phone": phone, "program": "deals", "action": "opt_in", "source": "web_form",
                "evidence": EVIDENCE, "double_opt_in": True})
        for phone in elsewhere:
            await post(config, "/api/v1/consent", {
                "phone": phone, "program": "news", "action": "opt_in", "source": "web_form",
                "evidence": EVIDENCE})
        await post(config, f"/api/v1/profiles/{opted[0]}", {"first_name": "Ada"}, "PATCH")
        definition = tmp_path / "campaign.toml"
        definition.write_text(f'name = "Weekend sale"\nprogram = "deals"\n'
                              f'template = "{{first_name|Hello}}! {BODY}"\n',
                              encoding="utf-8")
        created = await mcrm(config, "campaign", "create", "--file", str(definition))
        campaign_id = created.split()[0]
        assert "draft" in created
        at = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
        due = time.monotonic() + 3.0
        scheduled = await mcrm(config, "campaign", "schedule", campaign_id, "--at", at)
        assert "scheduled" in scheduled

        async def completed() -> bool:
            shown = await api(config, f"/api/v1/campaigns/{campaign_id}")
            return bool(shown["status"] == "completed")

        await eventually(completed, seconds=30, what="campaign completed")
        ours = [r for r in fake.created if r.form["Body"].endswith(BODY)]
        reached = Counter(r.form["To"] for r in ours)
        assert reached == Counter(opted)  # each once; stopped, pending, others: nothing
        assert {r.form["Body"] for r in ours if r.form["To"] == opted[0]} == {f"Ada! {BODY}"}
        assert min(r.at for r in ours) >= due - 0.1, "sent before the scheduled time"
        sids = {sid for sid, m in fake.messages.items() if m["body"].endswith(BODY)}

        async def receipts_in() -> bool:
            stats = await api(config, f"/api/v1/campaigns/{campaign_id}/stats")
            return bool(stats["delivered"] == len(opted))

        await eventually(receipts_in, what="every receipt counted")
        stats = await api(config, f"/api/v1/campaigns/{campaign_id}/stats")
        assert (stats["audience"], stats["sent"], stats["delivered"], stats["failed"]) == (
            len(opted), len(sids), len(sids), {})
        shown = await mcrm(config, "campaign", "show", campaign_id)
        assert "completed" in shown
        assert f"{'delivered':<26}{len(opted):>12}" in shown
        listed = await mcrm(config, "campaign", "list")
        assert campaign_id in listed
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        await fake.close()


async def test_sigkill_mid_run_then_restart_sends_each_message_exactly_once(
        tmp_path: Path) -> None:
    fake = FakeTwilio(ACCOUNT_SID, AUTH_TOKEN, latency=0.02)
    await fake.start()
    proc = None
    try:
        config = config_file(tmp_path, free_port(), fake.base_url, rate=300, batch=50,
                              ahead=100)
        opted, stopped = numbers(1500, 1000), numbers(20, 3000)
        await seed(config, [(p, "deals", Kind.OPT_IN_CONFIRMED) for p in opted + stopped]
                   + [(p, "deals", Kind.OPT_OUT) for p in stopped])
        log = tmp_path / "serve.log"
        proc = await serve(config, log, wait=True)
        definition = tmp_path / "campaign.json"
        definition.write_text(f'{{"name": "Flash sale", "program": "deals", '
                              f'"template": "{BODY}"}}', encoding="utf-8")
        campaign_id = (await mcrm(config, "campaign", "create", "--file",
                                  str(definition))).split()[0]
        await mcrm(config, "campaign", "schedule", campaign_id, "--now")
        rng = random.Random(20261123)
        for kill in range(3):
            floor = len(fake.created)
            await eventually(lambda f=floor: len(fake.created) > f + 20, seconds=30,
                             what=f"sending after start #{kill + 1}")
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            assert len(fake.created) < len(opted), "killed too late to prove anything"
            proc = await serve(config, log, wait=True)

        async def completed() -> bool:
            shown = await api(config, f"/api/v1/campaigns/{campaign_id}")
            return bool(shown["status"] == "completed")

        await eventually(completed, seconds=60, what="campaign completed after restarts")
        await asyncio.sleep(0.5)  # anything sent twice would have arrived by now
        reached = Counter(r.form["To"] for r in fake.created)
        assert set(reached) == set(opted)
        assert [p for p, n in reached.items() if n > 1] == []
        stats = await api(config, f"/api/v1/campaigns/{campaign_id}/stats")
        assert (stats["audience"], stats["queued"], stats["sent"], stats["pending"]) == (
            len(opted), len(opted), len(opted), 0)
        shown = await api(config, f"/api/v1/campaigns/{campaign_id}")
        assert [r["status"] for r in shown["runs"]] == ["completed"]
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        await fake.close()


async def test_campaign_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    config = config_file(tmp_path, free_port(), "http://127.0.0.1:9", rate=10)
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n", encoding="utf-8")
    for args, words in ((("campaign", "list"), "cannot reach the gateway"),
                        (("campaign", "create", "--file", str(tmp_path / "nope.toml")),
                         "nope.toml: No such file"),
                        (("campaign", "create", "--file", str(bad)), "not valid TOML")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", *args, "--config", str(config),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            cwd=tmp_path, env=environment())
        _, err = await proc.communicate()
        assert proc.returncode == 2, err
        assert words in err.decode() and "Traceback" not in err.decode()
