"""Provider timestamps: conversion to the canonical ISO 8601 UTC form, and the freshness check
on signed timestamps (pure: `now` is always passed in)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from service.core.errors import InvalidPayload, InvalidSignature

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FRACTION = re.compile(r"\d[.,]\d")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
# Already canonical (what most providers send, and our own form): returned as it is once it
# parses, a fifth of the cost of converting it (every inbound event has a timestamp).
_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?Z")


def iso_utc(value: str | float, *, field: str) -> str:
    """`"2026-03-03T09:15:00.123+01:00"` or `1772525700.123` → `"2026-03-03T08:15:00.123Z"`.

    Milliseconds are kept when the source has a fractional second, else whole seconds; a string
    without an offset is taken as UTC. Anything else raises InvalidPayload naming `field`."""
    try:
        if isinstance(value, str):
            moment = datetime.fromisoformat(value)
            if _CANONICAL.fullmatch(value):
                return value
            fractional = _FRACTION.search(value) is not None
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        elif isinstance(value, bool):
            raise TypeError("a boolean is not a timestamp")
        else:
            moment = _EPOCH + timedelta(seconds=value)
            fractional = value != int(value)
        moment = moment.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        raise InvalidPayload(
            f"{field} is not an ISO 8601 timestamp or unix seconds: {value!r:.60}", field=field
        ) from None
    text = moment.isoformat(timespec="milliseconds" if fractional else "seconds")
    return text.removesuffix("+00:00") + "Z"


def check_fresh(timestamp: str, *, now: float, tolerance: float | None, name: str) -> None:
    """Raise InvalidSignature unless `timestamp` is unix seconds (ASCII digits) within
    `tolerance` seconds of `now`, either way; `tolerance=None` checks only the format."""
    if not _UNIX_SECONDS.fullmatch(timestamp):
        raise InvalidSignature(f"{name} is not a unix timestamp in seconds")
    if tolerance is None:
        return
    check_age(now - int(timestamp), tolerance=tolerance, name=name)


def check_fresh_iso(timestamp: str, *, now: float, tolerance: float, name: str) -> None:
    """Raise InvalidSignature unless `timestamp`, ISO 8601 (UTC when it has no offset), is within
    `tolerance` seconds of `now`, either way."""
    try:
        moment = datetime.fromisoformat(timestamp)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp()
    except (ValueError, OverflowError):
        raise InvalidSignature(f"{name} is not an ISO 8601 timestamp") from None
    check_age(now - seconds, tolerance=tolerance, name=name)


def check_age(age: float, *, tolerance: float, name: str) -> None:
    """Raise InvalidSignature unless a signed timestamp `age` seconds old (negative: ahead of
    `now`) is within `tolerance` either way."""
    if age > tolerance:
        raise InvalidSignature(f"{name} is too old ({age:.0f} s; tolerance {tolerance:g} s)")
    if age < -tolerance:
        raise InvalidSignature(f"{name} is in the future ({-age:.0f} s; tolerance {tolerance:g} s)")
