"""The delivery floor: `python -m bench.delivery_floor URL COUNT CONCURRENCY [PATHS]`.

A bare asyncio loop in its own process that POSTs COUNT signed webhook payloads (signed per
request, like the worker) through the worker's own client (worker.http.WebhookClient) with
CONCURRENCY requests in flight, spread over PATHS URL paths (`URL/1` … `URL/PATHS`, as the
worker spreads a fan-out over endpoints). Prints `done COUNT SECONDS` as JSON.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import uvloop

from config import Config
from service.core.signing import delivery_headers
from worker.http import USER_AGENT, WebhookClient

SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3"


def body(number: int) -> bytes:
    return (
        b'{"id":"evt_1772532000000-%d","type":"email.open","created_at":"2026-03-03T08:15:01Z",'
        b'"data":{"email_id":"m%d","recipient":"alex@example.com",'
        b'"timestamp":"2026-03-03T08:15:00Z","provider":"generic"}}' % (number, number)
    )


async def run(url: str, count: int, concurrency: int, paths: int) -> dict[str, float]:
    config = Config(allow_private_urls=True, allow_http_urls=True)
    queue = iter(range(count))
    client = WebhookClient(config)
    try:

        async def worker() -> None:
            for number in queue:
                payload = body(number)
                headers = delivery_headers(
                    secret=SECRET,
                    delivery_id=f"dlv_{number}",
                    timestamp=int(time.time()),
                    body=payload,
                    user_agent=USER_AGENT,
                )
                async with client.post(f"{url}/{number % paths + 1}", headers, payload) as response:
                    await response.aread()  # the worker reads the reply's head too
                    if response.status_code != 200:
                        raise RuntimeError(f"unexpected status {response.status_code}")

        started = time.perf_counter()
        cpu_started = process_cpu()
        async with asyncio.timeout(120):
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = process_cpu() - cpu_started
    finally:
        await client.aclose()
    return {
        "count": count,
        "seconds": elapsed,
        "rate": count / elapsed,
        "cpu_ms_per_delivery": cpu * 1000 / count,
    }


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    url, count, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    paths = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    # The worker's own event loop (worker/__main__.py).
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(run(url, count, concurrency, paths))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
