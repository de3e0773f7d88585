"""The soak test's findings: what the receiver recorded against what was acknowledged, what
Redis and the worker's log say, and the markdown table (bench/soak.py runs it all)."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, cast

from bench.common import API_KEY, percentile, sync_redis
from bench.soak_ingest import Ingested
from service.core import ids
from service.storage import keys

CRASHES = ("kill-worker", "restart-redis")
LATE_SECONDS = 60.0
WINDOW_SECONDS = 30.0


def missing(records: dict[str, list[Any]], acknowledged: dict[str, float]) -> list[str]:
    """Acknowledged email ids that never got a 200 from this endpoint."""
    return [e for e in acknowledged if not (e in records and records[e][0] > 0)]


def percentiles(values: list[float]) -> dict[str, float]:
    """count, p50, p99 and max, in milliseconds, of `values` in seconds."""
    return {
        "count": len(values),
        "p50": percentile(values, 50) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": max(values, default=float("nan")) * 1000,
    }


def analyse(
    records: dict[str, dict[str, list[Any]]],
    summary: dict[str, dict[str, Any]],
    ingested: Ingested,
    live: list[int],
    chaos: list[dict[str, Any]],
    started: float,
) -> dict[str, Any]:
    """Per live endpoint: delivered, lost, duplicates, latency; duplicates by the crash
    before them; latency by the 30 s window the event was acknowledged in."""
    acknowledged = ingested.acknowledged
    per: dict[int, dict[str, Any]] = {}
    everything: list[float] = []
    first_try: list[float] = []
    retried: list[float] = []
    windows: dict[int, list[float]] = {}
    lost: list[tuple[int, str]] = []
    duplicate_times: list[float] = []
    for number in live:
        got = records.get(str(number), {})
        gaps = missing(got, acknowledged)
        lost += [(number, email_id) for email_id in gaps]
        mine: list[float] = []
        for email_id, record in got.items():
            duplicate_times += record[4]
            if record[0] and email_id in acknowledged:
                latency = record[2] - acknowledged[email_id]
                mine.append(latency)
                (retried if record[1] else first_try).append(latency)
                window = int((acknowledged[email_id] - started) // WINDOW_SECONDS)
                windows.setdefault(window, []).append(latency)
        everything += mine
        stats = summary.get(str(number), {})
        per[number] = {
            "delivered": len(acknowledged) - len(gaps),
            "lost": len(gaps),
            "duplicates": sum(max(0, record[0] - 1) for record in got.values()),
            "stored_twice": sum(1 for record in got.values() if record[5]),
            "unacknowledged_delivered": sum(
                1 for e, record in got.items() if record[0] and e not in acknowledged
            ),
            "answered_500": int(stats.get("failed", 0)),
            "posts": int(stats.get("posts", 0)),
            "latency_ms": percentiles(mine),
            "late": sum(1 for latency in mine if latency > LATE_SECONDS),
        }
    by_action: Counter[str] = Counter()
    for at in duplicate_times:
        before = [e for e in chaos if e["at"] <= at and e["kind"] in CRASHES]
        by_action[f"{before[-1]['kind']} at {before[-1]['t']} s" if before else "none"] += 1
    return {
        "per_endpoint": per,
        "lost": lost,
        "duplicates_by_preceding_action": dict(by_action),
        "latency_ms": percentiles(everything),
        "first_try_latency_ms": percentiles(first_try),
        "retried_latency_ms": percentiles(retried),
        "latency_by_window_ms": {
            f"{w * WINDOW_SECONDS:.0f}-{(w + 1) * WINDOW_SECONDS:.0f} s": percentiles(values)
            for w, values in sorted(windows.items())
        },
    }


def failure_windows(failures: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """Failed requests grouped into runs with under 2 s between them."""
    windows: list[dict[str, Any]] = []
    for at, what in sorted(failures):
        kind = what.split(" ")[0]
        if windows and at - windows[-1]["to"] < 2:
            windows[-1]["to"] = at
            windows[-1]["what"][kind] += 1
        else:
            windows.append({"from": at, "to": at, "what": Counter([kind])})
    return [{**w, "what": dict(w["what"])} for w in windows]


_EXCEPTION = re.compile(r"^[\w.]+(Error|Exception|Interrupt)\b.*")
_RECLAIMED = re.compile(r"reclaimed (\d+) entries")


def worker_log_stats(path: Path) -> dict[str, Any]:
    """What the worker's log says about recovery: arq loops run again after a Redis outage,
    stream entries reclaimed from dead consumers, deliveries re-queued by the lease sweep,
    and how often a partition's retry set was taken again after it could not be (an
    outage). Retries are our own scheduled set (worker/retries.py), not arq jobs, so how
    late they ran shows in the arrival latency of the deliveries answered 500 first."""
    exceptions: Counter[str] = Counter()  # the last lines of tracebacks
    stats = {
        "arq_loop_restarts": 0,
        "entries_reclaimed": 0,
        "lease_requeues": 0,
        "retry_sets_resumed": 0,
        "errors": 0,
    }
    text = path.read_text(errors="replace") if path.exists() else ""
    for line in text.splitlines():
        if "running the worker again" in line:
            stats["arq_loop_restarts"] += 1
        elif "re-queuing dlv_" in line:
            stats["lease_requeues"] += 1
        elif " taken again" in line and "retries of partition" in line:
            stats["retry_sets_resumed"] += 1
        elif " ERROR " in line:
            stats["errors"] += 1
        elif _EXCEPTION.match(line):
            exceptions[line[:200]] += 1
        elif reclaimed := _RECLAIMED.search(line):
            stats["entries_reclaimed"] += int(reclaimed[1])
    return {**stats, "exceptions": dict(exceptions)}


# -- what Redis says -------------------------------------------------------------------------


def pending_deliveries(redis_url: str, webhook_ids: list[int]) -> int:
    client = sync_redis(redis_url)
    try:
        return sum(int(cast(int, client.zcard(keys.deliveries(w, "pending")))) for w in webhook_ids)
    finally:
        client.close()


def redis_state(redis_url: str, webhook_ids: dict[int, int]) -> dict[str, Any]:
    """Delivery counts per status, attempts over the records kept, a few pending deliveries,
    the consumer group, inbound counters, the webhooks' active flags, used_memory."""
    client = sync_redis(redis_url)
    try:
        pending = []
        for number, wid in webhook_ids.items():
            members = cast(list[bytes], client.zrange(keys.deliveries(wid, "pending"), 0, 4))
            for member in members:
                delivery = ids.member_delivery(member.decode())
                raw = cast(dict[bytes, bytes], client.hgetall(keys.delivery(delivery)))
                fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()
                          if k != b"payload"}  # fmt: skip
                pending.append({"endpoint": number, "id": delivery, **fields})
        statuses = {
            number: {
                status: int(cast(int, client.zcard(keys.deliveries(wid, status))))
                for status in ("pending", "succeeded", "failed")
            }
            for number, wid in webhook_ids.items()
        }
        attempts: Counter[int] = Counter()
        records: Counter[int] = Counter()
        pattern = keys.delivery(ids.DELIVERY_ID_PREFIX + "*")
        found = [
            k for k in client.scan_iter(match=pattern, count=5000) if not k.endswith(b":attempts")
        ]
        for first in range(0, len(found), 2000):
            pipe = client.pipeline(transaction=False)
            for key in found[first : first + 2000]:
                pipe.hmget(key, ["webhook_id", "attempts"])
            for webhook, made in cast(list[list[bytes | None]], pipe.execute()):
                if webhook is not None:
                    records[int(webhook)] += 1
                    attempts[int(webhook)] += max(0, int(made or 0) - 1)
        groups: list[dict[str, Any]] = []
        counts: Counter[bytes] = Counter()
        for partition in keys.partitioning().all():  # every partition's stream and counters
            stream = keys.events_stream(partition)
            if client.exists(stream):
                groups += cast(list[dict[str, Any]], client.xinfo_groups(stream))
            partition_counts = client.hgetall(keys.inbound_counts(partition))
            counts.update(
                {k: int(v) for k, v in cast(dict[bytes, bytes], partition_counts).items()}
            )
        webhooks = {
            number: {
                k.decode(): v.decode()
                for k, v in cast(dict[bytes, bytes], client.hgetall(keys.webhook(wid))).items()
                if k.decode() in ("active", "disabled_reason")
            }
            for number, wid in webhook_ids.items()
        }
        return {
            "statuses": statuses,
            "pending": pending,
            "retries": {n: attempts[wid] for n, wid in webhook_ids.items()},
            "records": {n: records[wid] for n, wid in webhook_ids.items()},
            "groups": [
                {k: v.decode() if isinstance(v, bytes) else v for k, v in g.items()} for g in groups
            ],
            "inbound_counts": {k.decode(): int(v) for k, v in counts.items()},
            "webhooks": webhooks,
            "used_memory": int(cast(dict[str, Any], client.info("memory"))["used_memory"]),
        }
    finally:
        client.close()


