"""Redis Cluster (#15): what ingest and delivery cost on a three-master cluster against one
Redis, measured in the same run.

Two deployments, each with its own web process (the Procfile's) kept for the whole
benchmark: **one Redis** (the private redis-server of `python -m bench`, as shipped: one
partition) and **a cluster** (devtools.redis_cluster.PrivateCluster, three masters,
REDIS_CLUSTER=true, EVENT_PARTITIONS at its default 16). ACCOUNTS accounts are made through
the accounts API, one webhook each (`*`) at the local receiver, so that events spread over
every partition.

- Ingest: wrk on the generic inbound route (unsigned), unique bodies cycling through the
  accounts (`account_id`), no worker running; rounds alternate the deployments.
- Delivery: a backlog of events over the accounts (stored with the ingest path's own script,
  bench.common.preload_events) delivered by one worker, then by two, on each deployment;
  each run on flushed Redis with accounts made again.

Per-event cost: the web's (or the workers') CPU seconds per event, from /proc, and Redis's
(INFO cpu, used_cpu_sys + used_cpu_user, summed over the nodes) beside it. Goal: the
process's per-event cost on the cluster within GOAL_RATIO of one Redis (median of the
rounds' ratios); the rate with two workers against one is reported, not held to a goal.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bench.common import (
    base_env,
    cpu_seconds,
    deliver_backlog,
    flush,
    key_partitions,
    median,
    preload_events,
    receiver,
    redis_cpu_seconds,
    run_wrk,
    web_process,
)
from bench.service import Settings, Table, fmt
from bench.tenants import ADMIN_KEY, make_account
from devtools.redis_cluster import PrivateCluster

ACCOUNTS = 50
GOAL_RATIO = 1.3  # per-event cost on the cluster / on one Redis, at most
CLUSTER_PARTITIONS = 16  # EVENT_PARTITIONS' default with REDIS_CLUSTER=true


# -- the pure part: the wrk script, ratios, the goal ----------------------------------------


def accounts_script(prefix: str, accounts: Sequence[str]) -> str:
    """wrk script: unique generic events (a per-thread counter in email_id), each tagged with
    the next of `accounts` in turn (each thread starting at its own offset)."""
    if not accounts:
        raise ValueError("accounts_script needs at least one account")
    listed = ", ".join(f"'{account}'" for account in accounts)
    return f"""
local accounts = {{{listed}}}
local counter, threads = 0, 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
request = function()
  counter = counter + 1
  local account = accounts[(counter + tid) % #accounts + 1]
  local body = '{{"type":"email.opened","email_id":"msg_{prefix}_' .. tid .. '_' .. counter ..
    '","account_id":"' .. account .. '","recipient":"alex@example.com",' ..
    '"timestamp":"2026-11-28T00:00:00Z"}}'
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, body)
end
"""


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when either is missing or the denominator is not > 0."""
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0:
        return math.nan
    return numerator / denominator


def round_ratios(
    cluster: Sequence[Mapping[str, float]], single: Sequence[Mapping[str, float]], key: str
) -> list[float]:
    """Each round's cluster figure over the same round's single-Redis one: cancels the
    machine's drift between rounds."""
    return [ratio(c[key], s[key]) for c, s in zip(cluster, single, strict=True)]


def within_goal(value: float, goal: float = GOAL_RATIO) -> bool:
    """A cost ratio meets the goal when it is known and at most `goal`."""
    return math.isfinite(value) and value <= goal


def verdict(value: float, goal: float = GOAL_RATIO) -> str:
    return "met" if within_goal(value, goal) else "MISSED"


def times(value: float) -> str:
    return f"x{value:.2f}" if math.isfinite(value) else "n/a"


# -- the deployments ------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    name: str
    label: str
    url: str  # REDIS_URL
    nodes: tuple[str, ...]  # every node's URL: flushed, and their CPU summed
    cluster: bool
    partitions: int

    def env(self) -> dict[str, str]:
        extra = {"REDIS_CLUSTER": "true"} if self.cluster else {}
        return base_env(
            self.url, ADMIN_API_KEYS=ADMIN_KEY, EVENT_PARTITIONS=self.partitions, **extra
        )

    def flush(self) -> None:
        for node in self.nodes:
            flush(node)

    def redis_cpu(self) -> float:
        return redis_cpu_seconds(self.nodes)


