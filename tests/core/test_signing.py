from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest
import standardwebhooks
import standardwebhooks.webhooks

from service.core.signing import (
    delivery_headers,
    generate_secret,
    signature_hex,
    standard_webhooks_key,
    standard_webhooks_signature,
)


class TestGenerateSecret:
    def test_is_whsec_plus_base64_of_24_bytes(self) -> None:
        secret = generate_secret()
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 24

    def test_is_random(self) -> None:
        assert len({generate_secret() for _ in range(100)}) == 100


class TestSignatureHex:
    def test_rfc4231_vector(self) -> None:
        # RFC 4231 test case 2: key "Jefe".
        assert signature_hex(b"what do ya want for nothing?", "Jefe") == (
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        )

    def test_secret_is_keyed_as_utf8(self) -> None:
        expected = hmac.new("sécret".encode(), b"{}", hashlib.sha256).hexdigest()
        assert signature_hex(b"{}", "sécret") == expected


class TestStandardWebhooks:
    SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

    def test_specification_vector(self) -> None:
        # The Standard Webhooks / Svix test vector (tests/fixtures/providers/resend).
        signature = standard_webhooks_signature(
            self.SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
        )
        assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

    @pytest.mark.parametrize("secret", [SECRET, "plain-secret-not-whsec", "whsec_not base64!"])
    def test_the_standardwebhooks_library_verifies_our_headers(self, secret: str) -> None:
        body = b'{"id":"evt_1-0","type":"email.open"}'
        now = int(time.time())
        headers = delivery_headers(
            secret=secret, delivery_id="dlv_1-0_1", timestamp=now, body=body, user_agent="t"
        )
        key = standard_webhooks_key(secret)
        verifier = standardwebhooks.Webhook(base64.b64encode(key).decode())
        assert verifier.verify(body, headers) == {"id": "evt_1-0", "type": "email.open"}
        with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
            verifier.verify(body + b" ", headers)

    def test_headers(self) -> None:
        headers = delivery_headers(
            secret="s3cret-value", delivery_id="dlv_9", timestamp=1700000000, body=b"{}",
            user_agent="mailhooks/1",
        )  # fmt: skip
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"] == "mailhooks/1"
        assert headers["webhook-id"] == "dlv_9"
        assert headers["webhook-timestamp"] == "1700000000"
        assert headers["x-webhook-signature"] == signature_hex(b"{}", "s3cret-value")


class TestRotationOverlap:
    NEW, OLD, OLDER = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "old-secret-value", "whsec_b2xkZXI="

    def headers(self, previous: tuple[str, ...]) -> dict[str, str]:
        return delivery_headers(
            secret=self.NEW, delivery_id="dlv_1-0_1", timestamp=int(time.time()),
            body=b'{"a":1}', user_agent="t", previous_secrets=previous,
        )  # fmt: skip

    def test_one_signature_per_live_secret_newest_first(self) -> None:
        headers = self.headers((self.OLD, self.OLDER))
        signatures = headers["webhook-signature"].split(" ")
        assert signatures == [
            standard_webhooks_signature(
                s, "dlv_1-0_1", int(headers["webhook-timestamp"]), b'{"a":1}'
            )
            for s in (self.NEW, self.OLD, self.OLDER)
        ]

    @pytest.mark.parametrize("secret", [NEW, OLD, OLDER])
    def test_a_subscriber_with_any_live_secret_verifies(self, secret: str) -> None:
        headers = self.headers((self.OLD, self.OLDER))
        key = base64.b64encode(standard_webhooks_key(secret)).decode()
        assert standardwebhooks.Webhook(key).verify(b'{"a":1}', headers) == {"a": 1}

    def test_x_webhook_signature_stays_one_hex_value_of_the_new_secret(self) -> None:
        headers = self.headers((self.OLD,))
        assert headers["x-webhook-signature"] == signature_hex(b'{"a":1}', self.NEW)

    def test_custom_headers_come_first_and_never_replace_ours(self) -> None:
        headers = delivery_headers(
            secret=self.NEW, delivery_id="d", timestamp=1, body=b"{}", user_agent="t",
            custom=(("Authorization", "Bearer x"), ("X-Tenant", "acme")),
        )  # fmt: skip
        assert list(headers)[:2] == ["Authorization", "X-Tenant"]
        assert headers["Authorization"] == "Bearer x"
        assert headers["webhook-id"] == "d"
