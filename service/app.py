"""Assembly of the web process: routes, error handlers and the lifespan owning the clients.

Run by the Procfile as `uvicorn service.app:create_app --factory`.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.exceptions import RedisError
from starlette.applications import Starlette

from config import Config, ConfigError
from service import logs
from service.core.clock import Clock, system_clock
from service.core.errors import InvalidSignature
from service.core.ids import format_timestamp
from service.core.metrics import Tally
from service.core.partitions import Partitioning
from service.core.tracking import Signer
from service.deadlines import Deadlines
from service.http import (
    accounts,
    dead_letters,
    deliveries,
    emails,
    event_types,
    events,
    health,
    inbound,
    metrics,
    openapi,
    portal,
    status,
    suppressions,
    tracking,
    tracking_links,
    webhooks,
)
from service.http.errors import exception_handlers
from service.http.server import install_access_log_redaction
from service.http.signing_keys import SigningKeys, signing_keys_client
from service.http.state import STATE_KEY, AppState
from service.providers.base import Provider
from service.providers.registry import PROVIDERS
from service.storage import keys
from service.storage.accounts import AccountStore
from service.storage.capacity import Capacity
from service.storage.connection import RedisClient, autopipeline_for, connect
from service.storage.dead_letters import DeadLetterStore
from service.storage.deliveries import DeliveryStore
from service.storage.events import EventStore
from service.storage.idempotency import IdempotencyStore
from service.storage.metrics import MetricsRecorder, MetricsStore
from service.storage.portal import PortalStore
from service.storage.retries import RetrySchedule
from service.storage.status import StatusStore
from service.storage.suppressions import SuppressionStore
from service.storage.webhooks import WebhookStore

logger = logging.getLogger("mailhooks")

routes = [
    # First, the hot paths, matched before the management API's patterns: the public tracking
    # URLs (the pixel and the click: the busiest), then the providers' callbacks.
    *tracking.routes,
    *inbound.routes,
    *webhooks.routes,
    *deliveries.routes,
    *events.routes,
    *event_types.routes,
    *emails.routes,
    *tracking_links.routes,
    *suppressions.routes,
    *accounts.routes,
    *dead_letters.routes,
    *portal.routes,  # the API's portal-links operation, and the /portal pages
    *status.routes,
    *health.routes,
    *metrics.routes,
    *openapi.routes,
]


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, routes, the OpenAPI document, …) out of
    the cyclic collector's sight: full collections stop walking it. Under load this halved
    the ingest p99 (docs/performance.md). Only the process's own app does it: tests inject
    their Redis client and start many apps in one process, whose garbage it would keep."""
    gc.collect()  # what is garbage already is not kept for good
    gc.freeze()


def check_inbound_secrets(config: Config, providers: Sequence[Provider] = PROVIDERS) -> None:
    """Fail at start-up, naming the variable, rather than refuse every provider request."""
    for provider in providers:
        secret = config.provider_secrets.get(provider.name)
        if not secret:
            continue
        try:
            provider.check_secret(secret)
        except InvalidSignature as exc:
            raise ConfigError(f"{provider.secret_variable}: {exc}") from None
        if provider.url_variable and not config.provider_urls.get(provider.name):
            raise ConfigError(
                f"{provider.url_variable} is required with {provider.secret_variable}: "
                f"{provider.name} signs the URL it posts to, exactly as registered with it"
            )


async def ensure_default_account(state: AppState) -> None:
    """The default account is listed among the accounts once a web process started with
    API_KEYS; routing and API_KEYS do not depend on it, so a Redis that is down at start
    only delays that until the next start."""
    try:
        await state.accounts.ensure_default(now=format_timestamp(state.clock()))
    except (RedisError, OSError) as exc:
        logger.warning("could not record the default account (%s); retried at next start", exc)


def create_app(
    config: Config | None = None, *, redis: RedisClient | None = None, clock: Clock = system_clock
) -> Starlette:
    """The ASGI app. `redis` and `clock` are for tests; by default both come from the system."""
    config = config if config is not None else Config.from_env()
    if not config.api_keys and not config.admin_api_keys:
        raise ConfigError(
            "API_KEYS and ADMIN_API_KEYS are both empty: set API_KEYS (single account) or "
            "ADMIN_API_KEYS (accounts), comma-separated"
        )
    check_inbound_secrets(config)
    logs.configure(config)
    install_access_log_redaction()
    if config.allow_unsigned_inbound:
        logger.warning(
            "ALLOW_UNSIGNED_INBOUND=true: provider events without a configured secret are "
            "accepted unverified (providers configured: %s)",
            config.configured_providers,
        )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        client = redis if redis is not None else connect(config)
        if redis is None:  # the process's own app; a test names its keys with keys.use
            keys.use(Partitioning(config.event_partitions))
        keys_client = signing_keys_client()
        logger.info("web starting with %r", config)
        try:
            # One pipeline for the ingest path: a request's routing lookup and its append
            # travel with the other requests' commands.
            pipeline = autopipeline_for(client)
            event_store = EventStore(
                client,
                maxlen=config.events_maxlen,
                dedup_ttl_seconds=config.dedup_ttl_seconds,
                pipeline=pipeline,
            )
            state = AppState(
                config=config,
                status=StatusStore(client),
                webhooks=WebhookStore(client),
                events=event_store,
                deliveries=DeliveryStore(client),
                retries=RetrySchedule(client, pipeline),
                clock=clock,
                capacity=Capacity(client, limit=config.ingest_memory_limit, clock=clock),
                deadlines=Deadlines(),
                signing_keys=SigningKeys(config.sns_cert_url_pattern, keys_client),
                accounts=AccountStore(client, pipeline),
                suppressions=SuppressionStore(client, pipeline),
                signer=Signer(config.tracking_signing_keys) if config.tracking_enabled else None,
                idempotency=IdempotencyStore(client),
                dead_letters=DeadLetterStore(client),
                metrics=MetricsRecorder(
                    MetricsStore(client), Tally(per_account=config.metrics_per_account)
                ),
                portal=PortalStore(client),
            )
            state.metrics.start()
            if config.single_account:
                await ensure_default_account(state)
            if redis is None:  # the process's own app, not a test's
                logs.lean_records()
                freeze_startup_objects()
            yield {STATE_KEY: state}
            await event_store.drain()  # a trim under way finishes before the client closes
            # The last second's counts; not into a client of the caller's (tests), who may
            # have closed it already.
            await state.metrics.close(flush=redis is None)
        finally:
            await keys_client.aclose()
            if redis is None:
                await client.aclose()

    return Starlette(
        routes=routes,
        exception_handlers=exception_handlers,
        lifespan=lifespan,
    )
