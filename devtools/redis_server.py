"""A private redis-server on a free port: for `make run`, the test suite and the benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

STARTUP_TIMEOUT = 10.0


class RedisServerError(RuntimeError):
    """redis-server is not installed, or did not start."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# A cluster node also listens on its port + 10000 (the cluster bus), and exits when it cannot,
# yet only after its own port accepted a connection, so wait_for_port passes first.
CLUSTER_BUS_OFFSET = 10_000


def free_cluster_port() -> int:
    """A free port whose cluster bus port is a port too (below 65,536), and free."""
    while True:
        port = free_port()
        if port + CLUSTER_BUS_OFFSET > 65_535:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + CLUSTER_BUS_OFFSET))
            except OSError:
                continue
        return port


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RedisServerError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RedisServerError(f"nothing listened on port {port} within {timeout}s")


class PrivateRedis:
    """`with PrivateRedis(data_dir) as server: server.url` — stopped (and its data kept in
    `data_dir`, if given) on exit. `durable=True` turns on AOF with fsync every second."""

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        port: int | None = None,
        durable: bool = True,
        tls: tuple[Path, Path] | None = None,
        cluster: bool = False,
    ) -> None:
        executable = redis_server_path()
        if executable is None:
            raise RedisServerError("redis-server is not installed")
        self.executable = executable
        self.port = port or (free_cluster_port() if cluster else free_port())
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="mailhooks-redis-")
        self.data_dir = data_dir or Path(self._tmp.name)  # type: ignore[union-attr]
        self.durable = durable
        self.tls = tls  # (certificate, key): serve TLS only, on `port`
        # Cluster mode: alone, a one-node cluster serving every slot (it refuses a script or
        # command whose keys are in different slots, as a real cluster would, to any client);
        # or a node for devtools.redis_cluster to join to others.
        self.cluster = cluster
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.tls:
            cert, key = self.tls
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(cert),
                "--tls-key-file",
                str(key),
                "--tls-auth-clients",
                "no",
            ]
        else:
            listen = ["--port", str(self.port)]
        args = [
            self.executable,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.durable else "no",
            "--appendfsync", "everysec",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, STARTUP_TIMEOUT, self.process)
        except RedisServerError:
            self.stop()
            raise
        return self

    def serve_every_slot(self) -> PrivateRedis:
        """Make this cluster-mode node a cluster of its own, serving all 16,384 slots."""
        cli = ["redis-cli", "-p", str(self.port)]
        subprocess.run([*cli, "cluster", "addslotsrange", "0", "16383"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while (
            b"cluster_state:ok"
            not in subprocess.run([*cli, "cluster", "info"], check=True, capture_output=True).stdout
        ):
            if time.monotonic() > deadline:
                raise RedisServerError("the one-node cluster did not reach cluster_state:ok")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # redis-server flushes the AOF on SIGTERM
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()
