"""A private three-master Redis Cluster on free ports: for the test suite and the benchmarks.

Each node is a devtools.redis_server.PrivateRedis in cluster mode, in a data directory of
its own that keeps its nodes.conf (and, when durable, its AOF) across a restart, so a
restarted master rejoins with its slots and its data.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

from devtools.redis_server import STARTUP_TIMEOUT, PrivateRedis, RedisServerError

MASTERS = 3


def redis_cli_path() -> str | None:
    return shutil.which("redis-cli")


class PrivateCluster:
    """`with PrivateCluster() as cluster: cluster.url` — three masters, no replicas, every
    slot served; stopped (and their data removed) on exit. `durable=True` turns on AOF."""

    def __init__(self, *, durable: bool = True, masters: int = MASTERS) -> None:
        cli = redis_cli_path()
        if cli is None:
            raise RedisServerError("redis-cli is not installed")
        self._cli = cli
        self._tmp = tempfile.TemporaryDirectory(prefix="mailhooks-cluster-")
        root = Path(self._tmp.name)
        self.nodes = [
            PrivateRedis(root / f"node{i}", durable=durable, cluster=True)  # free bus ports too
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """Any node's URL: the cluster client discovers the others from it."""
        return self.nodes[0].url

    def start(self, node: PrivateRedis | None = None) -> PrivateCluster:
        """Start the cluster; or, given one of its nodes (stopped or killed), start that node
        again on its port and data directory: it reads its nodes.conf and rejoins. Returns
        once every node agrees on the slot map."""
        if node is not None:
            node.start()
            self.wait_until_ok()
            return self
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            created = subprocess.run(
                [self._cli, "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
            )  # fmt: skip
            if created.returncode != 0:
                raise RedisServerError(f"redis-cli --cluster create: {created.stdout[-500:]}")
            self.wait_until_ok()
        except BaseException:
            self.cleanup()
            raise
        return self

    def cli(self, node: PrivateRedis, *args: str) -> str:
        """A redis-cli command on one node: its output."""
        return subprocess.run(
            [self._cli, "-p", str(node.port), *args],
            check=True, capture_output=True, text=True, timeout=STARTUP_TIMEOUT,
        ).stdout  # fmt: skip

    def wait_until_ok(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until every running node reports cluster_state:ok and all of them see the
        same slot map (after a create or a restart, the gossip takes a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            running = [node for node in self.nodes if node.process is not None]
            try:
                states = [self.cli(node, "cluster", "info") for node in running]
                maps = {_slot_map(self.cli(node, "cluster", "nodes")) for node in running}
            except subprocess.SubprocessError:
                states, maps = [], set()
            if states and all("cluster_state:ok" in s for s in states) and len(maps) == 1:
                return
            if time.monotonic() > deadline:
                raise RedisServerError(f"the cluster did not reach cluster_state:ok: {states}")
            time.sleep(0.05)

    def kill(self, node: PrivateRedis) -> None:
        """SIGKILL one node (no AOF flush beyond the last second's fsync)."""
        if node.process is not None:
            node.process.kill()
            node.process.wait()
            if node.process.stderr is not None:
                node.process.stderr.close()
            node.process = None

    def restart(self, node: PrivateRedis) -> None:
        """Stop one node (SIGTERM: the AOF is flushed) and start it again."""
        node.stop()
        self.start(node)

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()
        self._tmp.cleanup()

    def __enter__(self) -> PrivateCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


def _slot_map(cluster_nodes: str) -> frozenset[tuple[str, str]]:
    """(address, slot ranges) of every master in a CLUSTER NODES answer."""
    masters = set()
    for line in cluster_nodes.splitlines():
        fields = line.split()
        if len(fields) >= 8 and "master" in fields[2] and "fail" not in fields[2]:
            address = fields[1].split("@")[0]
            masters.add((address, " ".join(sorted(fields[8:]))))
    return frozenset(masters)
