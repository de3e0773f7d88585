from __future__ import annotations

import pytest
from redis.asyncio import Redis

from devtools.redis_server import free_port
from tests.conftest import MakeClient

pytestmark = pytest.mark.anyio


async def test_healthz(make_client: MakeClient) -> None:
    response = await (await make_client(auth=False)).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_when_redis_answers(make_client: MakeClient) -> None:
    response = await (await make_client(auth=False)).get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_redis_down_is_a_json_503_not_a_500(make_client: MakeClient) -> None:
    nowhere = Redis(port=free_port(), socket_connect_timeout=0.5)
    client = await make_client(redis=nowhere)
    for response in (
        await client.get("/readyz"),
        await client.get("/api/webhooks/manage"),
        await client.post("/api/webhooks/manage", json={"url": "https://a.example", "events": "*"}),
    ):
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "store_unavailable"
    await nowhere.aclose()
