from __future__ import annotations

import pytest

from config import DEFAULT_SNS_CERT_URL_PATTERN, Config, ConfigError


class TestFromEnv:
    def test_defaults(self) -> None:
        config = Config.from_env({})
        assert config.redis_url == "redis://localhost:6379/0"
        assert config.port == 8000
        assert config.api_keys == ()
        assert config.max_body_bytes == 1024 * 1024
        assert config.allow_http_urls is False
        assert config.allow_private_urls is False
        assert config.log_level == "INFO"
        assert config.redis_ssl_cert_reqs == "none"
        assert config.log_format == "text"
        assert config.access_log is False
        assert config.sns_cert_url_pattern == DEFAULT_SNS_CERT_URL_PATTERN
        assert config.dead_letter_after == 5
        assert config.portal_secret == ""  # the portal is off
        assert config.portal_session_seconds == 3600
        assert config.portal_frame_ancestors == ()

    def test_every_variable_is_read(self) -> None:
        config = Config.from_env(
            {
                "REDIS_URL": "rediss://:pw@example.com:6380/2",
                "REDIS_SSL_CERT_REQS": "required",
                "PORT": "5000",
                "API_KEYS": " key-aaaaaaaaaaaaaaaa , key-bbbbbbbbbbbbbbbb,",
                "MAX_BODY_BYTES": "2048",
                "ALLOW_HTTP_URLS": "true",
                "ALLOW_PRIVATE_URLS": "1",
                "LOG_LEVEL": "debug",
                "LOG_FORMAT": "JSON",
                "ACCESS_LOG": "on",
                "INBOUND_SECRET": "generic-secret",
                "RESEND_WEBHOOK_SECRET": "whsec_abc",
                "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkw",
                "MAILGUN_WEBHOOK_SIGNING_KEY": "mg-key",
                "ALLOW_UNSIGNED_INBOUND": "yes",
                "SNS_CERT_URL_PATTERN": r"http://127\.0\.0\.1:[0-9]+/.*\.pem",
                "DEDUP_TTL_SECONDS": "3600",
                "EVENTS_MAXLEN": "5000",
                "INGEST_MEMORY_LIMIT": "0.75",
                "DELIVERY_TIMEOUT": "2.5",
                "RETRY_SCHEDULE": "0, 0.5,60",
                "ENDPOINT_CONCURRENCY": "3",
                "DELIVERY_CONCURRENCY": "50",
                "DISABLE_AFTER": "86400",
                "DELIVERY_RETENTION_COUNT": "100",
                "DELIVERY_RETENTION_SECONDS": "7200",
                "ADMIN_API_KEYS": "admin-aaaaaaaaaaaaaaaa",
                "MAX_WEBHOOKS_PER_ACCOUNT": "7",
                "ACCOUNT_METADATA_KEY": "tenant",
                "EMAIL_OWNER_TTL": "86400",
                "DELIVERY_PROXY_URL": "http://egress:pr0xy-pass@proxy.internal:3128",
                "DEAD_LETTER_AFTER": "3",
                "PORTAL_SECRET": "portal-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "PORTAL_SESSION_SECONDS": "900",
                "PORTAL_FRAME_ANCESTORS": "'self' https://app.example.com, https://*.example.net:8443",
            }
        )
        assert config.redis_url == "rediss://:pw@example.com:6380/2"
        assert config.redis_ssl_cert_reqs == "required"
        assert config.port == 5000
        assert config.api_keys == ("key-aaaaaaaaaaaaaaaa", "key-bbbbbbbbbbbbbbbb")
        assert config.max_body_bytes == 2048
        assert config.allow_http_urls is True
        assert config.allow_private_urls is True
        assert config.log_level == "DEBUG"
        assert config.log_format == "json"
        assert config.access_log is True
        assert config.provider_secrets == {
            "generic": "generic-secret",
            "resend": "whsec_abc",
            "sendgrid": "MFkw",
            "mailgun": "mg-key",
        }
        assert config.allow_unsigned_inbound is True
        assert config.sns_cert_url_pattern == r"http://127\.0\.0\.1:[0-9]+/.*\.pem"
        assert config.dedup_ttl_seconds == 3600
        assert config.ingest_memory_limit == 0.75
        assert config.events_maxlen == 5000
        assert config.delivery_timeout == 2.5
        assert config.retry_schedule == (0.0, 0.5, 60.0)
        assert config.endpoint_concurrency == 3
        assert config.delivery_concurrency == 50
        assert config.disable_after_seconds == 86400
        assert config.delivery_retention_count == 100
        assert config.delivery_retention_seconds == 7200
        assert config.admin_api_keys == ("admin-aaaaaaaaaaaaaaaa",)
        assert config.max_webhooks_per_account == 7
        assert config.account_metadata_key == "tenant"
        assert config.email_owner_ttl_seconds == 86400
        assert config.dead_letter_after == 3
        assert "admin-aaaaaaaaaaaaaaaa" not in repr(config)
        assert "generic-secret" not in repr(config)
        assert "mg-key" not in repr(config)
        assert config.delivery_proxy_url == "http://egress:pr0xy-pass@proxy.internal:3128"
        assert "pr0xy-pass" not in repr(config)
        assert "http://***@proxy.internal:3128" in repr(config)
        assert config.portal_secret == "portal-secret-aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        assert "portal-secret" not in repr(config)
        assert config.portal_session_seconds == 900
        assert config.portal_frame_ancestors == (
            "'self'",
            "https://app.example.com",
            "https://*.example.net:8443",
        )

    def test_blank_means_default(self) -> None:
        assert Config.from_env({"PORT": "  "}).port == 8000

    @pytest.mark.parametrize(
        ("name", "value"),
        [
            ("PORT", "eighty"),
            ("PORT", "70000"),
            ("MAX_BODY_BYTES", "-1"),
            ("MAX_BODY_BYTES", "1MB"),
            ("ALLOW_HTTP_URLS", "maybe"),
            ("ALLOW_PRIVATE_URLS", "2"),
            ("LOG_LEVEL", "LOUD"),
            ("LOG_FORMAT", "xml"),
            ("ACCESS_LOG", "sometimes"),
            ("REDIS_URL", "http://localhost:6379"),
            ("REDIS_SSL_CERT_REQS", "sometimes"),
            ("DELIVERY_TIMEOUT", "soon"),
            ("DELIVERY_TIMEOUT", "0"),
            ("RETRY_SCHEDULE", "0,5,later"),
            ("RETRY_SCHEDULE", " , "),
            ("ENDPOINT_CONCURRENCY", "0"),
            ("DISABLE_AFTER", "1"),
            ("EVENTS_MAXLEN", "10"),
            ("INGEST_MEMORY_LIMIT", "90%"),
            ("INGEST_MEMORY_LIMIT", "1.5"),
            ("INGEST_MEMORY_LIMIT", "nan"),
            ("ADMIN_API_KEYS", "too-short"),
            ("MAX_WEBHOOKS_PER_ACCOUNT", "0"),
            ("EMAIL_OWNER_TTL", "60"),
            ("ACCOUNT_METADATA_KEY", "k" * 101),
            ("SNS_CERT_URL_PATTERN", "https://sns\\.(unclosed"),
            ("DELIVERY_PROXY_URL", "socks5://proxy:1080"),
            ("DELIVERY_PROXY_URL", "proxy.internal:3128"),
            ("DELIVERY_PROXY_URL", "http://"),
            ("DELIVERY_PROXY_URL", "http://proxy:99999"),
            ("DELIVERY_PROXY_URL", "http://proxy:3128/some/path"),
            ("DEAD_LETTER_AFTER", "0"),
            ("PORTAL_SECRET", "too-short"),
            ("PORTAL_SESSION_SECONDS", "10"),
            ("PORTAL_FRAME_ANCESTORS", "*"),
            ("PORTAL_FRAME_ANCESTORS", "https://ok.example; script-src *"),
            ("PORTAL_FRAME_ANCESTORS", "'unsafe-inline'"),
        ],
    )
    def test_bad_value_names_the_variable(self, name: str, value: str) -> None:
        with pytest.raises(ConfigError, match=name):
            Config.from_env({name: value})

    def test_a_bad_proxy_url_is_refused_without_echoing_it(self) -> None:
        with pytest.raises(ConfigError) as info:
            Config.from_env({"DELIVERY_PROXY_URL": "ftp://user:pr0xy-pass@proxy:21"})
        assert "DELIVERY_PROXY_URL" in str(info.value)
        assert "pr0xy-pass" not in str(info.value)

    def test_proxy_url_defaults_to_none_and_https_is_accepted(self) -> None:
        assert Config.from_env({}).delivery_proxy_url == ""
        assert "delivery_proxy_url=''" in repr(Config.from_env({}))
        https = Config.from_env({"DELIVERY_PROXY_URL": "https://proxy.internal:8443/"})
        assert https.delivery_proxy_url_redacted == "https://proxy.internal:8443/"

    def test_short_api_key_is_refused_without_echoing_it(self) -> None:
        with pytest.raises(ConfigError) as info:
            Config.from_env({"API_KEYS": "long-enough-key-000000,short"})
        assert "API_KEYS" in str(info.value)
        assert "#2" in str(info.value)
        assert "short" not in str(info.value).replace("shorter", "")


