"""What the lifespan hands every request: the shared clients and settings, typed."""

from __future__ import annotations

from dataclasses import dataclass

from arq.connections import ArqRedis
from redis.asyncio import Redis
from starlette.requests import Request

from config import Config
from service.capacity import Capacity
from service.clock import Clock
from service.delivery_store import DeliveryStore
from service.event_store import EventStore
from service.store import WebhookStore


@dataclass(frozen=True, slots=True)
class AppState:
    config: Config
    redis: Redis
    webhooks: WebhookStore
    events: EventStore
    deliveries: DeliveryStore
    jobs: ArqRedis
    clock: Clock
    capacity: Capacity


STATE_KEY = "mailhooks"


def app_state(request: Request) -> AppState:
    state: AppState = getattr(request.state, STATE_KEY)
    return state
