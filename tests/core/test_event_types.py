from __future__ import annotations

import pytest

from service.core.event_types import InvalidEventTypes, parse_event_types, subscribes_to


class TestParseEventTypes:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("open,click,bounce,unsubscribe", ("open", "click", "bounce", "unsubscribe")),
            ("delivered,complaint", ("delivered", "complaint")),
            (" open , click ", ("open", "click")),
            ("open,open,click,open", ("open", "click")),
            ("email.open,email.click", ("open", "click")),
            ("Open,EMAIL.Bounce", ("open", "bounce")),
            ("open,,click,", ("open", "click")),
            ("*", ("*",)),
            ("open,*", ("*",)),
            ("webhook.disabled,delivery.exhausted", ("webhook.disabled", "delivery.exhausted")),
            ("open, Webhook.Disabled", ("open", "webhook.disabled")),
            ("delivery.exhausted,*", ("*",)),
        ],
    )
    def test_accepts_and_cleans(self, raw: str, expected: tuple[str, ...]) -> None:
        assert parse_event_types(raw) == expected

    @pytest.mark.parametrize("raw", ["", " ", ",", " , ,"])
    def test_empty_is_refused(self, raw: str) -> None:
        with pytest.raises(InvalidEventTypes, match="at least one"):
            parse_event_types(raw)

    @pytest.mark.parametrize(
        ("raw", "bad"),
        [
            ("open,opened", "opened"),
            ("email.sent", "email.sent"),
            ("open, spam ", "spam"),
            ("email.webhook.disabled", "email.webhook.disabled"),
            ("webhook.*", "webhook.*"),
        ],
    )
    def test_unknown_type_is_named(self, raw: str, bad: str) -> None:
        with pytest.raises(InvalidEventTypes) as info:
            parse_event_types(raw)
        assert info.value.value == bad
        assert repr(bad) in str(info.value)


class TestSubscribesTo:
    def test_matches_short_and_qualified_names(self) -> None:
        assert subscribes_to(("open", "click"), "email.open")
        assert subscribes_to(("open", "click"), "click")
        assert not subscribes_to(("open",), "email.bounce")

    def test_wildcard_matches_everything(self) -> None:
        assert subscribes_to(("*",), "email.complaint")
        assert subscribes_to(("*",), "webhook.disabled")  # operational events included

    def test_operational_events_by_their_full_name(self) -> None:
        assert subscribes_to(("open", "delivery.exhausted"), "delivery.exhausted")
        assert not subscribes_to(("open",), "webhook.disabled")