def explain_lost(
    url: str, redis_url: str, lost: list[tuple[int, str]], webhook_ids: dict[int, int], log: Path
) -> list[dict[str, Any]]:
    """For a few lost (endpoint, email id): the stored event, its delivery, the worker log."""
    client = sync_redis(redis_url)
    worker_log = log.read_text(errors="replace").splitlines() if log.exists() else []
    out = []
    try:
        for number, email_id in lost[:10]:
            found = get_json_auth(f"{url}/api/events?email_id={urllib.parse.quote(email_id)}")
            item: dict[str, Any] = {"endpoint": number, "email_id": email_id, "events": found}
            for event in found.get("events", []):
                entry = ids.entry_id(event["id"])
                if entry is None:
                    continue
                delivery = ids.delivery_id(entry, webhook_ids[number])
                raw = cast(dict[bytes, bytes], client.hgetall(keys.delivery(delivery)))
                item["delivery"] = {
                    "id": delivery,
                    **{k.decode(): v.decode(errors="replace") for k, v in raw.items()
                       if k != b"payload"},
                }  # fmt: skip
                item["attempts"] = [
                    a.decode() for a in cast(list[bytes], client.lrange(
                        keys.delivery_attempts(delivery), 0, -1))
                ]  # fmt: skip
                item["worker_log"] = [line for line in worker_log if delivery in line][:5]
            out.append(item)
    finally:
        client.close()
    return out


