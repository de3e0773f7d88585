"""Configuration, read once from the environment at start-up.

Every variable is documented in the README's Configuration table. A bad value raises
`ConfigError` naming the variable (never echoing a secret's value).
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

from service.core.partitions import MAX_PARTITIONS
from service.providers.base import Provider
from service.providers.registry import PROVIDERS

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
LOG_FORMATS = ("text", "json")
SSL_CERT_REQS = ("none", "optional", "required")
# Seconds before each attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
MIN_API_KEY_LENGTH = 16
# A tracking signing key must resist guessing: 32 characters (`openssl rand -hex 32` gives 64).
MIN_TRACKING_KEY_LENGTH = 32
MIN_PORTAL_SECRET_LENGTH = 32
# A CSP source the portal may be framed by: 'self', or a scheme and host (a leading *.
# allowed, as CSP allows), with an optional port; nothing that could end the header's value.
FRAME_ANCESTOR = re.compile(r"'self'|https?://(\*\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?")
# Where Amazon SNS publishes its signing certificates: HTTPS, an `sns.<region>` host of Amazon
# (`.com.cn` in China), a `.pem` file. Anchored on the `/` after the host, so that
# `sns.<region>.amazonaws.com.example.net` or `…amazonaws.com@example.net` cannot match.
DEFAULT_SNS_CERT_URL_PATTERN = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[^?#@\\\s]*\.pem"


class ConfigError(ValueError):
    """An environment variable is missing or malformed; the message names it."""


@dataclass(frozen=True, kw_only=True)
class Config:
    redis_url: str = field(default=DEFAULT_REDIS_URL, repr=False)
    # Heroku Redis serves rediss:// with a self-signed certificate, hence "none" by default.
    redis_ssl_cert_reqs: str = "none"
    # REDIS_URL names any node of a Redis Cluster: web and worker use redis-py's cluster client.
    redis_cluster: bool = False
    # Partitions of the key space (service.core.partitions): 1 on a single Redis (the key names
    # from before partitions), 16 on a cluster unless set. Fixed for a deployment's life.
    event_partitions: int = 1
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
    # `secret_variable` (or variables: `Provider.read_secret`), set ones only; each must sign
    # or authenticate that provider's requests (for Amazon SES, which SNS signs with its own
    # certificates, the allowed topics instead).
    provider_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Provider name → the URL read from its `url_variable` (set ones only), for a provider that
    # signs the URL it posts to (Mandrill). Hidden from repr: it may hold credentials.
    provider_urls: Mapping[str, str] = field(default_factory=dict, repr=False)
    allow_unsigned_inbound: bool = False
    # The only URLs SNS signing certificates are fetched from (a regular expression that the
    # whole URL must match).
    sns_cert_url_pattern: str = DEFAULT_SNS_CERT_URL_PATTERN
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
    # Fair delivery (docs/delivery.md): at most this many of one account's events in flight in
    # a worker process, the top of its adaptive window (as many as DELIVERY_CONCURRENCY's
    # attempts: one account alone may use the whole worker).
    account_concurrency: int = 200
    disable_after_seconds: int = 5 * 86400
    delivery_retention_count: int = 10_000
    delivery_retention_seconds: int = 30 * 86400
    # First-party tracking (docs/tracking.md): where the /t/ routes are public, and the keys
    # that sign their tokens (the first signs, every one verifies). Both or neither.
    public_url: str = ""
    tracking_signing_keys: tuple[str, ...] = field(default=(), repr=False)
    # Opens and clicks from these networks are flagged machine "data_centre".
    tracking_machine_networks: tuple[Network, ...] = ()
    # A click this soon after its link was made is flagged machine "early_click" (0: never).
    tracking_early_click_seconds: float = 5.0
    # An HTTP proxy every delivery goes through (http:// or https://, credentials allowed),
    # "" for none. Hidden from repr but for its redacted form: it may hold credentials.
    delivery_proxy_url: str = field(default="", repr=False)
    # A stream entry whose processing failed this many times is set aside as a dead letter.
    dead_letter_after: int = 5
    # GET /metrics asks for this Bearer token when set (unauthenticated when empty).
    metrics_token: str = field(default="", repr=False)
    # Per-account metric families (one series per account: off by default).
    metrics_per_account: bool = False
    # The customer portal (docs/portal.md): off without a secret to sign its links with.
    portal_secret: str = field(default="", repr=False)
    portal_session_seconds: int = 3600
    # CSP frame-ancestors sources allowed to embed the portal; none: 'none'.
    portal_frame_ancestors: tuple[str, ...] = ()

    @property
    def delivery_proxy_url_redacted(self) -> str:
        """DELIVERY_PROXY_URL with any credentials replaced, for logs ("" when unset)."""
        return _redacted(self.delivery_proxy_url) if self.delivery_proxy_url else ""

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
            f"Config(redis_url={self.redis_url_redacted!r}, redis_cluster={self.redis_cluster}, "
            f"event_partitions={self.event_partitions}, port={self.port}, "
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
            f"sns_cert_url_pattern={self.sns_cert_url_pattern!r}, "
            f"dedup_ttl_seconds={self.dedup_ttl_seconds}, events_maxlen={self.events_maxlen}, "
            f"ingest_memory_limit={self.ingest_memory_limit}, "
            f"ingest_timeout={self.ingest_timeout}, "
            f"delivery_timeout={self.delivery_timeout}, retry_schedule={self.retry_schedule}, "
            f"endpoint_concurrency={self.endpoint_concurrency}, "
            f"delivery_concurrency={self.delivery_concurrency}, "
            f"account_concurrency={self.account_concurrency}, "
            f"disable_after_seconds={self.disable_after_seconds}, "
            f"public_url={self.public_url!r}, "
            f"tracking_signing_keys=<{len(self.tracking_signing_keys)} hidden>, "
            f"tracking_machine_networks=<{len(self.tracking_machine_networks)}>, "
            f"tracking_early_click_seconds={self.tracking_early_click_seconds}, "
            f"dead_letter_after={self.dead_letter_after}, "
            f"metrics_token=<{'set' if self.metrics_token else 'unset'}>, "
            f"metrics_per_account={self.metrics_per_account}, "
            f"portal={'on' if self.portal_secret else 'off'}, "
            f"portal_session_seconds={self.portal_session_seconds}, "
            f"portal_frame_ancestors={self.portal_frame_ancestors}, "
            f"delivery_proxy_url={self.delivery_proxy_url_redacted!r})"
        )

    @property
    def tracking_enabled(self) -> bool:
        """PUBLIC_URL and TRACKING_SIGNING_KEY are set: tracking links can be made."""
        return bool(self.public_url and self.tracking_signing_keys)

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

        def variable(name: str) -> str:
            return get(name, _secret, "")

        secrets = {p.name: p.read_secret(variable) for p in providers}
        public_url = get("PUBLIC_URL", _public_url, "")
        tracking_keys: tuple[str, ...] = get("TRACKING_SIGNING_KEY", _tracking_keys, ())
        if bool(public_url) != bool(tracking_keys):
            missing = "TRACKING_SIGNING_KEY" if public_url else "PUBLIC_URL"
            present = "PUBLIC_URL" if public_url else "TRACKING_SIGNING_KEY"
            raise ConfigError(f"{missing} is required with {present}: tracking needs both")
        cluster = get("REDIS_CLUSTER", _bool, False)
        urls = {p.name: get(p.url_variable, _absolute_url, "") for p in providers if p.url_variable}
        return cls(
            redis_url=get("REDIS_URL", _redis_url, DEFAULT_REDIS_URL),
            redis_ssl_cert_reqs=get("REDIS_SSL_CERT_REQS", _choice(SSL_CERT_REQS), "none"),
            redis_cluster=cluster,
            event_partitions=get(
                "EVENT_PARTITIONS", _int_between(1, MAX_PARTITIONS), 16 if cluster else 1
            ),
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
            provider_urls=MappingProxyType({name: url for name, url in urls.items() if url}),
            allow_unsigned_inbound=get("ALLOW_UNSIGNED_INBOUND", _bool, False),
            sns_cert_url_pattern=get("SNS_CERT_URL_PATTERN", _regex, DEFAULT_SNS_CERT_URL_PATTERN),
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
            account_concurrency=get("ACCOUNT_CONCURRENCY", _int_between(1, 10_000), 200),
            disable_after_seconds=get("DISABLE_AFTER", _int_between(60, 365 * 86400), 5 * 86400),
            delivery_retention_count=get(
                "DELIVERY_RETENTION_COUNT", _int_between(10, 10**7), 10_000
            ),
            delivery_retention_seconds=get(
                "DELIVERY_RETENTION_SECONDS", _int_between(3600, 365 * 86400), 30 * 86400
            ),
            public_url=public_url,
            tracking_signing_keys=tracking_keys,
            tracking_machine_networks=get("TRACKING_MACHINE_NETWORKS", _networks, ()),
            tracking_early_click_seconds=get(
                "TRACKING_EARLY_CLICK_SECONDS", _float_between(0, 3600), 5.0
            ),
            dead_letter_after=get("DEAD_LETTER_AFTER", _int_between(1, 1000), 5),
            metrics_token=get("METRICS_TOKEN", _metrics_token, ""),
            metrics_per_account=get("METRICS_PER_ACCOUNT", _bool, False),
            portal_secret=get("PORTAL_SECRET", _portal_secret, ""),
            portal_session_seconds=get(
                "PORTAL_SESSION_SECONDS", _int_between(60, 30 * 86400), 3600
            ),
            portal_frame_ancestors=get("PORTAL_FRAME_ANCESTORS", _frame_ancestors, ()),
            delivery_proxy_url=get("DELIVERY_PROXY_URL", _proxy_url, ""),
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


def _regex(name: str, raw: str) -> str:
    try:
        re.compile(raw)
    except re.error as exc:
        raise ConfigError(f"{name} is not a regular expression: {exc}") from None
    return raw


def _secret(name: str, raw: str) -> str:
    return raw


def _metrics_token(name: str, raw: str) -> str:
    if len(raw) < MIN_API_KEY_LENGTH:
        raise ConfigError(f"{name} must be at least {MIN_API_KEY_LENGTH} characters")
    return raw


def _metadata_key(name: str, raw: str) -> str:
    if len(raw) > 100:
        raise ConfigError(f"{name} must be at most 100 characters")
    return raw


def _absolute_url(name: str, raw: str) -> str:
    # Never echo the value: a URL may carry basic-auth credentials.
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an absolute http:// or https:// URL")
    return raw


def _proxy_url(name: str, raw: str) -> str:
    # Never echo the value: it may carry the proxy's credentials.
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// or https:// proxy URL with a host")
    if port == 0 or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(
            f"{name} must be a proxy's scheme, host and port (credentials allowed), "
            "with no path, query or fragment"
        )
    return raw


def _redacted(url: str) -> str:
    """`url` with its credentials, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


