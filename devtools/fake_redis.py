"""The not-durable fallback for `make run` on a machine without redis-server: fakeredis's
TcpFakeServer in a thread of the launcher, reachable over TCP by the web and worker processes.

arq's worker calls INFO at start-up, which fakeredis does not implement; we register a minimal
INFO through fakeredis's own command decorator. Development only: nothing here is durable.
"""

from __future__ import annotations

import threading
from typing import Any

from fakeredis import TcpFakeServer
from fakeredis._commands import command
from fakeredis._socket import FakeSocket

from devtools.redis_server import free_port

_INFO = b"# Server\r\nredis_version:7.0.0-fakeredis\r\n# Memory\r\nused_memory_human:?\r\n"


@command((), (bytes,), name="info")
def mailhooks_info(self: Any, *sections: bytes) -> bytes:
    return _INFO


# The decorator registered INFO as a call to the socket's method of this function's name.
FakeSocket.mailhooks_info = mailhooks_info  # type: ignore[attr-defined]


def start_fake_redis() -> tuple[str, TcpFakeServer]:
    """Serve fakeredis on a free local port; returns its URL and the server (to shut down)."""
    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, name="fakeredis", daemon=True)
    thread.start()
    return f"redis://127.0.0.1:{port}/0", server
