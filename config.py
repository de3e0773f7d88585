"""Configuration, read once from the environment at start-up.

Every variable is documented in the README's Configuration table. A bad value raises
`ConfigError` naming the variable (never echoing a secret's value).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from service.providers.base import Provider
from service.providers.registry import PROVIDERS

T = TypeVar("T")

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("text", "json")
SSL_CERT_REQS = ("none", "optional", "required")
# Seconds before each attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MIN_API_KEY_LENGTH = 16


class ConfigError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


@dataclass(frozen=True, kw_only=True)
class Config:
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)
    # Heroku Redis serves rediss:// with a self-signed certificate, hence "none" by default.
    redis_ssl_cert_reqs: str = "none"
    port: int = 8000
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    # Operators' keys: the accounts API, and any account's routes with X-Account-Id.
    admin_api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_webhooks_per_account: int = 100
    # The provider metadata (tag, custom arg, user variable) naming an event's account.
    account_metadata_key: str = "account_id"
    # How long POST /api/emails registers an email id as the account's.
    email_owner_ttl_seconds: int = 30 * 86400
    max_body_bytes: int = 1024 * 1024
    # A request's headers, and then its body, must each arrive within this many seconds.
    read_timeout: float = 10.0
    allow_http_urls: bool = False
    allow_private_urls: bool = False
    log_level: str = "INFO"
    # "text" for people, "json" for a log drain: one object per line (service/logs.py).
    log_format: str = "text"
    # uvicorn's line per request: off, as Heroku's router logs every request already, and it
    # costs 11-17 % of ingest throughput (docs/performance.md).
    access_log: bool = False
    # Inbound provider verification: provider name → the secret read from its
    # `secret_variable`, set ones only; each must sign that provider's requests.
    provider_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    allow_unsigned_inbound: bool = False
    dedup_ttl_seconds: int = 72 * 3600
    events_maxlen: int = 1_000_000
    # Ingest answers 503 from this fraction of Redis's maxmemory, leaving the worker room.
    ingest_memory_limit: float = 0.9
    # Inbound requests answer 503 when Redis has not stored their events within this.
    ingest_timeout: float = 1.0
    # Delivery (the worker).
    delivery_timeout: float = 15.0
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    endpoint_concurrency: int = 10
    delivery_concurrency: int = 200
    disable_after_seconds: int = 5 * 86400
    delivery_retention_count: int = 10_000
    delivery_retention_seconds: int = 30 * 86400

    @property
    def redis_url_redacted(self) -> str:
        """REDIS_URL with any password replaced, for logs."""
        parts = urlsplit(self.redis_url)
        if parts.password is None:
            return self.redis_url
        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def __repr__(self) -> str:
        return (
            f"Config(redis_url={self.redis_url_redacted!r}, port={self.port}, "
            f"api_keys=<{len(self.api_keys)} hidden>, "
            f"admin_api_keys=<{len(self.admin_api_keys)} hidden>, "
            f"max_webhooks_per_account={self.max_webhooks_per_account}, "
            f"account_metadata_key={self.account_metadata_key!r}, "
            f"email_owner_ttl_seconds={self.email_owner_ttl_seconds}, "
            f"max_body_bytes={self.max_body_bytes}, "
            f"read_timeout={self.read_timeout}, "
            f"allow_http_urls={self.allow_http_urls}, "
            f"allow_private_urls={self.allow_private_urls}, "
            f"log_level={self.log_level!r}, log_format={self.log_format!r}, "
            f"access_log={self.access_log}, inbound_secrets=<{self.configured_providers}>, "
            f"allow_unsigned_inbound={self.allow_unsigned_inbound}, "
            f"dedup_ttl_seconds={self.dedup_ttl_seconds}, events_maxlen={self.events_maxlen}, "
            f"ingest_memory_limit={self.ingest_memory_limit}, "
            f"ingest_timeout={self.ingest_timeout}, "
            f"delivery_timeout={self.delivery_timeout}, retry_schedule={self.retry_schedule}, "
            f"endpoint_concurrency={self.endpoint_concurrency}, "
            f"delivery_concurrency={self.delivery_concurrency}, "
            f"disable_after_seconds={self.disable_after_seconds})"
        )

    @property
    def single_account(self) -> bool:
        """API_KEYS set: the default account receives every event that names no account."""
        return bool(self.api_keys)

    @property
    def configured_providers(self) -> str:
        """Which inbound providers have a verification secret, for logs (never the secrets)."""
        secrets = self.provider_secrets.items()
        return ",".join(name for name, value in secrets if value) or "none"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, providers: Sequence[Provider] = PROVIDERS
    ) -> Config:
        """The config from `environ` (default `os.environ`); one secret variable per provider
        of `providers`."""
        env = os.environ if environ is None else environ

        def get(name: str, parse: Callable[[str, str], T], default: T) -> T:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            return parse(name, raw.strip())

        secrets = {p.name: get(p.secret_variable, _secret, "") for p in providers}
        return cls(
            redis_url=get("REDIS_URL", _redis_url, DEFAULT_REDIS_URL),
            redis_ssl_cert_reqs=get("REDIS_SSL_CERT_REQS", _choice(SSL_CERT_REQS), "none"),
            port=get("PORT", _int_between(1, 65535), 8000),
            api_keys=get("API_KEYS", _api_keys, ()),
            admin_api_keys=get("ADMIN_API_KEYS", _api_keys, ()),
            max_webhooks_per_account=get("MAX_WEBHOOKS_PER_ACCOUNT", _int_between(1, 100_000), 100),
            account_metadata_key=get("ACCOUNT_METADATA_KEY", _metadata_key, "account_id"),
            email_owner_ttl_seconds=get(
                "EMAIL_OWNER_TTL", _int_between(3600, 365 * 86400), 30 * 86400
            ),
            max_body_bytes=get("MAX_BODY_BYTES", _int_between(1024, 1024**3), 1024 * 1024),
            read_timeout=get("READ_TIMEOUT", _float_between(1, 300), 10.0),
            allow_http_urls=get("ALLOW_HTTP_URLS", _bool, False),
            allow_private_urls=get("ALLOW_PRIVATE_URLS", _bool, False),
            log_level=get("LOG_LEVEL", _choice(LOG_LEVELS), "INFO"),
            log_format=get("LOG_FORMAT", _choice(LOG_FORMATS), "text"),
            access_log=get("ACCESS_LOG", _bool, False),
            provider_secrets=MappingProxyType(
                {name: secret for name, secret in secrets.items() if secret}
            ),
            allow_unsigned_inbound=get("ALLOW_UNSIGNED_INBOUND", _bool, False),
            dedup_ttl_seconds=get("DEDUP_TTL_SECONDS", _int_between(60, 90 * 86400), 72 * 3600),
            events_maxlen=get("EVENTS_MAXLEN", _int_between(1000, 10**9), 1_000_000),
            ingest_timeout=get("INGEST_TIMEOUT", _float_between(0.1, 60), 1.0),
            ingest_memory_limit=get(
                "INGEST_MEMORY_LIMIT", _between(float, "a fraction", 0.1, 1.0), 0.9
            ),
            delivery_timeout=get("DELIVERY_TIMEOUT", _float_between(0.1, 300), 15.0),
            retry_schedule=get("RETRY_SCHEDULE", _schedule, DEFAULT_RETRY_SCHEDULE),
            endpoint_concurrency=get("ENDPOINT_CONCURRENCY", _int_between(1, 1000), 10),
            delivery_concurrency=get("DELIVERY_CONCURRENCY", _int_between(1, 10_000), 200),
            disable_after_seconds=get("DISABLE_AFTER", _int_between(60, 365 * 86400), 5 * 86400),
            delivery_retention_count=get(
                "DELIVERY_RETENTION_COUNT", _int_between(10, 10**7), 10_000
            ),
            delivery_retention_seconds=get(
                "DELIVERY_RETENTION_SECONDS", _int_between(3600, 365 * 86400), 30 * 86400
            ),
        )


def _redis_url(name: str, raw: str) -> str:
    scheme = urlsplit(raw).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL")
    return raw


N = TypeVar("N", int, float)


def _between(kind: Callable[[str], N], what: str, low: N, high: N) -> Callable[[str, str], N]:
    def parse(name: str, raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be {what}, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
        return value

    return parse


def _int_between(low: int, high: int) -> Callable[[str, str], int]:
    return _between(int, "an integer", low, high)


def _float_between(low: float, high: float) -> Callable[[str, str], float]:
    return _between(float, "a number of seconds", low, high)


def _fraction(low: float, high: float) -> Callable[[str, str], float]:
    return _between(float, "a fraction", low, high)


def _schedule(name: str, raw: str) -> tuple[float, ...]:
    parse = _float_between(0, 7 * 86400)
    delays = tuple(parse(name, part.strip()) for part in raw.split(",") if part.strip())
    if not delays:
        raise ConfigError(f"{name} must list at least one delay in seconds")
    return delays


def _bool(name: str, raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _choice(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        # LOG_LEVEL is conventionally upper case, the other choices lower case; accept either.
        for choice in choices:
            if raw.lower() == choice.lower():
                return choice
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")

    return parse


def _secret(name: str, raw: str) -> str:
    return raw


def _metadata_key(name: str, raw: str) -> str:
    if len(raw) > 100:
        raise ConfigError(f"{name} must be at most 100 characters")
    return raw


def _api_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_API_KEY_LENGTH:
            # Never echo the key itself: say which one, by position.
            raise ConfigError(
                f"{name}: key #{position} is shorter than {MIN_API_KEY_LENGTH} characters"
            )
    return keys
