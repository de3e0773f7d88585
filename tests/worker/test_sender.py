"""worker.sender through the real HTTP stack (httpx over aiohttp) against local sockets: what
each way of getting no reply is recorded as."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from config import Config
from devtools.redis_server import free_port
from service.core.outcome import ErrorKind
from tests.proxy import Proxy
from tests.receiver import Receiver, Reply
from worker.http import WebhookClient
from worker.sender import Sender

pytestmark = pytest.mark.anyio

HEADERS = {"content-type": "application/json"}


class FakeDns(AbstractResolver):
    """Resolves every name to 127.0.0.1, as a name re-pointed at loopback would (or to
    `address`)."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.asked: list[str] = []
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.fixture
async def make_sender() -> AsyncIterator[Any]:
    clients: list[WebhookClient] = []

    def make(
        *, allow_private: bool, timeout: float = 2.0, dns: Any = None, proxy: str = ""
    ) -> Sender:
        config = Config(
            allow_private_urls=allow_private, delivery_timeout=timeout, delivery_proxy_url=proxy
        )
        client = WebhookClient(config, dns=dns)
        clients.append(client)
        return Sender(client, timeout=timeout, allow_private_urls=allow_private)

    yield make
    for client in clients:
        await client.aclose()


async def test_a_name_resolving_to_loopback_is_blocked_not_a_timeout(make_sender: Any) -> None:
    receiver = await Receiver.start()
    dns = FakeDns()
    try:
        sender = make_sender(allow_private=False, dns=dns)
        url = f"http://hooks.example.test:{receiver.port}/hook"
        result = await sender.send(url, HEADERS, b"{}")
        assert result.error is ErrorKind.BLOCKED_ADDRESS
        assert "hooks.example.test resolves to 127.0.0.1" in (result.response or "")
        assert dns.asked == ["hooks.example.test"]
        assert receiver.received == []
    finally:
        await receiver.stop()


async def test_the_same_name_is_delivered_to_when_private_addresses_are_allowed(
    make_sender: Any,
) -> None:
    receiver = await Receiver.start()
    try:
        sender = make_sender(allow_private=True, dns=FakeDns())
        result = await sender.send(
            f"http://hooks.example.test:{receiver.port}/hook", HEADERS, b"{}"
        )
        assert (result.status_code, result.error) == (200, None)
        assert len(receiver.received) == 1
    finally:
        await receiver.stop()


async def test_an_ip_literal_is_blocked_before_any_connection(make_sender: Any) -> None:
    result = await make_sender(allow_private=False).send("https://10.0.0.5/x", HEADERS, b"{}")
    assert result.error is ErrorKind.BLOCKED_ADDRESS


async def test_a_refused_connection_is_a_connect_error(make_sender: Any) -> None:
    port = free_port()  # nothing listens there
    result = await make_sender(allow_private=True).send(
        f"http://127.0.0.1:{port}/hook", HEADERS, b"{}"
    )
    assert result.error is ErrorKind.CONNECT_ERROR
    assert result.latency_ms < 1000


async def test_an_endpoint_that_never_answers_is_a_timeout(make_sender: Any) -> None:
    receiver = await Receiver.start([Reply(delay=30)])
    try:
        sender = make_sender(allow_private=True, timeout=0.3)
        result = await sender.send(receiver.url, HEADERS, b"{}")
        assert result.error is ErrorKind.TIMEOUT
        assert 250 <= result.latency_ms < 2000
    finally:
        await receiver.stop()


async def test_a_connection_closed_without_a_reply_is_a_network_error(make_sender: Any) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await make_sender(allow_private=True).send(
            f"http://127.0.0.1:{port}/hook", HEADERS, b"{}"
        )
        assert result.error in (ErrorKind.NETWORK_ERROR, ErrorKind.PROTOCOL_ERROR)
        assert result.error is not ErrorKind.TIMEOUT
    finally:
        server.close()
        await server.wait_closed()


class TestThroughAProxy:
    """DELIVERY_PROXY_URL: the proxy resolves and connects; the destination's name is still
    resolved and checked here first, with the verdict it gets without a proxy."""

    async def test_a_public_name_is_sent_through_the_proxy(self, make_sender: Any) -> None:
        receiver = await Receiver.start()
        proxy = await Proxy.start(hosts={"hooks.example.com": "127.0.0.1"})
        try:
            dns = FakeDns("93.184.216.34")
            sender = make_sender(allow_private=False, dns=dns, proxy=proxy.url)
            url = f"http://hooks.example.com:{receiver.port}/hook?x=1"
            result = await sender.send(url, HEADERS, b'{"a":1}')
            assert (result.status_code, result.error) == (200, None), result
            [forwarded] = proxy.forwarded
            assert forwarded.target == url  # absolute form: the proxy resolves the name
            assert forwarded.body == b'{"a":1}'
            assert dns.asked == ["hooks.example.com"]  # checked here, never connected to
            assert len(receiver.received) == 1
        finally:
            await proxy.stop()
            await receiver.stop()

    async def test_a_name_resolving_to_loopback_is_blocked_before_the_proxy(
        self, make_sender: Any
    ) -> None:
        proxy = await Proxy.start()
        try:
            dns = FakeDns("127.0.0.1")
            sender = make_sender(allow_private=False, dns=dns, proxy=proxy.url)
            for _ in range(2):  # the second from the cached verdict
                result = await sender.send("http://hooks.example.test/hook", HEADERS, b"{}")
                assert result.error is ErrorKind.BLOCKED_ADDRESS
                assert "hooks.example.test resolves to 127.0.0.1" in (result.response or "")
            assert dns.asked == ["hooks.example.test"]
            assert proxy.forwarded == []
        finally:
            await proxy.stop()

    @pytest.mark.parametrize("url", ["http://10.0.0.5/x", "http://[::1]/x", "http://127.1/x"])
    async def test_a_private_ip_literal_is_blocked_before_the_proxy(
        self, make_sender: Any, url: str
    ) -> None:
        proxy = await Proxy.start()
        try:
            sender = make_sender(allow_private=False, dns=FakeDns(), proxy=proxy.url)
            result = await sender.send(url, HEADERS, b"{}")
            assert result.error is ErrorKind.BLOCKED_ADDRESS
            assert proxy.forwarded == []
        finally:
            await proxy.stop()

    async def test_an_unresolvable_name_is_a_connect_error(self, make_sender: Any) -> None:
        class NoSuchName(FakeDns):
            async def resolve(self, host: str, port: int = 0, family: Any = 0) -> Any:
                raise OSError(f"no such name {host}")

        proxy = await Proxy.start()
        try:
            sender = make_sender(allow_private=False, dns=NoSuchName(), proxy=proxy.url)
            result = await sender.send("http://nowhere.example/x", HEADERS, b"{}")
            assert result.error is ErrorKind.CONNECT_ERROR
            assert proxy.forwarded == []
        finally:
            await proxy.stop()

    async def test_a_proxy_that_is_down_is_a_connect_error(self, make_sender: Any) -> None:
        down = f"http://127.0.0.1:{free_port()}"
        sender = make_sender(allow_private=True, proxy=down)
        result = await sender.send("http://hooks.example.com/x", HEADERS, b"{}")
        assert result.error is ErrorKind.CONNECT_ERROR
