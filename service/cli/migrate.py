"""`mailhooks migrate`: copy the configuration of the deployment REDIS_URL names to another
Redis (a Redis Cluster with --to-cluster), its keys named for --partitions partitions
(docs/operations.md#moving-to-a-cluster). The copy itself is service.storage.migration."""

from __future__ import annotations

import argparse
import dataclasses

from service.cli.commands import Context, Output
from service.core.errors import Conflict
from service.core.ids import format_timestamp
from service.core.migration import MigrationReport
from service.core.partitions import MAX_PARTITIONS, Partitioning
from service.storage.connection import connect
from service.storage.migration import Migration


def partitions(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= MAX_PARTITIONS):
        raise argparse.ArgumentTypeError(f"a number from 1 to {MAX_PARTITIONS}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="URL", help="the Redis to copy to")
    parser.add_argument(
        "--to-cluster", action="store_true", help="it is a Redis Cluster (any node's URL)"
    )
    parser.add_argument(
        "--partitions",
        type=partitions,
        metavar="N",
        help="EVENT_PARTITIONS of the new deployment (default: 16 with --to-cluster, else 1)",
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing; say what would be")


async def migrate(ctx: Context, args: argparse.Namespace) -> Output:
    source = ctx.config
    if args.to == source.redis_url:
        raise Conflict("--to names the Redis REDIS_URL names: copy to another one")
    count = args.partitions or (16 if args.to_cluster else 1)
    target_config = dataclasses.replace(source, redis_url=args.to, redis_cluster=args.to_cluster)
    target = connect(target_config)
    try:
        report = await Migration(
            ctx.redis,
            target,
            source_parts=Partitioning(source.event_partitions),
            target_parts=Partitioning(count),
            dry_run=args.dry_run,
            started_at=format_timestamp(ctx.clock()),
            source_label=source.redis_url_redacted,
        ).run()
    finally:
        await target.aclose()
    return Output(report, report_text(report), note="\n".join(report.skipped))


def report_text(report: MigrationReport) -> str:
    verb = "would copy" if report.dry_run else "copied"
    lines = [
        f"{verb} {report.accounts} accounts, {report.api_keys} API keys, {report.webhooks} "
        f"webhooks, {report.email_registrations} email registrations and "
        f"{report.suppressions} suppressed addresses, keys named for {report.partitions} "
        f"partitions (EVENT_PARTITIONS={report.partitions} on the new deployment)"
    ]
    if report.renamed:
        lines.append(
            "webhook ids changed (old id → new id; the old id keeps working in the management "
            "API and the portal):"
        )
        lines += [f"  {r.old_id} → {r.new_id}  {r.account_id}" for r in report.renamed]
    else:
        lines.append("every webhook keeps its id")
    return "\n".join(lines)