def get_json_auth(url: str) -> Any:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - 127.0.0.1 only
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


# -- the table -------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> list[str]:
    a, ing, red, s, wl = r["analysis"], r["ingest"], r["redis"], r["settings"], r["worker_log"]
    per = a["per_endpoint"]
    expected = r["acknowledged"] * len(per)
    delivered = sum(p["delivered"] for p in per.values())
    duplicates = sum(p["duplicates"] for p in per.values())
    kinds = Counter(e["kind"] for e in r["chaos"])
    gone = r["gone"]
    lat, first, retried = a["latency_ms"], a["first_try_latency_ms"], a["retried_latency_ms"]
    failures = Counter(what.split(" ")[0] for _, what in ing["failures"])
    lost = a["lost"]
    statuses = {
        st: sum(v[st] for n, v in red["statuses"].items() if n != gone["endpoint"])
        for st in ("pending", "failed")
    }
    gone_failed = red["statuses"][gone["endpoint"]]["failed"]
    pending_entries = sum(int(g.get("pending", 0)) for g in red["groups"])
    late = sum(p["late"] for p in per.values())
    exits = "; ".join(
        f"{e['process']} pid {e['pid']} at {e['t']} s, exit code {e['code']}" for e in r["exits"]
    )
    return [
        f"{r['seconds']:.0f} s of ingest at {r['rate']:.0f} events/s ({r['rate_source']}), "
        f"{r['endpoints']} endpoints subscribed to `*`, RETRY_SCHEDULE={s['RETRY_SCHEDULE']}, "
        f"DELIVERY_TIMEOUT={s['DELIVERY_TIMEOUT']}, other settings default, seed {r['seed']}; "
        f"drain: {r['drain']['outcome']} after {r['drain']['seconds']:.0f} s"
        + (
            f" (every event had arrived after {r['drain']['arrived']:.0f} s)."
            if r["drain"]["arrived"] is not None
            else "."
        ),
        "",
        "| what | result |",
        "|---|---|",
        f"| events acknowledged (200) | {r['acknowledged']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in ing["events"].items())
        + f"; {sum(ing['requests'].values()):,} requests) |",
        f"| ingest failures | {ing['failed_events']:,} events in {len(ing['failures']):,} requests"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in failures.items()) + ")" if failures else "")
        + " |",
        f"| deliveries expected / delivered (live endpoints) | {expected:,} / {delivered:,} |",
        f"| **lost** | **{len(lost)}**"
        + (" (" + ", ".join(f"e{n} {e}" for n, e in lost[:5]) + ")" if lost else "")
        + " |",
        "| duplicates per endpoint | "
        + ", ".join(f"e{n} {p['duplicates']}" for n, p in per.items())
        + f" (total {duplicates}"
        + "".join(
            f"; {count} after the {action}"
            for action, count in a["duplicates_by_preceding_action"].items()
        )
        + f"; bound DELIVERY_CONCURRENCY {s['DELIVERY_CONCURRENCY']} per crash) |",
        f"| events stored twice (same email id, two event ids) | "
        f"{sum(p['stored_twice'] for p in per.values())} |",
        f"| retries | {sum(p['answered_500'] for p in per.values()):,} attempts answered 500 at "
        f"live endpoints, each retried; {wl['lease_requeues']:,} deliveries re-queued by the "
        f"lease sweep; retry sets taken again after an outage {wl['retry_sets_resumed']} times "
        "(how late retries ran: the latency of those answered 500 first, below) |",
        f"| 410 endpoint (e{gone['endpoint']}) | {gone['after_first_410']} requests after its "
        f"first 410 (bound ENDPOINT_CONCURRENCY {s['ENDPOINT_CONCURRENCY']}); webhook active="
        f"{gone['webhook'].get('active')}, disabled_reason "
        f"{gone['webhook'].get('disabled_reason', '-')}; {gone['delivered_before']:,} events "
        f"delivered before, {gone_failed:,} deliveries recorded failed (kept in Redis) |",
        f"| delivery latency, 200 answer → first arrival | all: p50 {lat['p50']:,.0f} ms, p99 "
        f"{lat['p99']:,.0f} ms, max {lat['max']:,.0f} ms; never answered 500: p50 "
        f"{first['p50']:,.0f} ms, p99 {first['p99']:,.0f} ms; answered 500 first "
        f"({retried['count']:,}): p50 {retried['p50']:,.0f} ms, p99 {retried['p99']:,.0f} ms; "
        f"{late:,} over {LATE_SECONDS:.0f} s |",
        f"| peak RSS | web {r['peaks']['web_kib'] / 1024:.0f} MiB; worker "
        f"{r['peaks']['worker_kib'] / 1024:.0f} MiB (the largest of its "
        f"{len(r['worker_pids'])} processes) |",
        f"| peak Redis used_memory | {r['peaks']['redis_used_memory'] / 2**20:.0f} MiB |",
        f"| chaos actions | {kinds['kill-worker']} worker SIGKILLs, {kinds['restart-redis']} "
        f"Redis restarts (the worker ran arq's loop again {wl['arq_loop_restarts']} times), "
        f"{kinds['flip']} flips of {s['FLIP_SHARE']:.0%} of the live endpoints to failing, 1 "
        f"endpoint to 410; {wl['entries_reclaimed']:,} stream entries reclaimed from dead "
        "consumers |",
        f"| processes that exited by themselves | {exits or 'none'} |",
        "| tracebacks in the worker log, by last line | "
        + ("; ".join(f"`{line}` x{n}" for line, n in wl["exceptions"].items()) or "none")
        + " |",
        f"| left at the end (live endpoints) | {statuses['pending']} pending"
        + "".join(
            f" ({d['id']} at e{d['endpoint']}: attempts {d.get('attempts')}, last "
            f"{d.get('last_status_code') or d.get('last_error') or '-'})"
            for d in red["pending"][:3]
            if d["endpoint"] != gone["endpoint"]
        )
        + " and "
        f"{statuses['failed']} failed deliveries; {pending_entries} unacknowledged stream "
        f"entries; {wl['errors']} ERROR lines in the worker log |",
        "",
        "| t (s) | chaos | detail |",
        "|---:|---|---|",
        *(f"| {e['t']} | {e['kind']} | {e['detail']} |" for e in r["chaos"]),
    ]