@dataclass(frozen=True)
class Running:
    deployment: Deployment
    api: str
    web_pid: int


@contextlib.contextmanager
def running(deployment: Deployment) -> Iterator[Running]:
    with web_process(deployment.env()) as (api, process):
        yield Running(deployment, api, process.pid)


def make_accounts(api: str, endpoint: str, count: int) -> list[str]:
    """`count` accounts through the API, account n's webhook at `endpoint`/n."""
    return [make_account(api, f"bench {n}", f"{endpoint}/{n}") for n in range(1, count + 1)]


# -- ingest ---------------------------------------------------------------------------------


def ingest_round(run: Running, accounts: Sequence[str], seconds: float) -> dict[str, float]:
    script = accounts_script(uuid.uuid4().hex[:8], accounts)
    web0, redis0 = cpu_seconds(run.web_pid), run.deployment.redis_cpu()
    result = run_wrk(run.api + "/api/webhooks", script, seconds=seconds)
    web, redis = cpu_seconds(run.web_pid) - web0, run.deployment.redis_cpu() - redis0
    events = max(1.0, result["requests"] - result["non2xx"])
    return {
        **result,
        "events": events,
        "web_cpu_us_per_event": web * 1e6 / events,
        "redis_cpu_us_per_event": redis * 1e6 / events,
        "cpu_us_per_event": (web + redis) * 1e6 / events,
    }


def bench_ingest(
    runs: Sequence[Running], accounts: Mapping[str, list[str]], seconds: float, rounds: int
) -> dict[str, list[dict[str, float]]]:
    per: dict[str, list[dict[str, float]]] = {run.deployment.name: [] for run in runs}
    for run in runs:  # warm up (imports, connections, the routing cache)
        ingest_round(run, accounts[run.deployment.name], 1)
    for number in range(rounds):
        for run in runs if number % 2 == 0 else runs[::-1]:
            result = ingest_round(run, accounts[run.deployment.name], seconds)
            per[run.deployment.name].append(result)
            print(
                f"  cluster ingest round {number + 1} {run.deployment.name}: "
                f"{result['rps']:,.0f} req/s, p99 {result['p99_ms']:.1f} ms, web "
                f"{result['web_cpu_us_per_event']:.0f} µs/event, Redis "
                f"{result['redis_cpu_us_per_event']:.0f} µs/event (non-2xx "
                f"{result['non2xx']:.0f}, errors {result['errors']:.0f})",
                flush=True,
            )
    return per


# -- delivery -------------------------------------------------------------------------------


def delivery_run(run: Running, recv: str, events: int, workers: int) -> dict[str, float]:
    """Flushed Redis, ACCOUNTS accounts with one webhook each, `events` events spread over
    them, then `workers` workers until every delivery has arrived."""
    d = run.deployment
    d.flush()
    accounts = make_accounts(run.api, recv, ACCOUNTS)
    with key_partitions(d.partitions):
        asyncio.run(
            preload_events(
                d.url, events, f"c{uuid.uuid4().hex[:6]}-", accounts=accounts, cluster=d.cluster
            )
        )
    result = deliver_backlog(d.env(), recv, events, workers=workers, redis_cpu=d.redis_cpu)
    result["cpu_with_redis_ms_per_delivery"] = (
        result["cpu_ms_per_delivery"] + result["redis_cpu_ms_per_delivery"]
    )
    return result


