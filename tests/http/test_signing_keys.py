"""Fetching published signing keys: only allowed URLs, no redirects, size and time limits, an LRU
cache, one fetch for concurrent requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from config import DEFAULT_SNS_CERT_URL_PATTERN
from service.core.errors import InvalidSignature, SigningKeyUnavailable
from service.http.signing_keys import SigningKeys

pytestmark = pytest.mark.anyio

CERT_URL = "https://sns.us-west-2.amazonaws.com/SimpleNotificationService-f3ecfb72.pem"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler answering `answer(request)` and recording what was asked."""

    def __init__(self, answer: Handler | None = None) -> None:
        self.requested: list[str] = []
        self._answer = answer or (lambda request: httpx.Response(200, content=PEM))

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requested.append(str(request.url))
        await asyncio.sleep(0)  # let concurrent requests pile up on one fetch
        return self._answer(request)


def keys(recorder: Recorder, *, cache_size: int = 32) -> SigningKeys:
    client = httpx.AsyncClient(transport=httpx.MockTransport(recorder), follow_redirects=False)
    return SigningKeys(DEFAULT_SNS_CERT_URL_PATTERN, client, cache_size=cache_size)


class TestAllowedUrls:
    @pytest.mark.parametrize(
        "url",
        [
            "http://sns.us-west-2.amazonaws.com/cert.pem",
            "https://sns.us-west-2.amazonaws.com.example.net/cert.pem",
            "https://sns.us-west-2.amazonaws.com@example.net/cert.pem",
            "https://sns.us-west-2.amazonaws.com/a@example.net/cert.pem",
            "https://sns.us-west-2.amazonaws.com\\@example.net/cert.pem",
            "https://sqs.us-west-2.amazonaws.com/cert.pem",
            "https://sns.us-west-2.amazonaws.com/cert.pem?x=1",
            "https://sns.us-west-2.amazonaws.com/cert.txt",
            "https://sns.us-west-2.amazonaws.com:8443/cert.pem",
            "https://169.254.169.254/latest/meta-data/cert.pem",
            "https://sns.us-west-2.amazonaws.com/" + "a" * 2100 + ".pem",
            "",
        ],
    )
    async def test_anything_else_is_refused_unfetched(self, url: str) -> None:
        recorder = Recorder()
        with pytest.raises(InvalidSignature, match="not allowed"):
            await keys(recorder).get(url)
        assert recorder.requested == []

    @pytest.mark.parametrize(
        "url",
        [
            CERT_URL,
            "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-1.pem",
            "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-1.pem",
        ],
    )
    async def test_amazons_are_fetched(self, url: str) -> None:
        recorder = Recorder()
        assert await keys(recorder).get(url) == PEM
        assert recorder.requested == [url]


class TestCache:
    async def test_one_fetch_per_url(self) -> None:
        recorder = Recorder()
        signing_keys = keys(recorder)
        for _ in range(3):
            assert await signing_keys.get(CERT_URL) == PEM
        assert recorder.requested == [CERT_URL]

    async def test_concurrent_requests_share_one_fetch(self) -> None:
        recorder = Recorder()
        signing_keys = keys(recorder)
        found = await asyncio.gather(*(signing_keys.get(CERT_URL) for _ in range(20)))
        assert found == [PEM] * 20
        assert recorder.requested == [CERT_URL]

    async def test_least_recently_used_goes_first(self) -> None:
        recorder = Recorder(lambda request: httpx.Response(200, content=request.url.path.encode()))
        signing_keys = keys(recorder, cache_size=2)
        one, two, three = (f"https://sns.us-east-1.amazonaws.com/{n}.pem" for n in (1, 2, 3))
        for url in (one, two, one, three, one, two):
            await signing_keys.get(url)
        # `two` was evicted by `three` (`one` had just been used), then fetched again.
        assert recorder.requested == [one, two, three, two]

    async def test_a_failure_is_not_kept(self) -> None:
        answers = [httpx.Response(503), httpx.Response(200, content=PEM)]
        recorder = Recorder(lambda request: answers.pop(0))
        signing_keys = keys(recorder)
        with pytest.raises(SigningKeyUnavailable):
            await signing_keys.get(CERT_URL)
        assert await signing_keys.get(CERT_URL) == PEM


class TestRefusals:
    @pytest.mark.parametrize(
        ("response", "message"),
        [
            (httpx.Response(404), "answered 404"),
            (httpx.Response(403), "answered 403"),
            (httpx.Response(301, headers={"Location": "http://169.254.169.254/"}), "answered 301"),
            (httpx.Response(200, content=b"x" * 70_000), "larger than 65536 bytes"),
        ],
    )
    async def test_no_key_there(self, response: httpx.Response, message: str) -> None:
        recorder = Recorder(lambda request: response)
        with pytest.raises(InvalidSignature, match=message):
            await keys(recorder).get(CERT_URL)
        assert recorder.requested == [CERT_URL]  # the redirect was not followed

    @pytest.mark.parametrize("status", [500, 502, 503])
    async def test_a_failing_host_is_a_retry(self, status: int) -> None:
        with pytest.raises(SigningKeyUnavailable, match=f"answered {status}; retry"):
            await keys(Recorder(lambda request: httpx.Response(status))).get(CERT_URL)

    async def test_an_unreachable_host_is_a_retry(self) -> None:
        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("connection refused", request=request)

        with pytest.raises(SigningKeyUnavailable, match="ConnectError"):
            await keys(Recorder(refuse)).get(CERT_URL)

    async def test_a_slow_host_is_a_retry(self) -> None:
        async def slow(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(5)
            return httpx.Response(200, content=PEM)

        client = httpx.AsyncClient(transport=httpx.MockTransport(slow))
        signing_keys = SigningKeys(DEFAULT_SNS_CERT_URL_PATTERN, client, timeout=0.05)
        with pytest.raises(SigningKeyUnavailable, match=r"within 0\.05 s"):
            await signing_keys.get(CERT_URL)
