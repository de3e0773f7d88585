"""`python -m bench [--quick] [--only NAME ...]`: every benchmark, in sequence.

Runs bench.transport (in its own process, as before), then the service benchmarks of
bench/service.py, bench/tenants.py and bench/cluster.py against a private redis-server (the
cluster benchmark also starts a private three-master Redis Cluster), the Procfile's web and
worker lines, the local receivers and wrk. Prints a markdown table per benchmark and writes
bench/results.json.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.cluster import bench_cluster
from bench.service import BENCHMARKS, Settings, bench_latency
from bench.tenants import bench_tenants
from bench.transport import machine
from devtools.redis_server import PrivateRedis

RESULTS = Path(__file__).with_name("results.json")
ORDER = (
    "transport",
    "ingest",
    "providers",
    "tracking",
    "delivery",
    "latency",
    "fanout",
    "isolation",
    "tenants",
    "memory",
    "scaleout",
    "cluster",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs, for development")
    parser.add_argument("--only", nargs="*", choices=ORDER, help="run only these benchmarks")
    args = parser.parse_args()
    chosen = [name for name in ORDER if not args.only or name in args.only]

    info = machine()
    print(f"machine: {info['cpu_count']} CPU x {info['cpu_model']}, Python {info['python']}")
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": info,
        "quick": args.quick,
        "benchmarks": {},
    }
    tables: dict[str, list[str]] = {}
    started = time.perf_counter()
    if "transport" in chosen:
        print("\n== transport ==", flush=True)
        quick = ["--seconds", "2", "--rounds", "2"] if args.quick else []
        subprocess.run([sys.executable, "-m", "bench.transport", *quick], check=True)
        results["benchmarks"]["transport"] = "see bench/results-transport.json"
    with PrivateRedis(durable=False) as redis:
        settings = Settings(quick=args.quick, redis_url=redis.url)
        max_rate = None
        for name in chosen:
            if name == "transport":
                continue
            print(f"\n== {name} ==", flush=True)
            t0 = time.perf_counter()
            try:
                if name == "latency":
                    rate = max_rate or 200.0
                    table, data = bench_latency(settings, rate)
                elif name == "tenants":
                    table, data = bench_tenants(settings)
                elif name == "cluster":
                    table, data = bench_cluster(settings)
                else:
                    table, data = BENCHMARKS[name](settings)
            except Exception as exc:  # one failure must not lose the other results
                print(f"  {name} FAILED: {exc!r}", flush=True)
                results["benchmarks"][name] = {"error": repr(exc)}
                continue
            if name == "delivery":
                max_rate = data["median"]["fan-out 1, ENDPOINT_CONCURRENCY=10 (default)"]["worker"]
            data["wall_seconds"] = time.perf_counter() - t0
            results["benchmarks"][name] = data
            tables[name] = table
            print("\n" + "\n".join(table), flush=True)
    results["wall_seconds"] = time.perf_counter() - started
    print("\n\n# Summary\n")
    for name, table in tables.items():
        print(f"## {name}\n\n" + "\n".join(table) + "\n")
    RESULTS.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS} ({results['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
