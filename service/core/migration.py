"""Moving a deployment's configuration to another partitioning (`mailhooks migrate`: a single
Redis to a Redis Cluster, docs/operations.md#moving-to-a-cluster): which webhook ids carry
over, where the id sequences start afterwards, and what a run reports.

A webhook lives in its account's partition and its id names that partition (`id % count`,
service.core.partitions). An id of the source that does not name its account's partition
among the target's is given a new one there, and the old id stays an alias of it. Ids the
source issued after the first run (`ceiling`) are always given new ones: the target may have
issued the same numbers meanwhile.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from service.core.partitions import Partitioning


def keeps_id(webhook_id: int, account: str, target: Partitioning, *, ceiling: int) -> bool:
    """Whether the webhook keeps its id on the target: the id names its account's partition
    there, and no id the target issues can be the same (it is at most `ceiling`)."""
    return webhook_id <= ceiling and target.of_webhook(webhook_id) == target.of_account(account)


def id_ceiling(sequences: Mapping[int, int], source: Partitioning) -> int:
    """The highest webhook id the source can have issued, from each of its partitions'
    sequence (partition → value; 0 or absent: none issued)."""
    return max((source.webhook_id(value, p) for p, value in sequences.items() if value), default=0)


def sequence_floor(ceiling: int, target: Partitioning) -> int:
    """The least value every target sequence must have so that each id it issues next is
    above `ceiling`: `target.webhook_id(floor + 1, p) > ceiling` for every partition p."""
    return ceiling // target.count


class RenamedWebhook(msgspec.Struct, kw_only=True):
    account_id: str
    old_id: int
    new_id: int


class MigrationReport(msgspec.Struct, kw_only=True):
    """What one run copied (or, with `dry_run`, would copy); `renamed` the webhooks given a
    new id (with `dry_run`, the ids a run now would give those not renamed yet)."""

    dry_run: bool
    partitions: int
    id_ceiling: int
    accounts: int = 0
    api_keys: int = 0
    webhooks: int = 0
    email_registrations: int = 0
    suppressions: int = 0
    renamed: list[RenamedWebhook] = msgspec.field(default_factory=list)
    skipped: list[str] = msgspec.field(default_factory=list)  # what was not copied, and why
