"""The web process's assembly (service/app.py)."""

from __future__ import annotations

import gc

import pytest
from redis.asyncio import Redis

from config import Config
from devtools.redis_server import PrivateRedis
from service.app import create_app
from tests.conftest import API_KEY

pytestmark = [pytest.mark.anyio, pytest.mark.redis]


async def test_the_process_app_freezes_its_start_up_objects(redis_server: PrivateRedis) -> None:
    gc.unfreeze()
    app = create_app(Config(redis_url=redis_server.url, api_keys=(API_KEY,)))
    try:
        async with app.router.lifespan_context(app):
            # Modules, routes and clients now sit outside the cyclic collector's generations.
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


async def test_an_app_given_a_client_by_a_test_freezes_nothing(real_redis: Redis) -> None:
    gc.unfreeze()
    app = create_app(Config(api_keys=(API_KEY,)), redis=real_redis)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
