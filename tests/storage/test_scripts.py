"""The Lua scripts' headers against the wrappers that call them, and the loader itself.

Each wrapper is called with every named argument set to its own name, so what it returns
shows which declared position each argument went to; values it computes (counts) are ints.
"""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from service.storage import (
    accounts,
    dead_letters,
    deliveries,
    events,
    idempotency,
    lanes,
    migration,
    rate_limits,
    retention,
    retries,
    scripts,
    stream,
    suppressions,
    trimming,
    webhooks,
)
from service.storage.scripts import Slot, parse_header


@dataclass(frozen=True)
class Case:
    wrapper: Callable[..., scripts.ScriptArgs]
    groups: dict[str, Any] = field(default_factory=dict)  # arguments carrying repeated groups
    repeats: dict[str, int] = field(default_factory=dict)  # by a group's first name
    computed: frozenset[str] = frozenset()  # declared, but computed by the wrapper


CASES = {
    "claim": Case(deliveries.claim_call),
    "requeue": Case(deliveries.requeue_call),
    "record": Case(deliveries.record_call),
    "prune_deliveries": Case(
        retention.prune_call,
        groups={"candidate_keys": [("delivery", "attempts")] * 2, "members": ["member"] * 2},
        repeats={"delivery": 2, "member": 2},
    ),
    "forget_dead_consumers": Case(stream.forget_dead_consumers_call),
    "dead_letter": Case(stream.dead_letter_call),
    "redrive_dead_letter": Case(
        dead_letters.redrive_call,
        groups={"index_keys": ["index_key"] * 3},
        repeats={"index_key": 3},
    ),
    "append": Case(
        events.append_call,
        groups={
            "event_keys": [("seen_key", "email_index", "recipient_index", "account_index")] * 2,
            "event_args": [("payload", "recipient_flag", "account", "account_flag", "email_flag")]
            * 2,
            "ignored_types": ["ignored_type"] * 3,
        },
        repeats={"seen_key": 2, "payload": 2, "ignored_type": 3},
        computed=frozenset({"event_count"}),
    ),
    "trim_events": Case(
        trimming.trim_events_call,
        groups={"index_keys": ["index_key"] * 3, "members": ["member"] * 3},
        repeats={"index_key": 3, "member": 3},
    ),
    "update_webhook": Case(
        webhooks.update_call,
        groups={
            "subscriber_sets": ["subscriber_set"] * 3,
            "fields": [("field", "value")] * 2,
            "positions": ["position"] * 4,
        },
        repeats={"subscriber_set": 3, "field": 2, "position": 4},
        computed=frozenset({"pair_count"}),
    ),
    "create_webhook": Case(
        webhooks.create_call,
        groups={"subscriber_sets": ["subscriber_set"] * 2, "fields": [("field", "value")] * 3},
        repeats={"subscriber_set": 2, "field": 3},
    ),
    "migrate_webhook": Case(
        migration.migrate_webhook_call,
        groups={
            "subscriber_sets": ["subscriber_set"] * 3,
            "fields": [("field", "value")] * 2,
            "positions": ["position"] * 2,
        },
        repeats={"subscriber_set": 3, "field": 2, "position": 2},
        computed=frozenset({"pair_count"}),
    ),
    "raise_sequence": Case(migration.raise_sequence_call),
    "claim_email": Case(accounts.claim_email_call),
    "suppress_events": Case(
        suppressions.suppress_events_call,
        groups={"addresses": [("seen_key", "suppressions", "suppressed", "address", "reason")] * 2},
        repeats={"seen_key": 2, "address": 2},
    ),
    "suppress": Case(suppressions.suppress_call),
    "unsuppress": Case(
        suppressions.unsuppress_call,
        groups={"reason_sets": ["reason_set"] * 4},
        repeats={"reason_set": 4},
    ),
    "rate_slot": Case(rate_limits.rate_slot_call),
    "spill": Case(
        lanes.spill_call,
        groups={"lane_keys": ["lane"] * 2, "entries": [("entry_id", "account")] * 2},
        repeats={"lane": 2, "entry_id": 2},
    ),
    "lane_dead_letter": Case(lanes.lane_dead_letter_call),
    "lane_ack": Case(
        lanes.lane_ack_call,
        groups={"lane_entry_ids": ["lane_entry_id"] * 2},
        repeats={"lane_entry_id": 2},
    ),
    "take_due_retries": Case(retries.take_due_call),
    "forget_email": Case(accounts.forget_email_call),
    "rotate_secret": Case(webhooks.rotate_call),
    "settle_idempotency": Case(idempotency.settle_call),
    "delete_webhook": Case(
        webhooks.delete_call,
        groups={"subscriber_sets": ["subscriber_set"] * 2},
        repeats={"subscriber_set": 2},
    ),
}


