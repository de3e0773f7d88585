"""`mailhooks`: the command line, its arguments, and what it prints and exits with.

Exit codes: 0 done; 1 an error (a bad configuration, Redis unreachable or refusing, no such
account, delivery or dead letter, an attempt under way), said in one line on stderr without a
traceback; 2 a usage error (argparse's). `--json`, before or after the command, prints the
result as JSON for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import msgspec
import redis.exceptions

from config import Config, ConfigError
from service import __version__
from service.cli import commands, migrate
from service.cli.commands import Context, Output
from service.core.accounts import is_account_id
from service.core.errors import MailhooksError
from service.core.ids import dead_letter_entry, parse_timestamp
from service.core.partitions import Partitioning
from service.storage import keys
from service.storage.connection import connect

Command = Callable[[Context, argparse.Namespace], Awaitable[Output]]


def since(text: str) -> datetime:
    moment = parse_timestamp(text)
    if moment is None:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}")
    return moment


def account_id(text: str) -> str:
    if not is_account_id(text):
        raise argparse.ArgumentTypeError(f"not an account id (acc_…): {text!r}")
    return text


def account_name(text: str) -> str:
    if not 1 <= len(text) <= 200:
        raise argparse.ArgumentTypeError("a name has 1 to 200 characters")
    return text


def dead_letter_id(text: str) -> str:
    if dead_letter_entry(text) is None:
        raise argparse.ArgumentTypeError(f"not a dead letter id (dl_…): {text!r}")
    return text


def page_size(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 1000):
        raise argparse.ArgumentTypeError("a number from 1 to 1000")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    # --json is accepted after the command too: each subcommand's copy leaves the top-level
    # value alone unless given (SUPPRESS).
    json_after = argparse.ArgumentParser(add_help=False)
    json_after.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="mailhooks",
        description="Operate a mailhooks deployment: reads REDIS_URL and the other settings "
        "from the environment, as the web and worker processes do.",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--version", action="version", version=f"mailhooks {__version__}")
    nouns = parser.add_subparsers(dest="noun", required=True, metavar="COMMAND")

    def command(
        parent: argparse._SubParsersAction[argparse.ArgumentParser],
        name: str,
        run: Command,
        summary: str,
    ) -> argparse.ArgumentParser:
        sub = parent.add_parser(name, help=summary, description=summary, parents=[json_after])
        sub.set_defaults(run=run)
        return sub

    def group(name: str, summary: str) -> argparse._SubParsersAction[argparse.ArgumentParser]:
        sub = nouns.add_parser(name, help=summary, description=summary)
        return sub.add_subparsers(dest="verb", required=True, metavar="ACTION")

    command(nouns, "status", commands.status, "worker, backlog, dead letters, Redis memory")

    accounts = group("accounts", "customer accounts")
    create = command(accounts, "create", commands.create_account, "create one; prints its id")
    create.add_argument("name", type=account_name)
    command(accounts, "list", commands.list_accounts, "every account, oldest first")

    keys = group("keys", "accounts' API keys")
    create_key = command(keys, "create", commands.create_key, "a new key; printed this once")
    create_key.add_argument("account", type=account_id, metavar="ACCOUNT")

    webhooks = group("webhooks", "registered endpoints")
    list_webhooks = command(webhooks, "list", commands.list_webhooks, "every webhook, by id")
    list_webhooks.add_argument("--account", type=account_id, help="only this account's")

    deliveries = group("deliveries", "deliveries of events to webhooks")
    retry = command(deliveries, "retry", commands.retry_delivery, "attempt a delivery again now")
    retry.add_argument("delivery_id", metavar="ID")

    recover = command(
        nouns, "recover", commands.recover, "re-queue a webhook's failed deliveries since a time"
    )
    recover.add_argument("--webhook", type=int, required=True, metavar="ID")
    recover.add_argument("--since", type=since, required=True, metavar="TIME")

    letters = group("dead-letters", "events the worker could not process, set aside")
    list_letters = command(letters, "list", commands.list_dead_letters, "newest first")
    list_letters.add_argument("--limit", type=page_size, default=100)
    list_letters.add_argument("--before", type=dead_letter_id, help="older than this one")
    show = command(letters, "show", commands.show_dead_letter, "one, with its original fields")
    show.add_argument("dead_letter_id", type=dead_letter_id, metavar="ID")
    redrive = command(
        letters,
        "redrive",
        commands.redrive_dead_letters,
        "append one (ID) or all (or --since TIME) to the events stream again, as new events",
    )
    redrive.add_argument("dead_letter_id", type=dead_letter_id, nargs="?", metavar="ID")
    redrive.add_argument("--since", type=since, metavar="TIME", help="set aside since then")
    delete = command(letters, "delete", commands.delete_dead_letter, "delete one")
    delete.add_argument("dead_letter_id", type=dead_letter_id, metavar="ID")
    moving = command(
        nouns,
        "migrate",
        migrate.migrate,
        "copy accounts, keys, webhooks, email registrations and suppressions to another Redis "
        "(a cluster), keys named for its partitions; never writes to REDIS_URL's",
    )
    migrate.add_arguments(moving)
    return parser


async def run(config: Config, args: argparse.Namespace) -> Output:
    keys.use(Partitioning(config.event_partitions))
    client = connect(config)
    try:
        run_command: Command = args.run
        return await run_command(Context.create(client, config), args)
    finally:
        await client.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on a usage error
    if getattr(args, "dead_letter_id", None) and getattr(args, "since", None):
        parser.error("give a dead letter ID or --since, not both")
    try:
        config = Config.from_env()
    except ConfigError as exc:
        return fail(str(exc))
    try:
        output = asyncio.run(run(config, args))
    except MailhooksError as exc:
        return fail(exc.message)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        return fail(f"cannot reach Redis at {config.redis_url_redacted}: {exc}")
    except redis.exceptions.RedisError as exc:
        return fail(f"Redis refused: {exc}")
    if args.json:
        sys.stdout.write(msgspec.json.encode(output.data).decode() + "\n")
    else:
        if output.text:
            sys.stdout.write(output.text + "\n")
        if output.note:
            sys.stderr.write(output.note + "\n")
    return 0


def fail(message: str) -> int:
    sys.stderr.write(f"mailhooks: {message}\n")
    return 1
