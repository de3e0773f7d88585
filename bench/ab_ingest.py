"""A/B the web process of several checkouts on ingest: `python -m bench.ab_ingest TREE TREE…
[--rounds R] [--seconds S] [--sendgrid]`.

As bench.ab does for the worker: each TREE (a checkout of this repository, e.g. `git worktree
add /tmp/before HEAD~1`) runs its own Procfile web line with this interpreter and
`PYTHONPATH=TREE`, against one private Redis, and wrk posts unique unsigned generic events
to each in alternating rounds (A B A B …). What counts is the median of the pairwise ratios
(each round's B against the A just before it): a single round moves by ±25 % here.
`--sendgrid` posts SendGrid batches of 1,000 events instead (bench.service's, 40 requests,
4 in parallel, per round) and compares events/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import uuid
from pathlib import Path

from honcho.environ import parse_procfile

from bench.common import WRK_UNIQUE, base_env, flush, run_wrk, stop
from bench.service import sendgrid_batches
from devtools.procfile import process_env
from devtools.redis_server import PrivateRedis, free_port, wait_for_port


def start_web(tree: str, redis_url: str) -> tuple[subprocess.Popen[bytes], str]:
    command = str(parse_procfile((Path(tree) / "Procfile").read_text()).processes["web"])
    port = free_port()
    env = process_env({**base_env(redis_url), "PORT": str(port), "PYTHONPATH": tree})
    process = subprocess.Popen(
        ["/bin/sh", "-c", f"exec {command}"],
        cwd=tree,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, 20, process)
    return process, f"http://127.0.0.1:{port}/api/webhooks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sendgrid", action="store_true", help="1,000-event SendGrid batches")
    args = parser.parse_args()
    rates: dict[str, list[float]] = {tree: [] for tree in args.trees}
    with PrivateRedis(durable=False) as redis:
        webs = {tree: start_web(tree, redis.url) for tree in args.trees}
        try:
            for url in (url for _, url in webs.values()):  # warm up
                run_wrk(url, WRK_UNIQUE.replace("%s", "warm" + uuid.uuid4().hex[:6]), seconds=1)
            for number in range(args.rounds):
                for tree, (_, url) in webs.items():
                    flush(redis.url)
                    if args.sendgrid:
                        batches = sendgrid_batches(url.removesuffix("/api/webhooks"), 40, 4)
                        rates[tree].append(batches["events_per_s"])
                        print(f"round {number + 1} {tree}: {rates[tree][-1]:,.0f} events/s")
                        continue
                    prefix = f"r{number}{uuid.uuid4().hex[:6]}"
                    result = run_wrk(url, WRK_UNIQUE.replace("%s", prefix), seconds=args.seconds)
                    rates[tree].append(result["rps"])
                    print(
                        f"round {number + 1} {tree}: {result['rps']:,.0f} req/s, "
                        f"p99 {result['p99_ms']:.1f} ms",
                        flush=True,
                    )
        finally:
            for process, _ in webs.values():
                stop(process)
    first, *others = args.trees
    unit = "events/s" if args.sendgrid else "req/s"
    print(f"{first}: median {statistics.median(rates[first]):,.0f} {unit}")
    for tree in others:
        ratios = [b / a for a, b in zip(rates[first], rates[tree], strict=True)]
        print(
            f"{tree}: median {statistics.median(rates[tree]):,.0f} {unit}; vs {first}: "
            f"x{statistics.median(ratios):.3f} (median of pairwise ratios)"
        )


if __name__ == "__main__":
    main()