def _api_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_API_KEY_LENGTH:
            # Never echo the key itself: say which one, by position.
            raise ConfigError(
                f"{name}: key #{position} is shorter than {MIN_API_KEY_LENGTH} characters"
            )
    return keys


def _public_url(name: str, raw: str) -> str:
    """An origin: http(s), a host, an optional port; no path, query, fragment or credentials
    (the /t/ routes are served at the root). A trailing slash is dropped."""
    parts = urlsplit(raw)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or any(ch.isspace() for ch in raw)
    ):
        raise ConfigError(
            f"{name} must be an origin such as https://t.example.com: http(s), a host, no "
            "path, query or credentials"
        )
    return raw.rstrip("/")


def _tracking_keys(name: str, raw: str) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in raw.split(",") if key.strip())
    for position, key in enumerate(keys, start=1):
        if len(key) < MIN_TRACKING_KEY_LENGTH:
            raise ConfigError(
                f"{name}: key #{position} is shorter than {MIN_TRACKING_KEY_LENGTH} characters"
            )
    return keys


def _networks(name: str, raw: str) -> tuple[Network, ...]:
    networks = []
    for part in raw.split(","):
        if not part.strip():
            continue
        try:
            networks.append(ipaddress.ip_network(part.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{name}: {part.strip()!r} is not a network (CIDR)") from None
    return tuple(networks)


def _portal_secret(name: str, raw: str) -> str:
    if len(raw) < MIN_PORTAL_SECRET_LENGTH:
        raise ConfigError(f"{name} must be at least {MIN_PORTAL_SECRET_LENGTH} characters")
    return raw


def _frame_ancestors(name: str, raw: str) -> tuple[str, ...]:
    sources = tuple(part for part in re.split(r"[\s,]+", raw) if part)
    for source in sources:
        if not FRAME_ANCESTOR.fullmatch(source):
            raise ConfigError(
                f"{name}: {source!r} is not 'self' or an origin such as https://app.example.com"
            )
    return sources
