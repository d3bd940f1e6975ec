"""A campaign's numbers, from its recipients and their messages (the delivery log is the
truth: receipts move a message's status, so nothing is counted twice).

- audience: recipients fixed by its runs; queued: those that became messages;
- skipped by reason: not queued (campaign cancelled, message refused) or not sent
  (opted_out, no_consent, frequency_cap, expired …);
- sent: handed to the provider; delivered; failed/undelivered by error code;
- replies and opt-outs: recipients who texted back, or opted out of the program, within the
  attribution window after the campaign's message.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from campaigns.model import Campaign
from gateway.db import Database
from gateway.db import campaigns as sql
from gateway.db.outbound import PENDING


def _empty() -> dict[str, Any]:
    return {"audience": 0, "queued": 0, "pending": 0, "sent": 0, "delivered": 0,
            "skipped": Counter(), "failed": Counter(), "replies": 0, "opt_outs": 0}


async def campaign_stats(db: Database, campaign: Campaign, short_code: str,
                         attribution_hours: float) -> dict[str, Any]:
    if campaign.kind == "pull":
        return await _pull_stats(db, campaign)
    per: dict[int, dict[str, Any]] = {i: _empty() for i in range(len(campaign.spec.variants))}
    for row in await sql.recipient_stats(db, campaign.id):
        s, status, n = per[row["variant"]], row["status"], row["n"]
        s["audience"] += n
        s["sent"] += row["handed_over"] or 0
        if status in ("skipped", "unqueued"):
            if status == "skipped":
                s["skipped"][row["reason"] or "unknown"] += n
            continue
        s["queued"] += n
        if status in PENDING:
            s["pending"] += n
        elif status == "delivered":
            s["delivered"] += n
        elif status in ("failed", "undelivered"):
            s["failed"][row["error_code"] or row["reason"] or "unknown"] += n
        elif status in ("cancelled", "expired"):
            s["skipped"][row["reason"] or status] += n
    window = f"+{attribution_hours * 3600:.0f} seconds"
    for row in await sql.response_stats(db, campaign.id, short_code, campaign.program_id,
                                         window):
        per[row[0]]["replies"] += row[1] or 0
        per[row[0]]["opt_outs"] += row[2] or 0
    total = _empty()
    for s in per.values():
        for key, value in s.items():
            total[key] += value
    runs = await sql.runs(db, campaign.id)
    out = {"campaign": campaign.id, "kind": "push", **_plain(total),
           "runs": len(runs), "missed_runs": sum(r["status"] == "missed" for r in runs)}
    if len(campaign.spec.variants) > 1:
        out["variants"] = [{"name": v.name, "percent": v.percent, **_plain(per[i])}
                           for i, v in enumerate(campaign.spec.variants)]
    return out


def _plain(s: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(sorted(v.items())) if isinstance(v, Counter) else v for k, v in s.items()}


async def _pull_stats(db: Database, campaign: Campaign) -> dict[str, Any]:
    row = await sql.pull_stats(db, campaign.id)
    hits, in_window, unique, codes, given = (int(v) for v in row) if row else (0,) * 5
    return {"campaign": campaign.id, "kind": "pull", "hits": hits, "hits_in_window": in_window,
            "unique_customers": unique, "codes_total": codes, "codes_handed_out": given,
            "codes_left": codes - given}
