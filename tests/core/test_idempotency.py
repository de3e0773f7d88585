from __future__ import annotations

import pytest

from service.core.idempotency import (
    IdempotencyScope,
    SavedResponse,
    pending_fingerprint,
    pending_marker,
    valid_key,
)


def scope(**overrides: str) -> IdempotencyScope:
    fields = {
        "credential": "mh_caller-key",
        "account": "",
        "method": "POST",
        "path": "/api/webhooks/manage",
        "key": "k-1",
        **overrides,
    }
    return IdempotencyScope(**fields)


class TestScope:
    def test_same_inputs_same_digest(self) -> None:
        assert scope().digest == scope().digest

    @pytest.mark.parametrize(
        "change",
        [
            {"credential": "mh_other-key"},
            {"account": "acc_x"},
            {"method": "PATCH"},
            {"path": "/api/accounts"},
            {"key": "k-2"},
        ],
    )
    def test_each_part_scopes_it(self, change: dict[str, str]) -> None:
        assert scope(**change).digest != scope().digest

    def test_parts_cannot_run_into_each_other(self) -> None:
        assert scope(account="a", path="b/c").digest != scope(account="ab", path="/c").digest

    def test_the_digest_reveals_neither_key_nor_credential(self) -> None:
        digest = scope().digest
        assert "k-1" not in digest
        assert "caller" not in digest


class TestSealing:
    RESPONSE = SavedResponse(
        fingerprint="f", status=201, headers=[("location", "/x")], body=b'{"secret":"whsec_1"}'
    )

    def test_round_trip_for_the_same_scope_only(self) -> None:
        sealed = scope().seal(self.RESPONSE)
        assert b"whsec_1" not in sealed
        assert scope().open(sealed) == self.RESPONSE
        assert scope(credential="mh_other-key").open(sealed) is None

    def test_tampering_is_detected(self) -> None:
        sealed = bytearray(scope().seal(self.RESPONSE))
        sealed[-1] ^= 1
        assert scope().open(bytes(sealed)) is None

    def test_fingerprint_depends_on_body_and_scope(self) -> None:
        assert scope().fingerprint(b"a") == scope().fingerprint(b"a")
        assert scope().fingerprint(b"a") != scope().fingerprint(b"b")
        assert scope().fingerprint(b"a") != scope(credential="other").fingerprint(b"a")


class TestMarkers:
    def test_a_marker_carries_its_fingerprint_and_is_unique(self) -> None:
        marker = pending_marker("abc")
        assert pending_fingerprint(marker) == "abc"
        assert pending_marker("abc") != marker
        assert pending_fingerprint(scope().seal(TestSealing.RESPONSE)) is None
        assert scope().open(marker) is None


@pytest.mark.parametrize(
    ("key", "valid"),
    [("550e8400-e29b-41d4-a716-446655440000", True), ("a" * 255, True), ("", False),
     ("a" * 256, False), ("has space", False), ("ü", False), ("tab\t", False)],
)  # fmt: skip
def test_valid_key(key: str, valid: bool) -> None:
    assert valid_key(key) is valid