def bench_delivery(
    runs: Sequence[Running], recv: str, events: int, rounds: int
) -> dict[str, list[dict[str, float]]]:
    per: dict[str, list[dict[str, float]]] = {
        f"{run.deployment.name}/{workers}": [] for workers in (1, 2) for run in runs
    }
    for number in range(rounds):
        for workers in (1, 2):
            for run in runs if number % 2 == 0 else runs[::-1]:
                result = delivery_run(run, recv, events, workers)
                per[f"{run.deployment.name}/{workers}"].append(result)
                print(
                    f"  cluster delivery round {number + 1} {run.deployment.name}, {workers} "
                    f"worker(s): {result['rate']:,.0f}/s, workers "
                    f"{result['cpu_ms_per_delivery']:.3f} ms/delivery, Redis "
                    f"{result['redis_cpu_ms_per_delivery']:.3f} ms/delivery",
                    flush=True,
                )
    return per


# -- the benchmark --------------------------------------------------------------------------


def medians(rounds: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {key: median([r[key] for r in rounds]) for key in rounds[0]}


def bench_cluster(s: Settings) -> tuple[Table, dict[str, Any]]:
    seconds = s.pick(2, 5)
    ingest_rounds = s.pick(1, 3)
    events = s.pick(3_000, 20_000)
    delivery_rounds = s.pick(1, 2)
    delivery: dict[str, list[dict[str, float]]] | None = None
    failure = ""
    with PrivateCluster(durable=False) as cluster:
        deployments = (
            Deployment("single", "one Redis", s.redis_url, (s.redis_url,), False, 1),
            Deployment(
                "cluster",
                f"cluster, {len(cluster.nodes)} masters",
                cluster.url,
                tuple(node.url for node in cluster.nodes),
                True,
                CLUSTER_PARTITIONS,
            ),
        )
        with receiver() as recv, contextlib.ExitStack() as stack:
            runs: list[Running] = []
            for d in deployments:
                d.flush()
                runs.append(stack.enter_context(running(d)))
            accounts = {run.deployment.name: make_accounts(run.api, recv, ACCOUNTS) for run in runs}
            ingest = bench_ingest(runs, accounts, seconds, ingest_rounds)
            try:  # a delivery run that never completes must not lose the ingest figures
                delivery = bench_delivery(runs, recv, events, delivery_rounds)
            except RuntimeError as exc:
                failure = repr(exc)
                print(f"  cluster delivery FAILED: {failure}", flush=True)
    single, clustered = (d.name for d in deployments)
    labels = {d.name: d.label for d in deployments}
    table = [
        "One Redis (one partition, as shipped) against a local three-master Redis Cluster "
        f"(REDIS_CLUSTER=true, EVENT_PARTITIONS={CLUSTER_PARTITIONS}), on the same machine in "
        f"the same run; {ACCOUNTS} accounts made through the accounts API, one webhook each "
        "(`*`) at the local receiver.",
        "",
    ]
    ingest_table, ingest_data = ingest_report(ingest, single, clustered, labels, seconds)
    table += [*ingest_table, ""]
    data: dict[str, Any] = {
        "accounts": ACCOUNTS,
        "partitions": {d.name: d.partitions for d in deployments},
        "goal_ratio": GOAL_RATIO,
        "ingest": ingest_data,
    }
    if delivery is None:
        table.append(f"Delivery ({events:,} events): FAILED, {failure}; goal not measured.")
        data["delivery"] = {"events": events, "error": failure}
    else:
        delivery_table, data["delivery"] = delivery_report(
            delivery, single, clustered, labels, events
        )
        table += delivery_table
    data["goal_met"] = {
        "ingest": ingest_data["goal_met"],
        "delivery": data["delivery"].get("goal_met", False),
    }
    return table, data


def known(value: float) -> float | None:
    """results.json stays strict JSON: an unknown ratio is written null."""
    return value if math.isfinite(value) else None


def ingest_report(
    ingest: Mapping[str, list[dict[str, float]]],
    single: str,
    clustered: str,
    labels: Mapping[str, str],
    seconds: float,
) -> tuple[Table, dict[str, Any]]:
    med = {name: medians(rounds) for name, rounds in ingest.items()}
    ratios = {
        key: median(round_ratios(ingest[clustered], ingest[single], key))
        for key in ("web_cpu_us_per_event", "cpu_us_per_event", "rps")
    }
    cost = ratios["web_cpu_us_per_event"]
    table = [
        f"Ingest: wrk -t2 -c50 -d{seconds:.0f}s on POST /api/webhooks (unsigned generic events, "
        "unique, cycling through the accounts' `account_id`), no worker; "
        f"{len(ingest[single])} round(s) alternating the deployments; medians. Web CPU from "
        "/proc; Redis CPU from INFO cpu (sys + user), summed over the nodes.",
        "",
        "| ingest | req/s | p99 ms | web CPU µs/event | Redis CPU µs/event | rounds req/s |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {labels[name]} | {fmt(m['rps'])} | {m['p99_ms']:.1f} | "
            f"{m['web_cpu_us_per_event']:.0f} | {m['redis_cpu_us_per_event']:.0f} | "
            + ", ".join(fmt(r["rps"]) for r in ingest[name])
            + " |"
            for name, m in med.items()
        ),
        "",
        "Cluster / one Redis (median of the rounds' ratios): web CPU per event "
        f"{times(cost)} (with Redis's {times(ratios['cpu_us_per_event'])}), req/s "
        f"{times(ratios['rps'])}. Goal <= {GOAL_RATIO}x: {verdict(cost)}.",
    ]
    data = {
        "seconds": seconds,
        "rounds": ingest,
        "median": med,
        "ratios": {key: known(value) for key, value in ratios.items()},
        "goal_met": within_goal(cost),
    }
    return table, data