class TestRepr:
    def test_hides_api_keys_and_redis_password(self) -> None:
        config = Config.from_env(
            {"API_KEYS": "super-secret-key-123456", "REDIS_URL": "redis://u:hunter2@h:1/0"}
        )
        text = repr(config)
        assert "super-secret-key-123456" not in text
        assert "hunter2" not in text
        assert "redis://u:***@h:1/0" in text
        assert "<1 hidden>" in text

    def test_url_without_password_is_shown_as_is(self) -> None:
        assert Config().redis_url_redacted == "redis://localhost:6379/0"


class TestMetricsSettings:
    def test_off_by_default(self) -> None:
        config = Config.from_env({})
        assert (config.metrics_token, config.metrics_per_account) == ("", False)

    def test_read_and_the_token_hidden(self) -> None:
        token = "metrics-token-0123456789"
        config = Config.from_env({"METRICS_TOKEN": token, "METRICS_PER_ACCOUNT": "true"})
        assert (config.metrics_token, config.metrics_per_account) == (token, True)
        assert token not in repr(config)
        assert "metrics_token=<set>" in repr(config)

    @pytest.mark.parametrize(
        ("name", "value"), [("METRICS_TOKEN", "short"), ("METRICS_PER_ACCOUNT", "per-account")]
    )
    def test_bad_value_names_the_variable_not_the_token(self, name: str, value: str) -> None:
        with pytest.raises(ConfigError, match=name) as info:
            Config.from_env({name: value})
        assert "short" not in str(info.value).replace("shorter", "")


