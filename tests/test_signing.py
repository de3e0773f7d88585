from __future__ import annotations

import base64
import hashlib
import hmac

from service.signing import generate_secret, signature_hex


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