def delivery_report(
    delivery: Mapping[str, list[dict[str, float]]],
    single: str,
    clustered: str,
    labels: Mapping[str, str],
    events: int,
) -> tuple[Table, dict[str, Any]]:
    med = {key: medians(rounds) for key, rounds in delivery.items()}
    one_single, one_cluster = delivery[f"{single}/1"], delivery[f"{clustered}/1"]
    ratios = {
        key: median(round_ratios(one_cluster, one_single, key))
        for key in ("cpu_ms_per_delivery", "cpu_with_redis_ms_per_delivery", "rate")
    }
    scaling = {
        name: median(round_ratios(delivery[f"{name}/2"], delivery[f"{name}/1"], "rate"))
        for name in (single, clustered)
    }
    cost = ratios["cpu_ms_per_delivery"]
    table = [
        f"Delivery: {events:,} events over the {ACCOUNTS} accounts stored before the workers "
        "start (the ingest path's append script), delivered by one worker, then two (the "
        "Procfile's, default settings), timed from the first arrival to the last; flushed "
        f"Redis and fresh accounts per run; {len(one_single)} round(s); medians.",
        "",
        "| delivery | workers | deliveries/s | worker CPU ms/delivery | Redis CPU ms/delivery "
        "| rounds deliveries/s |",
        "|---|---:|---:|---:|---:|---|",
        *(
            f"| {labels[key.split('/')[0]]} | {key.split('/')[1]} | {fmt(m['rate'])} | "
            f"{m['cpu_ms_per_delivery']:.3f} | {m['redis_cpu_ms_per_delivery']:.3f} | "
            + ", ".join(fmt(r["rate"]) for r in delivery[key])
            + " |"
            for key, m in med.items()
        ),
        "",
        "Cluster / one Redis, one worker (median of the rounds' ratios): worker CPU per "
        f"delivery {times(cost)} (with Redis's "
        f"{times(ratios['cpu_with_redis_ms_per_delivery'])}), deliveries/s "
        f"{times(ratios['rate'])}. Goal <= {GOAL_RATIO}x: {verdict(cost)}.",
        "",
        f"Two workers / one (deliveries/s): one Redis {times(scaling[single])}, cluster "
        f"{times(scaling[clustered])} (reported; on 2 cores shared with Redis, the receiver "
        "and the bench, not a measure of a larger machine).",
    ]
    data = {
        "events": events,
        "rounds": delivery,
        "median": med,
        "ratios": {key: known(value) for key, value in ratios.items()},
        "scaling_two_workers": {key: known(value) for key, value in scaling.items()},
        "goal_met": within_goal(cost),
    }
    return table, data
