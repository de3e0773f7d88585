"""service.http.server: the Procfile's web process against slow and malformed clients, and
an access log that holds no credential."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import time
from dataclasses import dataclass

import httpx
import pytest

from devtools.redis_server import PrivateRedis, free_port, wait_for_port
from service.http.server import RedactCredentials, redact_query, redact_tracking
from tests.conftest import API_KEY, StartProcess

READ_TIMEOUT = 1.0


class TestRedaction:
    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/api/webhooks/manage?api_key=s3cr3t", "/api/webhooks/manage?api_key=***"),
            ("/x?limit=5&token=abc&after=2", "/x?limit=5&token=***&after=2"),
            ("/x?Authorization=Bearer+k&status=failed", "/x?Authorization=***&status=failed"),
            ("/x?secret", "/x?secret=***"),
            ("/x?limit=5&status=failed", "/x?limit=5&status=failed"),
            ("/x", "/x"),
        ],
    )
    def test_credential_values_are_replaced(self, path: str, expected: str) -> None:
        assert redact_query(path) == expected

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            ("/t/o/AQWJoWFjY291bnQ", "/t/o/***"),
            ("/t/c/AQWJoWFjY291bnQ?x=1", "/t/c/***"),
            ("/t/u/", "/t/u/***"),
            ("/t/", "/t/"),
            ("/api/tracking", "/api/tracking"),
        ],
    )
    def test_tracking_tokens_are_replaced(self, path: str, expected: str) -> None:
        # A token holds the recipient's address.
        assert redact_tracking(path) == expected

    def test_the_filter_rewrites_uvicorns_access_record(self) -> None:
        record = logging.LogRecord(
            "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
            ("127.0.0.1:5000", "GET", "/a?api_key=s3cr3t", "1.1", 401), None,
        )  # fmt: skip
        assert RedactCredentials().filter(record)
        assert "s3cr3t" not in record.getMessage()
        assert "/a?api_key=***" in record.getMessage()


@dataclass
class Web:
    process: subprocess.Popen[bytes]
    port: int

    def output(self) -> str:
        self.process.terminate()
        out, _ = self.process.communicate(timeout=15)
        return out.decode()

    def raw(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture
def web(start_process: StartProcess, redis_server: PrivateRedis) -> Web:
    port = free_port()
    process = start_process(
        "web",
        REDIS_URL=redis_server.url,
        PORT=str(port),
        READ_TIMEOUT=str(READ_TIMEOUT),
        ALLOW_UNSIGNED_INBOUND="true",
        ACCESS_LOG="true",  # off by default; its redaction is tested here
    )
    wait_for_port(port, timeout=20, process=process)
    return Web(process, port)


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long until the server closed `sock` (reading nothing more), failing past `seconds`."""
    started = time.monotonic()
    sock.settimeout(seconds)
    while True:
        data = sock.recv(4096)
        if not data:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise AssertionError("still open")


def response_of(sock: socket.socket) -> tuple[int, dict[str, object]]:
    sock.settimeout(10)
    raw = b""
    while chunk := sock.recv(65536):
        raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


@pytest.mark.redis
class TestSlowClients:
    def test_a_connection_that_sends_nothing_is_closed(self, web: Web) -> None:
        with web.raw() as sock:
            assert closed_within(sock, READ_TIMEOUT + 3) >= READ_TIMEOUT * 0.9

    def test_headers_trickling_in_are_cut_off(self, web: Web) -> None:
        with web.raw() as sock:
            started = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            for _ in range(3):  # a byte now and then, never the blank line
                time.sleep(READ_TIMEOUT / 4)
                sock.sendall(b"X")
            closed_within(sock, READ_TIMEOUT + 3)
            assert time.monotonic() - started < READ_TIMEOUT + 3

    def test_a_trickling_body_gets_a_408(self, web: Web) -> None:
        with web.raw() as sock:
            sock.sendall(
                b"POST /api/webhooks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{"
            )
            status, body = response_of(sock)
        assert status == 408
        assert body["error"]["code"] == "request_timeout"  # type: ignore[index]

    def test_a_kept_alive_connection_still_serves_prompt_requests(self, web: Web) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{web.port}") as client:
            for _ in range(3):
                assert client.get("/healthz").status_code == 200


@pytest.mark.redis
class TestMalformedRequests:
    @pytest.mark.parametrize(
        "request_bytes",
        [
            b"POST /api/webhooks HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 99999999999999999999\r\n\r\n",
            b"FROB /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        ],
        ids=["huge-content-length", "unknown-method", "70kB-request-line"],
    )
    def test_uvicorns_own_400s_are_json(self, web: Web, request_bytes: bytes) -> None:
        with web.raw() as sock:
            sock.sendall(request_bytes)
            status, body = response_of(sock)
        assert status == 400
        assert body["error"]["code"] == "bad_request"  # type: ignore[index]


@pytest.mark.redis
def test_an_api_key_in_the_query_string_never_reaches_the_log(web: Web) -> None:
    key = "leaked-key-0123456789abcdef"
    with httpx.Client(base_url=f"http://127.0.0.1:{web.port}") as client:
        assert client.get("/api/webhooks/manage", params={"api_key": key}).status_code == 401
        assert client.get("/api/webhooks/manage", params={"token": key}).status_code == 401
        ok = client.get("/api/webhooks/manage", headers={"Authorization": f"Bearer {API_KEY}"})
        assert ok.status_code == 200
    output = web.output()
    assert "api_key=***" in output
    assert key not in output
    assert API_KEY not in output
