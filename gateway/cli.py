"""The `mcrm` command: serve, migrate, check-config, simulate, consent, messages, profiles,
campaign.

Errors a user can act on end as one line on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.config import Config, load_config
from gateway.errors import ConfigError, GatewayError
from gateway.logs import setup_logging

EXIT_USAGE = 2
DEFAULT_CONFIG = "config.toml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mcrm", description="mcrm-gateway: the mobile-CRM SMS gateway")
    parser.add_argument("--version", action="version", version=f"mcrm-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                       help=f"path to the TOML configuration (default: {DEFAULT_CONFIG})")
        return p

    with_config(sub.add_parser("serve", help="run the gateway in the foreground"))
    with_config(sub.add_parser("migrate", help="create or upgrade the database, then exit"))
    with_config(sub.add_parser("check-config", help="check the configuration file and exit"))
    sim = with_config(sub.add_parser(
        "simulate", help="send an inbound text to a running gateway, as the provider would"))
    sim.add_argument("--from", dest="from_number", required=True,
                     help="the customer's number, e.g. +15551234567")
    sim.add_argument("--text", required=True, help="the message body")
    sim.add_argument("--to", help="the short code (default: the first configured one)")
    sim.add_argument("--url", help="where the gateway listens (default: service.public_url)")
    sim.add_argument("--raw", action="store_true", help="print the HTTP answer as it came")
    with_config(sub.add_parser(
        "check", help="lint programs against carrier (CTIA) rules and replay HELP/JOIN/STOP"))
    consent = sub.add_parser("consent", help="show or export consent records")
    csub = consent.add_subparsers(dest="consent_command", required=True, metavar="ACTION")
    show = with_config(csub.add_parser("show", help="a customer's consent and its history"))
    show.add_argument("phone")
    export = with_config(csub.add_parser("export", help="the audit export, as CSV on stdout"))
    export.add_argument("--program", help="only this program")
    export.add_argument("--since", help="only events from this date (YYYY-MM-DD) on")
    export.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    with_config(csub.add_parser(
        "rebuild", help="recompute every consent status from the ledger; report differences"))

    messages = sub.add_parser("messages", help="the delivery log of outbound messages")
    msub = messages.add_subparsers(dest="messages_command", required=True, metavar="ACTION")
    tail = with_config(msub.add_parser(
        "tail", help="the latest entries of the delivery log, then new ones as they come"))
    tail.add_argument("-n", "--lines", type=int, default=20, help="entries shown first")
    tail.add_argument("--follow", action=argparse.BooleanOptionalAction, default=True,
                      help="keep printing new entries until Ctrl-C (default: yes)")
    mshow = with_config(msub.add_parser("show", help="one message and everything it went "
                                                     "through"))
    mshow.add_argument("id", type=int)

    profiles = sub.add_parser("profiles", help="import or erase customer profiles")
    psub = profiles.add_subparsers(dest="profiles_command", required=True, metavar="ACTION")
    imp = with_config(psub.add_parser("import", help="import profiles from CSV or JSON Lines"))
    imp.add_argument("file", help="a .csv or .jsonl file ('-' for standard input)")
    imp.add_argument("--format", choices=("csv", "jsonl"),
                     help="default: from the file name (.jsonl/.ndjson → jsonl, else csv)")
    imp.add_argument("--map", default="", metavar="COLUMN=TARGET,...",
                     help="e.g. 'Mobile=phone,First=first_name,Age=attributes.age:integer'")
    imp.add_argument("--atomic", action="store_true",
                     help="import nothing when any row is invalid")
    imp.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show progress on stderr (default: when stderr is a terminal)")
    erase = with_config(psub.add_parser(
        "erase", help="erase a customer's personal data; the number stays suppressed"))
    erase.add_argument("phone")

    campaign = sub.add_parser("campaign", help="create, schedule and follow campaigns "
                                               "(through the running gateway)")
    csub2 = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    def with_url(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        with_config(p)
        p.add_argument("--url", help="the gateway's address (default: where service.host and "
                                     "service.port say it listens)")
        return p

    ccreate = with_url(csub2.add_parser("create", help="create a draft from a TOML/JSON file"))
    ccreate.add_argument("--file", "-f", required=True, help="the campaign definition")
    clist = with_url(csub2.add_parser("list", help="campaigns, newest first"))
    clist.add_argument("--status", help="only campaigns in this status")
    cshow = with_url(csub2.add_parser("show", help="a campaign, its runs and its stats"))
    cshow.add_argument("id")
    cpreview = with_url(csub2.add_parser("preview", help="audience, cost and samples"))
    cpreview.add_argument("id")
    csched = with_url(csub2.add_parser("schedule", help="schedule a draft"))
    csched.add_argument("id")
    when = csched.add_mutually_exclusive_group()
    when.add_argument("--at", help="an ISO 8601 date-time, e.g. 2026-12-01T10:00:00+01:00")
    when.add_argument("--now", action="store_true", help="run at once")
    when.add_argument("--cron", help="recurring, e.g. '0 10 * * MON'")
    when.add_argument("--local-time", help="HH:MM in each recipient's time zone (with --date)")
    csched.add_argument("--date", help="the day of a --local-time send (YYYY-MM-DD)")
    csched.add_argument("--time-zone", help="for --cron (and --at without an offset)")
    for action in ("pause", "resume", "cancel"):
        with_url(csub2.add_parser(action, help=f"{action} a campaign")).add_argument("id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        setup_logging(config.logging)
        if args.command == "serve":
            return _serve(config)
        if args.command == "migrate":
            return asyncio.run(_migrate(config))
        if args.command == "check-config":
            print(f"{args.config}: ok ({len(config.programs)} programs, "
                  f"{len(config.short_codes)} short codes, provider {config.provider.kind})")
            return 0
        if args.command == "simulate":
            return asyncio.run(_simulate(config, args))
        if args.command == "check":
            from gateway.consent_cli import check

            return asyncio.run(check(config))
        if args.command == "consent":
            from gateway.consent_cli import export, rebuild, show

            if args.consent_command == "show":
                return asyncio.run(show(config, args.phone))
            if args.consent_command == "rebuild":
                return asyncio.run(rebuild(config))
            return asyncio.run(export(config, args.program, args.since, args.format))
        if args.command == "messages":
            from gateway import messages_cli

            if args.messages_command == "show":
                return asyncio.run(messages_cli.show(config, args.id))
            try:
                return asyncio.run(messages_cli.tail(
                    config, lines=args.lines, follow=args.follow,
                    mask_numbers=config.logging.mask_phone_numbers))
            except KeyboardInterrupt:
                return 0
        if args.command == "campaign":
            return asyncio.run(_campaign(config, args))
        if args.command == "profiles":
            from gateway.profiles_cli import erase, import_file

            if args.profiles_command == "import":
                return import_file(config, args)
            return asyncio.run(erase(config, args.phone))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except GatewayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    raise AssertionError(f"unhandled command {args.command}")  # argparse enforces the choices


def _serve(config: Config) -> int:
    from gateway.daemon import serve

    try:
        asyncio.run(serve(config))
    except OSError as exc:
        svc = config.service
        print(f"error: cannot listen on {svc.host}:{svc.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 1
    return 0


async def _migrate(config: Config) -> int:
    from gateway.db import Database

    db = await Database.open(config.database_path(),
                             busy_timeout_ms=config.database.busy_timeout_ms)
    await db.close()
    logging.getLogger("gateway.cli").info("database %s is up to date", config.database_path())
    return 0


async def _simulate(config: Config, args: argparse.Namespace) -> int:
    import aiohttp

    from gateway.simulate import simulate

    try:
        reply = await simulate(config, from_number=args.from_number, text=args.text,
                               to=args.to, base_url=args.url)
    except (aiohttp.ClientError, TimeoutError) as exc:
        target = args.url or config.service.public_url
        print(f"error: cannot reach the gateway at {target}: {exc or type(exc).__name__}",
              file=sys.stderr)
        return 1
    if args.raw or reply.status >= 400:
        print(f"HTTP {reply.status} {reply.content_type}")
        if reply.body:
            print(reply.body)
        return 0 if reply.status < 400 else 1
    texts = reply.messages()
    for text in texts:
        print(f"< {text}")
    if not texts:
        print("(no reply)")
    return 0


async def _campaign(config: Config, args: argparse.Namespace) -> int:
    from gateway import campaigns_cli as cli

    action, url = args.campaign_command, args.url
    if action == "create":
        cli.print_campaign(await cli.call(config, "POST", "/api/v1/campaigns",
                                          cli.read_definition(args.file), url))
    elif action == "list":
        query = f"?status={args.status}" if args.status else ""
        found = await cli.call(config, "GET", f"/api/v1/campaigns{query}", url=url)
        cli.print_list(found["campaigns"])
    elif action == "show":
        shown = await cli.call(config, "GET", f"/api/v1/campaigns/{args.id}", url=url)
        stats = await cli.call(config, "GET", f"/api/v1/campaigns/{args.id}/stats", url=url)
        cli.print_show(shown, stats)
    elif action == "preview":
        print(json.dumps(await cli.call(config, "POST", f"/api/v1/campaigns/{args.id}/preview",
                                        url=url), indent=2, ensure_ascii=False))
    elif action == "schedule":
        schedule: dict[str, object] | None = None
        if args.now:
            schedule = {"now": True}
        elif args.at:
            schedule = {"at": args.at}
        elif args.cron:
            schedule = {"cron": args.cron}
        elif args.local_time:
            schedule = {"local_time": args.local_time, "date": args.date}
        if schedule is not None and args.time_zone:
            schedule["time_zone"] = args.time_zone
        cli.print_campaign(await cli.call(
            config, "POST", f"/api/v1/campaigns/{args.id}/schedule", schedule, url))
    else:
        cli.print_campaign(await cli.call(
            config, "POST", f"/api/v1/campaigns/{args.id}/{action}", url=url))
    return 0