class TestTracking:
    KEY = "t" * 32

    def test_off_by_default(self) -> None:
        config = Config.from_env({})
        assert config.public_url == ""
        assert config.tracking_signing_keys == ()
        assert not config.tracking_enabled
        assert config.tracking_machine_networks == ()
        assert config.tracking_early_click_seconds == 5.0

    def test_read(self) -> None:
        config = Config.from_env(
            {
                "PUBLIC_URL": "https://t.example.com/",
                "TRACKING_SIGNING_KEY": f" {self.KEY} , {'u' * 40},",
                "TRACKING_MACHINE_NETWORKS": "40.94.0.0/16, 2603:10a6::/32 ,10.1.2.3",
                "TRACKING_EARLY_CLICK_SECONDS": "0",
            }
        )
        assert config.public_url == "https://t.example.com"
        assert config.tracking_signing_keys == (self.KEY, "u" * 40)
        assert config.tracking_enabled
        assert [str(n) for n in config.tracking_machine_networks] == [
            "40.94.0.0/16",
            "2603:10a6::/32",
            "10.1.2.3/32",
        ]
        assert config.tracking_early_click_seconds == 0
        assert self.KEY not in repr(config)

    @pytest.mark.parametrize(
        ("env", "message"),
        [
            ({"PUBLIC_URL": "https://t.example.com"}, "TRACKING_SIGNING_KEY is required"),
            ({"TRACKING_SIGNING_KEY": KEY}, "PUBLIC_URL is required"),
            ({"PUBLIC_URL": "https://t.example.com/track", "TRACKING_SIGNING_KEY": KEY}, "PUBLIC"),
            ({"PUBLIC_URL": "ftp://t.example.com", "TRACKING_SIGNING_KEY": KEY}, "PUBLIC_URL"),
            ({"PUBLIC_URL": "t.example.com", "TRACKING_SIGNING_KEY": KEY}, "PUBLIC_URL"),
            ({"PUBLIC_URL": "https://t.example.com/?a=1", "TRACKING_SIGNING_KEY": KEY}, "PUBLIC"),
            ({"PUBLIC_URL": "https://t.example.com", "TRACKING_SIGNING_KEY": "short"}, "#1"),
            ({"TRACKING_MACHINE_NETWORKS": "40.94.0.0/33"}, "TRACKING_MACHINE_NETWORKS"),
            ({"TRACKING_EARLY_CLICK_SECONDS": "-1"}, "TRACKING_EARLY_CLICK_SECONDS"),
        ],
    )
    def test_refused(self, env: dict[str, str], message: str) -> None:
        with pytest.raises(ConfigError, match=message):
            Config.from_env(env)

    def test_credentials_in_the_public_url_are_refused_unechoed(self) -> None:
        with pytest.raises(ConfigError) as info:
            Config.from_env(
                {"PUBLIC_URL": "https://u:hunter2@t.example.com", "TRACKING_SIGNING_KEY": self.KEY}
            )
        assert "hunter2" not in str(info.value)
