"""What the lifespan hands every request: the shared clients and settings, typed."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import Request

from config import Config
from service.core.clock import Clock
from service.core.tracking import Signer
from service.deadlines import Deadlines
from service.http.signing_keys import SigningKeys
from service.storage.accounts import AccountStore
from service.storage.capacity import Capacity
from service.storage.dead_letters import DeadLetterStore
from service.storage.deliveries import DeliveryStore
from service.storage.events import EventStore
from service.storage.idempotency import IdempotencyStore
from service.storage.metrics import MetricsRecorder
from service.storage.portal import PortalStore
from service.storage.retries import RetrySchedule
from service.storage.status import StatusStore
from service.storage.suppressions import SuppressionStore
from service.storage.webhooks import WebhookStore


@dataclass(frozen=True, slots=True)
class AppState:
    config: Config
    status: StatusStore
    webhooks: WebhookStore
    events: EventStore
    deliveries: DeliveryStore
    # Attempts scheduled for the worker: manual retries, recover, test events.
    retries: RetrySchedule
    clock: Clock
    capacity: Capacity
    # READ_TIMEOUT and INGEST_TIMEOUT, on one coarse timer (asyncio.timeout per request
    # costs a timer handle each; see service/deadlines.py).
    deadlines: Deadlines
    # The certificates SNS signs with, fetched and cached per URL.
    signing_keys: SigningKeys
    accounts: AccountStore
    # Idempotency-Key records (service/http/idempotency.py).
    idempotency: IdempotencyStore
    dead_letters: DeadLetterStore
    # This process's counts, flushed to Redis once a second (GET /metrics reads them there).
    metrics: MetricsRecorder
    # The customer portal's links and sessions (docs/portal.md).
    portal: PortalStore
    suppressions: SuppressionStore
    # Signs and verifies tracking tokens; None when tracking is not configured.
    signer: Signer | None = None
    # Per web process: the minute each account key's last use was last written.
    key_use: dict[str, int] = field(default_factory=dict)
    # Per web process: accounts seen to exist, and until when (monotonic seconds) that is
    # trusted without asking Redis again (routing inbound events; docs/accounts.md).
    known_accounts: dict[str, float] = field(default_factory=dict)


STATE_KEY = "mailhooks"


def app_state(request: Request) -> AppState:
    state: AppState = getattr(request.state, STATE_KEY)
    return state
