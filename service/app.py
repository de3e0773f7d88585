"""Assembly of the web process: routes, error handlers and the lifespan owning the clients.

Run by the Procfile as `uvicorn service.app:create_app --factory`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from starlette.applications import Starlette

from config import Config, ConfigError
from service import health, openapi, webhooks
from service.clock import Clock, system_clock
from service.errors import exception_handlers
from service.redis import connect
from service.state import STATE_KEY, AppState
from service.store import WebhookStore

logger = logging.getLogger("mailhooks")

routes = [*webhooks.routes, *health.routes, *openapi.routes]


def create_app(
    config: Config | None = None, *, redis: Redis | None = None, clock: Clock = system_clock
) -> Starlette:
    """The ASGI app. `redis` and `clock` are for tests; by default both come from the system."""
    config = config if config is not None else Config.from_env()
    if not config.api_keys:
        raise ConfigError("API_KEYS is empty: set at least one key (comma-separated)")
    logging.getLogger("mailhooks").setLevel(config.log_level)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        client = redis if redis is not None else connect(config)
        logger.info("web starting with %r", config)
        try:
            state = AppState(
                config=config, redis=client, webhooks=WebhookStore(client), clock=clock
            )
            yield {STATE_KEY: state}
        finally:
            if redis is None:
                await client.aclose()

    return Starlette(
        routes=routes,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
