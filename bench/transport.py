"""HTTP delivery throughput of three client stacks against a fast local receiver.

    python -m bench.transport [--seconds 5] [--rounds 3] [--concurrency 50]

A: plain httpx.AsyncClient; B: the service's client (worker.http.WebhookClient: httpx requests over
httpx-aiohttp's AiohttpTransport); C: raw aiohttp.ClientSession, the floor B builds on. Each
POSTs the same signed ~350-byte JSON body to bench.receiver (a separate process, 127.0.0.1)
with `concurrency` workers looping. Rounds alternate A B C A B C …; each round uses a fresh
client, warms up for 0.5 s, then counts completed requests for `seconds`. Reports the median
requests/s per stack and writes bench/results-transport.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from config import Config
from service.core.signing import delivery_headers
from worker.http import USER_AGENT, WebhookClient

RESULTS = Path(__file__).with_name("results-transport.json")
WARMUP_SECONDS = 0.5
BODY = (
    b'{"id":"evt_1772532000000-0","type":"email.bounce","created_at":"2026-03-03T08:15:01Z",'
    b'"data":{"email_id":"msg_abc123def456","recipient":"invalid@example.com",'
    b'"timestamp":"2026-03-03T08:15:00Z","provider":"sendgrid","metadata":{"campaign":'
    b'"spring-sale","customer":"cus_0042"},"bounce":{"kind":"hard","reason":'
    b'"550 5.1.1 unknown user"}}}'
)
HEADERS = delivery_headers(
    secret="whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3",  # fixed: reproducible signatures
    delivery_id="dlv_0000000000000000",
    timestamp=1772532001,
    body=BODY,
    user_agent=USER_AGENT,
)

Send = Callable[[], Awaitable[None]]
Stack = Callable[[str], AbstractAsyncContextManager[Send]]


def check(status: int, content: bytes) -> None:
    if status != 200 or content != b"ok":
        raise RuntimeError(f"unexpected response {status} {content[:40]!r}")


@contextlib.asynccontextmanager
async def httpx_plain(url: str) -> AsyncIterator[Send]:
    async with httpx.AsyncClient(timeout=15.0, headers={"user-agent": USER_AGENT}) as client:

        async def send() -> None:
            response = await client.post(url, content=BODY, headers=HEADERS)
            check(response.status_code, response.content)

        yield send


@contextlib.asynccontextmanager
async def httpx_aiohttp_service(url: str) -> AsyncIterator[Send]:
    client = WebhookClient(Config(allow_private_urls=True, allow_http_urls=True))
    try:

        async def send() -> None:
            async with client.post(url, HEADERS, BODY) as response:
                check(response.status_code, await response.aread())

        yield send
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def aiohttp_raw(url: str) -> AsyncIterator[Send]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15.0)) as session:

        async def send() -> None:
            async with session.post(url, data=BODY, headers=HEADERS) as response:
                check(response.status, await response.read())

        yield send


STACKS: dict[str, tuple[str, Stack]] = {
    "A": ("httpx.AsyncClient (default transport)", httpx_plain),
    "B": (
        "httpx requests over AiohttpTransport (worker.http.WebhookClient)",
        httpx_aiohttp_service,
    ),
    "C": ("aiohttp.ClientSession (raw)", aiohttp_raw),
}


async def hammer(send: Send, seconds: float, concurrency: int) -> tuple[int, float]:
    """`concurrency` workers send until `seconds` have passed: (requests done, elapsed)."""
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> int:
        done = 0
        while time.perf_counter() < deadline:
            await send()
            done += 1
        return done

    async with asyncio.timeout(seconds + 30):  # a stalled receiver cannot hang the benchmark
        counts = await asyncio.gather(*(worker() for _ in range(concurrency)))
    return sum(counts), time.perf_counter() - started


async def run_round(stack: Stack, url: str, seconds: float, concurrency: int) -> dict[str, float]:
    async with stack(url) as send:
        await hammer(send, WARMUP_SECONDS, concurrency)
        requests, elapsed = await hammer(send, seconds, concurrency)
    return {"requests": requests, "seconds": round(elapsed, 4), "rps": requests / elapsed}


@contextlib.contextmanager
def receiver() -> Iterator[tuple[str, str]]:
    """Start bench.receiver on a free port; yield (url, its event loop); always stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.receiver", "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # Ctrl-C reaches only us; we stop it below
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().split()  # "listening PORT LOOP"
        if len(line) != 3 or line[0] != "listening":
            raise RuntimeError(f"receiver failed to start (exit code {process.poll()})")
        yield f"http://127.0.0.1:{line[1]}/webhook", line[2]
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo")
    models = [
        line.split(":", 1)[1].strip()
        for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
        if line.startswith("model name")
    ]
    try:
        importlib.import_module("sniffio")  # httpcore uses it when present
    except ImportError:
        has_sniffio = False
    else:
        has_sniffio = True
    packages = ("httpx", "httpcore", "aiohttp", "httpx-aiohttp", "httptools", "uvloop")
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": models[0] if models else platform.processor(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": os.getloadavg(),
        "sniffio_importable": has_sniffio,
        "packages": versions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()

    info = machine()
    print(
        f"machine: {info['cpu_count']} CPU x {info['cpu_model']}, Python {info['python']}, "
        + ", ".join(f"{k} {v}" for k, v in info["packages"].items())
    )
    print(f"sniffio importable: {info['sniffio_importable']}; body {len(BODY)} bytes")

    per_round: dict[str, list[dict[str, float]]] = {key: [] for key in STACKS}
    with receiver() as (url, receiver_loop):
        print(f"receiver: {url} ({receiver_loop}); client loop: asyncio")
        for number in range(1, args.rounds + 1):
            for key, (_, stack) in STACKS.items():
                result = asyncio.run(run_round(stack, url, args.seconds, args.concurrency))
                per_round[key].append(result)
                print(f"  round {number} {key}: {result['rps']:8.0f} req/s", flush=True)

    median = {key: statistics.median(r["rps"] for r in rounds) for key, rounds in per_round.items()}
    print(
        f"\n{args.concurrency} in flight, {args.seconds:g} s x {args.rounds} rounds, "
        "median requests/s:\n"
    )
    print("| stack | client | median req/s | rounds | vs C |")
    print("|---|---|---:|---|---:|")
    for key, (label, _) in STACKS.items():
        rounds = ", ".join(f"{r['rps']:.0f}" for r in per_round[key])
        print(
            f"| {key} | {label} | {median[key]:.0f} | {rounds} | {median[key] / median['C']:.2f} |"
        )
    print(f"\nB / A = {median['B'] / median['A']:.2f}")

    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": info,
                "parameters": {
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "concurrency": args.concurrency,
                    "warmup_seconds": WARMUP_SECONDS,
                    "body_bytes": len(BODY),
                    "receiver_loop": receiver_loop,
                    "client_loop": "asyncio",
                },
                "stacks": {key: label for key, (label, _) in STACKS.items()},
                "median_rps": median,
                "ratio_to_C": {key: median[key] / median["C"] for key in STACKS},
                "rounds": per_round,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
