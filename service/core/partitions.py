"""Partitions of the key space: which partition an account, a webhook or a delivery lives in,
and the hash tag that keeps each partition's keys in one Redis Cluster slot.

With one partition (the default on a single Redis) there is no tag and every key keeps the
name it had before partitions existed, so an upgrade needs no migration. With several (the
default on a cluster: docs/operations.md), every key an account owns (its events stream,
de-duplication keys, indexes, webhooks, subscriber sets, deliveries, suppressions) carries
its partition's tag: each Lua script touches one slot, and the partitions spread over the
slots evenly, so over every shard. The count is fixed for a deployment's life.

An account's partition follows from its id (CRC-32); a webhook's from its id (the id modulo
the count: ids are issued per partition, `webhook_id`); a delivery's from its webhook (its
id ends with the webhook's). So every key name follows from an id the caller has already.
"""

from __future__ import annotations

import functools
import itertools
import zlib

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

MAX_PARTITIONS = 1024


@functools.lru_cache(maxsize=8)
def tags(count: int) -> tuple[str, ...]:
    """One hash tag per partition: the shortest `p{n}.{k}` whose slot falls in the partition's
    equal share of the 16,384 slots, so that a cluster whose masters own contiguous ranges
    (as `redis-cli --cluster create` assigns them) gets an even part of the partitions."""
    if not 1 <= count <= MAX_PARTITIONS:
        raise ValueError(f"partitions must be between 1 and {MAX_PARTITIONS}, not {count}")
    chosen = []
    for partition in range(count):
        low = partition * REDIS_CLUSTER_HASH_SLOTS // count
        high = (partition + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        for k in itertools.count():
            tag = f"p{partition}.{k}"
            if low <= key_slot(tag.encode()) < high:
                chosen.append(tag)
                break
    return tuple(chosen)


class Partitioning:
    """The partitions of one deployment (`EVENT_PARTITIONS`)."""

    __slots__ = ("_tags", "count")

    def __init__(self, count: int = 1) -> None:
        self.count = count
        self._tags = tags(count)

    def of_account(self, account_id: str | None) -> int:
        """An account's partition; unrouted events (no account) are partition 0's."""
        if self.count == 1 or not account_id:
            return 0
        return zlib.crc32(account_id.encode()) % self.count

    def of_webhook(self, webhook_id: int) -> int:
        return webhook_id % self.count

    def of_delivery(self, delivery_id: str) -> int:
        """dlv_{entry id}_{webhook id}: its webhook's partition."""
        return self.of_webhook(int(delivery_id.rsplit("_", 1)[1]))

    def webhook_id(self, sequence: int, partition: int) -> int:
        """The id of the `sequence`th webhook issued in `partition` (from 1): 1, 2, 3 … with
        one partition, as the API page shows; with several, the partition is the id's
        remainder, so the id alone names it."""
        return sequence if self.count == 1 else sequence * self.count + partition

    def prefix(self, partition: int) -> str:
        """What follows `mh:` in the partition's key names: "" with one partition (the names
        from before partitions), else `{tag}:`."""
        return "" if self.count == 1 else "{" + self._tags[partition] + "}:"

    def all(self) -> range:
        return range(self.count)

    def __repr__(self) -> str:
        return f"Partitioning({self.count})"
