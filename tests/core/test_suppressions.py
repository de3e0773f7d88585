"""Which events suppress their recipient, and how addresses compare."""

from __future__ import annotations

import pytest

from service.core.models import Bounce, Event
from service.core.suppressions import (
    COMPLAINT,
    HARD_BOUNCE,
    UNSUBSCRIBE,
    address_problem,
    normalize_address,
    suppression_reason,
)


def event(type_: str, **fields: object) -> Event:
    values: dict[str, object] = {
        "type": type_,
        "email_id": "msg_1",
        "occurred_at": "2026-03-03T10:00:00Z",
        "provider": "generic",
        "recipient": "Alex@Example.com",
        "account_id": "acc_1",
        **fields,
    }
    return Event(**values)  # type: ignore[arg-type]


class TestReason:
    def test_a_hard_bounce(self) -> None:
        assert suppression_reason(event("email.bounce", bounce=Bounce(kind="hard"))) == HARD_BOUNCE

    @pytest.mark.parametrize("kind", ["soft", "undetermined"])
    def test_soft_and_undetermined_bounces_do_not(self, kind: str) -> None:
        assert suppression_reason(event("email.bounce", bounce=Bounce(kind=kind))) is None  # type: ignore[arg-type]

    def test_a_bounce_of_no_kind_does_not(self) -> None:
        assert suppression_reason(event("email.bounce")) is None

    def test_a_complaint_and_an_unsubscribe(self) -> None:
        assert suppression_reason(event("email.complaint")) == COMPLAINT
        assert suppression_reason(event("email.unsubscribe")) == UNSUBSCRIBE

    @pytest.mark.parametrize(
        "type_",
        ["email.open", "email.click", "email.delivered", "email.deferred", "email.rejected"],
    )
    def test_other_events_do_not(self, type_: str) -> None:
        assert suppression_reason(event(type_)) is None

    def test_without_a_recipient_or_an_account_nothing_is_suppressed(self) -> None:
        assert suppression_reason(event("email.complaint", recipient=None)) is None
        assert suppression_reason(event("email.complaint", account_id=None)) is None


class TestAddresses:
    @pytest.mark.parametrize(
        ("raw", "listed"),
        [
            ("Alex@Example.COM", "alex@example.com"),
            ("  alex@example.com\n", "alex@example.com"),
            ('"Alex Doe" <Alex@Example.com>', "alex@example.com"),
            ("alex+promo@example.com", "alex+promo@example.com"),
        ],
    )
    def test_normalize(self, raw: str, listed: str) -> None:
        assert normalize_address(raw) == listed

    @pytest.mark.parametrize("bad", ["", "alex", "@example.com", "alex@", "a b@example.com"])
    def test_problems(self, bad: str) -> None:
        assert address_problem(normalize_address(bad)) is not None

    def test_too_long(self) -> None:
        assert address_problem("a" * 320 + "@example.com") is not None

    def test_fine(self) -> None:
        assert address_problem("alex@example.com") is None
