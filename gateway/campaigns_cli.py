"""`mcrm campaign …`: the campaign API from a terminal.

The commands talk to the running gateway (its scheduler arms the runs), at the address it
listens on, with the first admin token of the configuration.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import aiohttp

from gateway.config import Config
from gateway.errors import BadRequest, GatewayError


class ApiError(GatewayError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")


def base_url(config: Config, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = config.service.host
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    return f"http://{host}:{config.service.port}"


async def call(config: Config, method: str, path: str, body: Any = None,
               url: str | None = None) -> Any:
    if not config.api.tokens:
        raise BadRequest("the campaign commands need an admin token: set [api] tokens")
    target = base_url(config, url) + path
    headers = {"Authorization": f"Bearer {config.api.tokens[0]}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, \
                session.request(method, target, json=body, headers=headers) as response:
            payload = await response.json(content_type=None)
            if response.status >= 400:
                error = payload.get("error", {}) if isinstance(payload, dict) else {}
                raise ApiError(response.status, error.get("message", str(payload)))
            return payload
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise GatewayError(f"cannot reach the gateway at {base_url(config, url)}: "
                           f"{exc or type(exc).__name__} (is `mcrm serve` running?)") from None


def read_definition(file: str) -> dict[str, Any]:
    """A campaign file: TOML (or JSON when it ends in .json)."""
    path = Path(file)
    try:
        text = sys.stdin.read() if file == "-" else path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(f"{file}: {exc.strerror or exc}") from None
    try:
        loaded = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"{file}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}:"
                         f" {exc}") from None
    if not isinstance(loaded, dict):
        raise BadRequest(f"{file}: expected a table of campaign fields")
    return loaded


def _line(campaign: dict[str, Any]) -> str:
    return (f"{campaign['id']}  {campaign['status']:<10} {campaign['kind']:<5} "
            f"{campaign['program']:<12} {campaign['next_run_at'] or '-':<26} "
            f"{campaign['name']}")


def print_campaign(campaign: dict[str, Any]) -> None:
    print(_line(campaign))


def print_list(campaigns: list[dict[str, Any]]) -> None:
    print(f"{'ID':<24}  {'STATUS':<10} {'KIND':<5} {'PROGRAM':<12} {'NEXT RUN':<26} NAME")
    for campaign in campaigns:
        print(_line(campaign))


def print_show(campaign: dict[str, Any], stats: dict[str, Any]) -> None:
    print(_line(campaign))
    for run in campaign.get("runs", []):
        print(f"  run {run['id']}: {run['status']}, due {run['scheduled_for']}, "
              f"audience {run['audience']}")
    print()
    if stats["kind"] == "pull":
        rows = [(k.replace("_", " "), v) for k, v in stats.items() if k not in ("campaign",
                                                                                 "kind")]
        for name, value in rows:
            print(f"  {name:<20} {value:>10}")
        return
    columns = [("total", stats)] + [(v["name"], v) for v in stats.get("variants", [])]
    print("  " + f"{'':<26}" + "".join(f"{name:>12}" for name, _ in columns))
    keys = ["audience", "queued", "pending", "sent", "delivered", "replies", "opt_outs"]
    for key in keys:
        print("  " + f"{key.replace('_', '-'):<26}" + "".join(f"{c[key]:>12}"
                                                             for _, c in columns))
    for group, label in (("skipped", "skipped"), ("failed", "failed")):
        reasons = sorted({r for _, c in columns for r in c[group]})
        for reason in reasons:
            print("  " + f"{label + ': ' + str(reason):<26}" + "".join(
                f"{c[group].get(reason, 0):>12}" for _, c in columns))
