"""A/B the worker of several checkouts: `python -m bench.ab TREE TREE… [--events N]
[--fanout F] [--rounds R] [ENV=VALUE …]`.

For comparing one change, where `make bench`'s floors are too coarse: on this noisy machine
a single round's rate moves by ±25 %, so the trees run in alternating rounds (A B A B …)
against the same private Redis and receiver, and what counts is the median of the pairwise
ratios (each round's B against the A just before it). Each TREE is a checkout of this
repository (e.g. `git worktree add /tmp/before HEAD~1`); its worker runs with this
interpreter and `PYTHONPATH=TREE`. Reports deliveries/s and worker CPU ms per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid

from bench.common import (
    base_env,
    cpu_seconds,
    create_webhooks,
    flush,
    posts,
    preload_events,
    receiver,
    wait_until,
)
from devtools.redis_server import PrivateRedis


def run_once(
    tree: str, redis_url: str, recv: str, events: int, fanout: int, env: dict[str, str]
) -> tuple[float, float]:
    flush(redis_url)
    asyncio.run(create_webhooks(redis_url, [f"{recv}/{i + 1}" for i in range(fanout)], ("*",)))
    asyncio.run(preload_events(redis_url, events // fanout, "ab" + uuid.uuid4().hex[:6]))
    full_env = {**os.environ, **base_env(redis_url, **env), "PYTHONPATH": tree}
    before = posts(recv)
    worker = subprocess.Popen(
        [sys.executable, "-m", "worker"],
        cwd=tree,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        if not wait_until(lambda: posts(recv) > before, 60):
            raise RuntimeError(f"{tree}: no delivery within 60 s")
        started, first, cpu0 = time.perf_counter(), posts(recv), cpu_seconds(worker.pid)
        if not wait_until(lambda: posts(recv) - before >= events, 300, 0.005):
            raise RuntimeError(f"{tree}: deliveries missing after 300 s")
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(worker.pid) - cpu0
        measured = posts(recv) - first
    finally:
        worker.send_signal(2)
        worker.wait(30)
    return measured / elapsed, cpu * 1000 / measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trees", nargs="+", help="checkouts to compare; the first is A")
    parser.add_argument("--events", type=int, default=6000, help="deliveries per round")
    parser.add_argument("--fanout", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    options, extra = parser.parse_known_args()
    env = dict(item.split("=", 1) for item in extra)
    trees = [tree for tree in options.trees if "=" not in tree]
    results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    with PrivateRedis(durable=False) as redis, receiver() as recv:
        for number in range(options.rounds):
            for tree in trees:
                rate, cpu = run_once(tree, redis.url, recv, options.events, options.fanout, env)
                results[tree].append((rate, cpu))
                print(
                    f"round {number + 1} {tree}: {rate:,.0f}/s, {cpu:.3f} ms CPU/delivery",
                    flush=True,
                )
    first = results[trees[0]]
    for tree in trees:
        rates = [rate for rate, _ in results[tree]]
        cpus = [cpu for _, cpu in results[tree]]
        rate, cpu = statistics.median(rates), statistics.median(cpus)
        line = f"{tree}: median {rate:,.0f}/s, {cpu:.3f} ms CPU"
        if tree != trees[0]:
            rate_ratio = statistics.median(
                b[0] / a[0] for a, b in zip(first, results[tree], strict=True)
            )
            cpu_ratio = statistics.median(
                b[1] / a[1] for a, b in zip(first, results[tree], strict=True)
            )
            line += (
                f"; vs {trees[0]}: rate x{rate_ratio:.3f}, CPU x{cpu_ratio:.3f}"
                " (medians of pairwise ratios)"
            )
        print(line)


if __name__ == "__main__":
    main()
