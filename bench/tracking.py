"""First-party tracking (#21): the open pixel and the click redirect, the platform's hottest
public URLs, against a bare Starlette echo floor measured in the same run.

The floor (`create_echo_app`, served by the web process's own uvicorn command line) is one
GET route answering the same 43-byte GIF and nothing else: no token, no Redis. The system is
the Procfile's web line with tracking configured; each request verifies a signed token, judges
the user agent, stores one event (an append through the shared pipeline) and answers. wrk
cycles through distinct tokens (signed here with the server's key, as POST /api/tracking
would), so that nearly every request stores an event rather than meeting the same-second
de-duplication.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.common import API_KEY, base_env, median, run_wrk, sync_redis, web
from service.core.accounts import DEFAULT_ACCOUNT
from service.core.tracking import CLICK, OPEN, PIXEL_GIF, Claims, Signer
from service.storage import keys

Table = list[str]
TRACKING_KEY = "bench-tracking-key-0123456789abcdef0123"
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
TARGET = "https://shop.example.com/spring-sale?utm_source=email&utm_campaign=spring"


def create_echo_app() -> Starlette:
    """The floor: a GET route answering a tiny body (the pixel), nothing more."""

    async def echo(request: Request) -> Response:
        return Response(PIXEL_GIF, media_type="image/gif")

    return Starlette(routes=[Route("/t/{kind}/{token}", echo, methods=["GET"])])


def paths(kind: str, count: int, tag: str) -> list[str]:
    """`count` distinct tracking paths of `kind` (distinct emails, as a campaign's)."""
    signer = Signer([TRACKING_KEY])
    issued = int(time.time()) - 3600  # sent an hour ago: no click is early
    made = []
    for number in range(count):
        claims = Claims(
            kind,
            DEFAULT_ACCOUNT,
            f"msg_{tag}_{number}",
            f"reader{number}@example.com",
            issued,
            TARGET if kind == CLICK else "",
        )
        made.append(f"/t/{kind}/{signer.sign(claims)}")
    return made


def wrk_script(request_paths: list[str]) -> str:
    """Each thread cycles through the paths from its own offset, with a browser's agent."""
    return "\n".join(
        [
            "local paths = {",
            *(f"'{p}'," for p in request_paths),
            "}",
            # tid is a global: thread:set() sets the thread's global, which a local would hide
            # (every thread would then send the same paths).
            "local threads, i = 0, 0",
            "setup = function(thread) threads = threads + 1; thread:set('tid', threads) end",
            "request = function()",
            f"  i = i + 1; local k = ((i - 1) * 2 + tid - 1) % {len(request_paths)} + 1",
            f"  return wrk.format('GET', paths[k], {{['User-Agent'] = '{BROWSER}'}})",
            "end",
        ]
    )


def bench_tracking(s: Any) -> tuple[Table, dict[str, Any]]:
    seconds = s.pick(2, 5)
    rounds = s.pick(2, 3)
    count = s.pick(5_000, 20_000)
    env = base_env(
        s.redis_url,
        PUBLIC_URL="https://t.example.com",
        TRACKING_SIGNING_KEY=TRACKING_KEY,
        API_KEYS=API_KEY,
    )
    per: dict[str, list[dict[str, float]]] = {"floor": [], "open": [], "click": []}
    stored_before = _stored(s.redis_url)
    with web(env, app="bench.tracking:create_echo_app") as floor_url, web(env) as system_url:
        warm = paths(OPEN, 100, "warm")
        run_wrk(floor_url, wrk_script(warm), seconds=1)
        run_wrk(system_url, wrk_script(warm), seconds=1)
        for number in range(rounds):
            tag = f"r{number}{uuid.uuid4().hex[:6]}"
            opens, clicks = paths(OPEN, count, tag), paths(CLICK, count, tag)
            for name, url, request_paths in (
                ("floor", floor_url, opens),
                ("open", system_url, opens),
                ("click", system_url, clicks),
            ):
                result = run_wrk(url, wrk_script(request_paths), seconds=seconds)
                if result["non2xx"] and name != "click":
                    raise RuntimeError(f"{name}: {result['non2xx']:.0f} answers were not 2xx")
                per[name].append(result)
                print(
                    f"  tracking round {number + 1} {name}: {result['rps']:7.0f} req/s "
                    f"p99 {result['p99_ms']:.1f} ms",
                    flush=True,
                )
    stored = _stored(s.redis_url) - stored_before
    requests = sum(r["requests"] for name in ("open", "click") for r in per[name])
    med = {
        name: {key: median([r[key] for r in runs]) for key in ("rps", "p50_ms", "p99_ms")}
        for name, runs in per.items()
    }
    floor = med["floor"]
    table = [
        f"wrk -t2 -c50 -d{seconds}s, {rounds} rounds alternating floor/open/click; medians. "
        f"{count:,} distinct signed tokens per kind and round (distinct emails and "
        "recipients), a browser's User-Agent. Floor: bench/tracking.py's echo app, a bare "
        "Starlette GET route answering the same 43-byte GIF under the same uvicorn command "
        "line, no token, no Redis. System: the Procfile's web line: verify the token, judge "
        "the agent, append the event, answer (the pixel; a 302 for the click).",
        "",
        "| target | req/s | p50 ms | p99 ms | req/s vs floor | p99 vs floor | rounds req/s |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, label in (
        ("floor", "floor: bare Starlette echo (GET, 43-byte body)"),
        ("open", "GET /t/o/{token} (pixel, records email.open)"),
        ("click", "GET /t/c/{token} (302, records email.click)"),
    ):
        m = med[name]
        table.append(
            f"| {label} | {m['rps']:,.0f} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | "
            f"{m['rps'] / floor['rps']:.2f} | {m['p99_ms'] / floor['p99_ms']:.2f} | "
            + ", ".join(f"{r['rps']:,.0f}" for r in per[name])
            + " |"
        )
    met = {name: med[name]["rps"] >= 0.75 * floor["rps"] for name in ("open", "click")}
    table += [
        "",
        f"Events stored: {stored:,} for {requests:,.0f} requests answered (wrk counts the "
        "answered; a token requested twice within a second would be one event).",
        "",
        "Goal >= 0.75x floor req/s: "
        + "; ".join(f"{name}: {'met' if ok else 'MISSED'}" for name, ok in met.items())
        + ".",
    ]
    return table, {"rounds": per, "median": med, "stored": stored, "requests": requests}


def _stored(redis_url: str) -> int:
    client = sync_redis(redis_url)
    try:
        streams = [keys.events_stream(p) for p in keys.partitioning().all()]
        return sum(cast(int, client.xlen(stream)) for stream in streams)
    finally:
        client.close()
