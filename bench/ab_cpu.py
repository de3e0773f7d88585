"""A/B the CPU each event costs the web and the worker at a steady, moderate rate:
`python -m bench.ab_cpu RATE ROUNDS TREE TREE…`.

What bench.ab (the worker draining a backlog) and bench.ab_ingest (wrk at full speed) do not
show: at a few hundred events a second every batch is small and every request wakes each
process on its own, and an event costs several times the CPU it costs at full speed. Each
round starts each TREE's Procfile web and worker (as bench.latency_ab does) against one
private Redis and the recording receiver, paces RATE generic events a second for 6 s into the
web (bench/pacer.py) and waits for their deliveries; each process's CPU seconds (from /proc)
over that span, per event. Rounds alternate the trees; the ratios are each round's against the
first tree's in the same round, then their median.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from bench.common import (
    base_env,
    cpu_seconds,
    create_webhooks,
    flush,
    posts,
    receiver,
    stop,
    wait_until,
)
from bench.latency_ab import start_line
from bench.pacer import run_paced
from devtools.redis_server import PrivateRedis, free_port, wait_for_port


def main() -> None:
    rate, rounds, trees = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    per_tree = run(rate, rounds, trees)
    first = trees[0]
    for tree in trees:
        web = statistics.median(w for w, _ in per_tree[tree])
        worker = statistics.median(k for _, k in per_tree[tree])
        pairs = list(zip(per_tree[tree], per_tree[first], strict=True))
        web_ratio = statistics.median(a[0] / b[0] for a, b in pairs)
        worker_ratio = statistics.median(a[1] / b[1] for a, b in pairs)
        print(
            f"{tree}: web {web:.0f} us/event (x{web_ratio:.3f}), "
            f"worker {worker:.0f} us/event (x{worker_ratio:.3f})"
        )


def run(rate: float, rounds: int, trees: list[str]) -> dict[str, list[tuple[float, float]]]:
    """Per tree, per round: (web, worker) CPU µs per event."""
    per_tree: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    with PrivateRedis(durable=False) as redis, receiver() as recv:
        for number in range(rounds):
            for tree in trees:
                per_tree[tree].append(one_round(tree, redis.url, recv, rate, f"r{number}"))
                web, worker = per_tree[tree][-1]
                print(
                    f"round {number + 1} {tree}: web {web:.0f} us/event, "
                    f"worker {worker:.0f} us/event",
                    flush=True,
                )
    return per_tree


def one_round(tree: str, redis_url: str, recv: str, rate: float, tag: str) -> tuple[float, float]:
    flush(redis_url)
    asyncio.run(create_webhooks(redis_url, [f"{recv}/1"], ("*",)))
    port = free_port()
    env = {**base_env(redis_url), "PORT": str(port)}
    web, worker = start_line(tree, "web", env), start_line(tree, "worker", env)
    try:
        wait_for_port(port, 30)
        url = f"http://127.0.0.1:{port}"
        before = posts(recv)
        _, warm, _ = run_paced(url, 50, 0.5, tag + "w")  # imports, connections, first runs
        wait_until(lambda: posts(recv) - before >= len(warm), 30)
        time.sleep(0.5)
        cpu_before = cpu_seconds(web.pid), cpu_seconds(worker.pid)
        _, answered, _ = run_paced(url, rate, 6, tag)
        if not wait_until(lambda: posts(recv) - before >= len(warm) + len(answered), 30):
            raise RuntimeError(f"{tree}: deliveries missing after 30 s")
        web_cpu, worker_cpu = cpu_seconds(web.pid), cpu_seconds(worker.pid)
        events = len(answered)
        return (
            1e6 * (web_cpu - cpu_before[0]) / events,
            1e6 * (worker_cpu - cpu_before[1]) / events,
        )
    finally:
        stop(web)
        stop(worker)


if __name__ == "__main__":
    main()
