"""What each `mailhooks` command does: through the stores, on the one Redis client of the
run. Each returns an `Output`: the data `--json` prints and the text people read. Expected
failures (no such account, an attempt under way) raise the service's own errors
(service.core.errors), which `main` prints without a traceback."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Any

import msgspec

from config import Config
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.clock import Clock, system_clock
from service.core.errors import Conflict, NotFound
from service.core.event_types import format_event_types
from service.core.ids import LeaseTag, epoch_ms, format_timestamp
from service.core.models import (
    DeadLetterList,
    RecoverResult,
    Redriven,
    RedriveResult,
    ServiceStatus,
)
from service.storage.accounts import AccountStore, StoredAccount
from service.storage.connection import RedisClient
from service.storage.dead_letters import DeadLetterStore, NothingToRedrive
from service.storage.deliveries import DeliveryStore, lease_ms
from service.storage.retries import RetrySchedule, recover_failed, requeue_delivery
from service.storage.status import StatusStore
from service.storage.webhooks import StoredWebhook, WebhookStore

PAGE = 1000  # accounts and webhooks are read this many at a time


@dataclass(frozen=True, slots=True)
class Output:
    data: Any  # what --json prints: anything msgspec encodes
    text: str  # what people read
    note: str = ""  # said to people on stderr, so that stdout stays the value alone


@dataclass(frozen=True, slots=True)
class Context:
    """The stores of one run, over one Redis client."""

    config: Config
    redis: RedisClient
    accounts: AccountStore
    webhooks: WebhookStore
    deliveries: DeliveryStore
    dead_letters: DeadLetterStore
    status: StatusStore
    retries: RetrySchedule
    clock: Clock

    @classmethod
    def create(cls, redis: RedisClient, config: Config, clock: Clock = system_clock) -> Context:
        return cls(
            config=config,
            redis=redis,
            accounts=AccountStore(redis),
            webhooks=WebhookStore(redis),
            deliveries=DeliveryStore(redis),
            dead_letters=DeadLetterStore(redis),
            status=StatusStore(redis),
            retries=RetrySchedule(redis),
            clock=clock,
        )

    def now_ms(self) -> int:
        return epoch_ms(self.clock())


# -- status -----------------------------------------------------------------------------


async def status(ctx: Context, args: argparse.Namespace) -> Output:
    report = await ctx.status.report(ctx.config, ctx.clock)
    return Output(report, status_text(report))


def status_text(report: ServiceStatus) -> str:
    lines = [report.status, *(f"  problem: {problem}" for problem in report.problems)]
    worker = report.worker
    alive = f"alive, last heartbeat {worker.last_heartbeat}" if worker.alive else "none alive"
    events = report.events
    oldest = ""
    if events.oldest_in_progress_at is not None:
        oldest = f" (oldest from {events.oldest_in_progress_at})"
    undelivered = "unknown" if events.undelivered is None else str(events.undelivered)
    memory = report.redis_memory
    limit = "no maxmemory"
    if memory.max_bytes is not None:
        limit = f"{_mib(memory.max_bytes)} maxmemory ({memory.used_fraction or 0:.0%})"
    lines += [
        f"worker        {alive}",
        f"events        {events.stored} stored, {undelivered} undelivered, "
        f"{events.in_progress} in progress{oldest}",
        f"dead letters  {events.dead_letters} (unreadable entries seen: {events.unreadable})",
        f"redis memory  {_mib(memory.used_bytes)} used of {limit}",
    ]
    return "\n".join(lines)


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


# -- accounts and keys ------------------------------------------------------------------


async def create_account(ctx: Context, args: argparse.Namespace) -> Output:
    account = await ctx.accounts.create_new(args.name, now=ctx.clock())
    return Output(account, account.id)


async def list_accounts(ctx: Context, args: argparse.Namespace) -> Output:
    found = await all_accounts(ctx)
    text = "\n".join(f"{a.id}  {a.created_at}  {a.name}" for a in found)
    return Output({"accounts": found}, text, note="" if found else "no accounts")


async def all_accounts(ctx: Context) -> list[StoredAccount]:
    found: list[StoredAccount] = []
    after: str | None = None
    while True:
        page, after = await ctx.accounts.list(after=after, limit=PAGE)
        found += page
        if after is None:
            return found


async def existing_account(ctx: Context, account_id: str) -> None:
    if account_id != DEFAULT_ACCOUNT and await ctx.accounts.get(account_id) is None:
        raise NotFound(f"account {account_id} does not exist")


async def create_key(ctx: Context, args: argparse.Namespace) -> Output:
    if await ctx.accounts.get(args.account) is None:
        raise NotFound(f"account {args.account} does not exist")
    created = await ctx.accounts.issue_key(args.account, now=ctx.clock())
    note = f"key {created.id} of {args.account}: shown this once, stored only as a hash"
    return Output(created, created.key, note=note)


# -- webhooks, deliveries ---------------------------------------------------------------


async def list_webhooks(ctx: Context, args: argparse.Namespace) -> Output:
    if args.account is not None:
        await existing_account(ctx, args.account)
        accounts = [args.account]
    else:
        # The default account's webhooks may predate its account record (no migration).
        accounts = list(dict.fromkeys([a.id for a in await all_accounts(ctx)] + [DEFAULT_ACCOUNT]))
    found: list[StoredWebhook] = []
    for account in accounts:
        after = 0
        while True:
            page, next_after = await ctx.webhooks.list(account, after=after, limit=PAGE)
            found += page
            if next_after is None:
                break
            after = next_after
    found.sort(key=lambda webhook: webhook.id)
    shown = [_webhook(webhook) for webhook in found]  # never the secret
    text = "\n".join(
        f"{w['id']}  {w['account_id']}  {_state(w)}  {w['events']}  {w['url']}" for w in shown
    )
    return Output({"webhooks": shown}, text, note="" if shown else "no webhooks")


def _webhook(webhook: StoredWebhook) -> dict[str, Any]:
    return {
        "id": webhook.id,
        "account_id": webhook.account,
        "url": webhook.url,
        "events": format_event_types(webhook.events),
        "active": webhook.active,
        "disabled_reason": None if webhook.active else webhook.disabled_reason,
        "created_at": webhook.created_at,
        "rate_limit": webhook.rate_limit,
    }


def _state(webhook: dict[str, Any]) -> str:
    if webhook["active"]:
        return "active"
    reason = webhook["disabled_reason"]
    return f"disabled ({reason})" if reason else "inactive"


async def retry_delivery(ctx: Context, args: argparse.Namespace) -> Output:
    delivery = await ctx.deliveries.get(args.delivery_id)
    if delivery is None:
        raise NotFound(f"delivery {args.delivery_id} does not exist")
    if not await requeue_delivery(
        ctx.deliveries,
        ctx.retries,
        delivery,
        LeaseTag.MANUAL_RETRY,
        now_ms=ctx.now_ms(),
        lease_ms=lease_ms(ctx.config),
    ):
        raise Conflict(f"delivery {delivery.id} is being attempted already")
    text = f"delivery {delivery.id} re-queued: a worker attempts it now"
    return Output({"id": delivery.id, "webhook_id": delivery.webhook_id, "requeued": True}, text)


async def recover(ctx: Context, args: argparse.Namespace) -> Output:
    if await ctx.webhooks.get(args.webhook) is None:
        raise NotFound(f"webhook {args.webhook} does not exist")
    requeued = await recover_failed(
        ctx.deliveries,
        ctx.retries,
        args.webhook,
        since_ms=epoch_ms(args.since),
        now_ms=ctx.now_ms(),
        lease_ms=lease_ms(ctx.config),
    )
    since = format_timestamp(args.since)
    text = f"{requeued} failed deliveries of webhook {args.webhook} since {since} re-queued"
    return Output(RecoverResult(requeued=requeued), text)


# -- dead letters -----------------------------------------------------------------------


async def list_dead_letters(ctx: Context, args: argparse.Namespace) -> Output:
    found, _ = await ctx.dead_letters.page(before=args.before, limit=args.limit)
    letters = [letter.public() for letter in found]
    text = "\n".join(
        f"{d.id}  {d.dead_lettered_at}  {d.reason}  {d.event_id}  "
        f"{d.account_id or '-'}  {d.event.type if d.event else '-'}  {d.detail}"
        for d in letters
    )
    note = "" if letters else "no dead letters"
    return Output(DeadLetterList(dead_letters=letters), text, note=note)


async def show_dead_letter(ctx: Context, args: argparse.Namespace) -> Output:
    letter = await ctx.dead_letters.get(args.dead_letter_id)
    if letter is None:
        raise NotFound(f"dead letter {args.dead_letter_id} does not exist")
    shown = letter.public(with_fields=True)
    return Output(shown, json.dumps(msgspec.to_builtins(shown), indent=2, ensure_ascii=False))


async def redrive_dead_letters(ctx: Context, args: argparse.Namespace) -> Output:
    if args.dead_letter_id is None:
        since_ms = None if args.since is None else epoch_ms(args.since)
        redriven = await ctx.dead_letters.redrive_all(since_ms=since_ms)
        return Output(RedriveResult(redriven=redriven), f"{redriven} dead letters redriven")
    try:
        event_id = await ctx.dead_letters.redrive(args.dead_letter_id)
    except NothingToRedrive as exc:
        raise Conflict(str(exc)) from None
    if event_id is None:
        raise NotFound(f"dead letter {args.dead_letter_id} does not exist")
    text = f"dead letter {args.dead_letter_id} redriven as event {event_id}"
    return Output(Redriven(event_id=event_id), text)


async def delete_dead_letter(ctx: Context, args: argparse.Namespace) -> Output:
    if not await ctx.dead_letters.delete(args.dead_letter_id):
        raise NotFound(f"dead letter {args.dead_letter_id} does not exist")
    return Output({"deleted": args.dead_letter_id}, f"dead letter {args.dead_letter_id} deleted")