def script_names() -> list[str]:
    files = importlib.resources.files(scripts.__name__).iterdir()
    return sorted(f.name.removesuffix(".lua") for f in files if f.name.endswith(".lua"))


def expand(slots: tuple[Slot, ...], repeats: dict[str, int]) -> list[str]:
    names: list[str] = []
    for slot in slots:
        names += list(slot.names) * (repeats[slot.names[0]] if slot.repeated else 1)
    return names


def split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def own_text(name: str) -> str:
    return importlib.resources.files(scripts.__name__).joinpath(f"{name}.lua").read_text()


def test_every_script_has_a_case() -> None:
    assert sorted(CASES) == [name for name in script_names() if not name.startswith("_")]


@pytest.mark.parametrize("name", sorted(CASES))
class TestHeader:
    def test_wrapper_passes_what_the_header_declares(self, name: str) -> None:
        case, script = CASES[name], scripts.load(name)
        fixed = {
            n for slot in (*script.keys, *script.argv) if not slot.repeated for n in slot.names
        }
        named = {n: n for n in fixed - case.computed}
        keys, argv = case.wrapper(**named, **case.groups)
        for declared, passed in ((script.keys, keys), (script.argv, argv)):
            expected = expand(declared, case.repeats)
            assert len(passed) == len(expected), (expected, passed)
            for want, got in zip(expected, passed, strict=True):
                if want in case.computed:
                    assert isinstance(got, int), (want, got)
                else:
                    assert got == want, (expected, passed)

    def test_named_positions_are_bound_to_locals_of_the_same_name(self, name: str) -> None:
        script, text = scripts.load(name), own_text(name)
        bound: dict[str, str] = {}
        for line in text.splitlines():
            match = re.match(r"^local ([\w, ]+) = (.+)$", line)
            if match:
                names = [n.strip() for n in match[1].split(",")]
                bound.update(zip(names, split_top_level(match[2]), strict=False))
        for kind, slots in (("KEYS", script.keys), ("ARGV", script.argv)):
            for position, slot in enumerate(slots, start=1):
                if slot.repeated:
                    continue
                [local] = slot.names
                assert f"{kind}[{position}]" in bound.get(local, ""), (kind, position, local)

    def test_the_body_reads_positions_by_name(self, name: str) -> None:
        code = [line for line in own_text(name).splitlines() if not line.startswith("--")]
        body = [line for line in code if not line.startswith("local ")]
        assert not [line for line in body if re.search(r"(KEYS|ARGV)\[\d+\]", line)]


class TestParseHeader:
    def test_fixed_then_repeated(self) -> None:
        keys, argv = parse_header(
            "-- KEYS[1] stream: the stream\n"
            "-- KEYS[2..] index, member_count: per entry\n"
            "-- ARGV[1] count: how many\n"
            "-- ARGV[2..] a, b: pairs\n"
            "-- ARGV[..] rest: then these\n"
            "-- Returns: nothing\n"
            "local stream = KEYS[1]\n"
            "-- KEYS[3] not_header: code comments are not the header\n"
        )
        assert keys == (Slot(("stream",)), Slot(("index", "member_count"), repeated=True))
        assert argv == (
            Slot(("count",)),
            Slot(("a", "b"), repeated=True),
            Slot(("rest",), repeated=True),
        )

    @pytest.mark.parametrize(
        "header",
        [
            "-- KEYS[2] second: no first\n",
            "-- KEYS[1..] many: x\n-- KEYS[2] after: a fixed one after a group\n",
            "-- ARGV[..] rest: with no group before\n",
        ],
    )
    def test_positions_out_of_order_are_refused(self, header: str) -> None:
        with pytest.raises(ValueError, match=r"out of order|must follow"):
            parse_header(header)

    def test_included_lua_comes_first(self) -> None:
        for name in CASES:
            script = scripts.load(name)
            assert script.source.endswith(own_text(name))
