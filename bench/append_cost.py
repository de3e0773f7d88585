"""Redis time per one-event append with the stream at maxlen and a group keeping up.

`.venv/bin/python -m bench.append_cost`: a private Redis, 20,000 appends through
`EventStore.append` after a warm-up past maxlen, acknowledging as a worker would; prints the
µs of Redis time per append for three runs: the append scripts and the background trims'
reads and scripts (EVALSHA, XLEN, XINFO GROUPS, XPENDING, XRANGE), over the appends.
Compare checkouts by running it in each.
"""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from devtools.redis_server import PrivateRedis
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.models import Event
from service.storage import keys
from service.storage.events import EventStore

MAXLEN = 1000
APPENDS = 20_000


def event(n: int) -> Event:
    return Event(
        type="email.open",
        email_id=f"msg_{n}",
        recipient=f"user{n}@example.com",
        occurred_at="2026-03-03T10:00:00Z",
        provider="sendgrid",
        provider_event_id=f"sg-{n}",
        account_id=DEFAULT_ACCOUNT,
    )


# The one stream of a single Redis (one partition, as this benchmark runs).
STREAM = keys.events_stream(0)


async def acknowledge_all(redis: Redis) -> None:
    while response := await redis.xreadgroup(
        keys.DELIVERY_GROUP, "bench", {STREAM: ">"}, count=1000
    ):
        await redis.xack(STREAM, keys.DELIVERY_GROUP, *[i for i, _ in response[0][1]])


async def one_run(url: str) -> float:
    redis = Redis.from_url(url)
    await redis.flushall()
    await redis.xgroup_create(STREAM, keys.DELIVERY_GROUP, id="0", mkstream=True)
    store = EventStore(redis, maxlen=MAXLEN, dedup_ttl_seconds=60)
    for n in range(MAXLEN + 100):
        await store.append("sendgrid", [event(n)])
    await acknowledge_all(redis)
    await redis.config_resetstat()
    for n in range(MAXLEN + 100, MAXLEN + 100 + APPENDS):
        await store.append("sendgrid", [event(n)])
        if n % 500 == 0:
            await acknowledge_all(redis)
    await store.drain()
    stats = await redis.info("commandstats")
    await redis.aclose()
    trimming = ("cmdstat_xlen", "cmdstat_xinfo|groups", "cmdstat_xpending", "cmdstat_xrange")
    usec = sum(
        float(stats[name]["usec"]) for name in ("cmdstat_evalsha", *trimming) if name in stats
    )
    return usec / APPENDS


def main() -> None:
    with PrivateRedis(durable=False) as server:
        runs = [asyncio.run(one_run(server.url)) for _ in range(3)]
    print("µs of Redis time per one-event append at maxlen:", ", ".join(f"{r:.1f}" for r in runs))


if __name__ == "__main__":
    main()
