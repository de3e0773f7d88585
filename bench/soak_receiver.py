"""The soak test's endpoints: `python -m bench.soak_receiver [PORT]` (0 = any free port), on
127.0.0.1 only; prints `listening PORT LOOP` once ready and exits when stdin closes.

`POST /e/<n>` is endpoint n. It answers 410 once n is gone, 500 while n is failing, 200
otherwise, and records, per path and per delivered `data.email_id`: the 200 answers, the
other answers, the first 200's arrival (time.time()), the event id (`id`), the arrival of
every further 200 and any other event id seen with the same email id.
Operational events (`webhook.*`, `delivery.*`: webhook.disabled when the 410 endpoint is
disabled) carry no email id: they are answered 200 unless the endpoint is gone, and counted.

- `GET /control?failing=1,5,9&gone=3`: replaces the failing set (`failing=` clears it) and/or
  the gone set; a parameter left out is left as it was. Answers the state.
- `GET /summary`: per path, the counts (posts, 200s, 500s, 410s, distinct email ids answered
  200, requests after the first 410, last arrival).
- `GET /records`: per path, `{email_id: [ok, failed, first_ok_at, event_id, later_ok_at,
  other_event_ids]}`.
- `GET /reset`: forgets what was recorded (not the failing and gone sets).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from bench.receiver import RequestProtocol, json_response, run

ENDPOINT_PREFIX = "/e/"


def _response(status: str, *, close: bool) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\nok").encode()


RESPONSES = {
    (code, close): _response(status, close=close)
    for code, status in ((200, "200 OK"), (410, "410 Gone"), (500, "500 Internal Server Error"))
    for close in (False, True)
}
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class Control:
    """What one /control request changes: None leaves that set as it is."""

    failing: frozenset[str] | None = None
    gone: frozenset[str] | None = None


def parse_control(target: str) -> Control:
    """`/control?failing=1,5,9&gone=3` → Control; `failing=` (empty) means none."""
    query = parse_qs(urlsplit(target).query, keep_blank_values=True)

    def numbers(name: str) -> frozenset[str] | None:
        if name not in query:
            return None
        values = ",".join(query[name]).split(",")
        return frozenset(str(int(value)) for value in values if value.strip())

    return Control(failing=numbers("failing"), gone=numbers("gone"))


@dataclass
class Endpoint:
    """What one endpoint path received."""

    posts: int = 0
    ok: int = 0
    failed: int = 0
    gone: int = 0
    # Operational events (webhook.disabled when the 410 endpoint is disabled): answered 200,
    # counted, not recorded per email (they have none).
    operational: int = 0
    distinct_ok: int = 0  # email ids answered 200 at least once
    first_gone_at: float | None = None
    after_gone: int = 0  # requests that arrived after the first 410 was answered
    last_at: float = 0.0
    # email_id → [ok, failed, first_ok_at, event_id, later_ok_at, other_event_ids]
    events: dict[str, list[Any]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "posts": self.posts,
            "ok": self.ok,
            "failed": self.failed,
            "gone": self.gone,
            "operational": self.operational,
            "distinct_ok": self.distinct_ok,
            "first_gone_at": self.first_gone_at,
            "after_gone": self.after_gone,
            "last_at": self.last_at,
        }


class Delivered(msgspec.Struct):
    email_id: str | None = None


class Payload(msgspec.Struct):
    id: str
    data: Delivered
    type: str = ""


_PAYLOAD = msgspec.json.Decoder(Payload)
# The types of the events mailhooks sends about a webhook or delivery (no email id).
OPERATIONAL_PREFIXES = ("webhook.", "delivery.")


@dataclass
class State:
    """The failing and gone endpoints, and what every endpoint received."""

    failing: frozenset[str] = frozenset()
    gone: frozenset[str] = frozenset()
    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def control(self, change: Control) -> dict[str, list[str]]:
        if change.failing is not None:
            self.failing = change.failing
        if change.gone is not None:
            self.gone = change.gone
        return {"failing": sorted(self.failing, key=int), "gone": sorted(self.gone, key=int)}

    def post(self, name: str, body: bytes, arrival: float) -> int:
        """Record one delivery attempt to endpoint `name`; returns the status to answer."""
        endpoint = self.endpoints.setdefault(name, Endpoint())
        endpoint.posts += 1
        endpoint.last_at = arrival
        if endpoint.first_gone_at is not None:
            endpoint.after_gone += 1
        if name in self.gone:
            endpoint.gone += 1
            if endpoint.first_gone_at is None:
                endpoint.first_gone_at = arrival
            return 410
        try:
            payload = _PAYLOAD.decode(body)
        except msgspec.DecodeError:
            return 500  # not a delivery we understand: noted as a failed attempt
        if payload.data.email_id is None:
            if not payload.type.startswith(OPERATIONAL_PREFIXES):
                return 500
            endpoint.operational += 1
            return 200
        record = endpoint.events.get(payload.data.email_id)
        if record is None:
            record = endpoint.events[payload.data.email_id] = [0, 0, None, payload.id, [], []]
        elif payload.id != record[3] and payload.id not in record[5]:
            record[5].append(payload.id)
        if name in self.failing:
            endpoint.failed += 1
            record[1] += 1
            return 500
        endpoint.ok += 1
        record[0] += 1
        if record[2] is None:
            record[2] = arrival
            endpoint.distinct_ok += 1
        else:
            record[4].append(arrival)
        return 200


class SoakProtocol(RequestProtocol):
    def __init__(self, state: State) -> None:
        super().__init__()
        self.state = state

    def on_message_complete(self) -> None:
        arrival = time.time()
        url, body = self.take()
        target = url.decode("latin-1")
        if self.transport is None or self.transport.is_closing():
            return
        close = not self.parser.should_keep_alive()
        if self.parser.get_method() == b"GET":
            self.transport.write(self.answer_get(target))
            close = True
        elif target.startswith(ENDPOINT_PREFIX):
            status = self.state.post(target.removeprefix(ENDPOINT_PREFIX), body, arrival)
            self.transport.write(RESPONSES[status, close])
        else:
            self.transport.write(NOT_FOUND)
            close = True
        if close:
            self.transport.close()

    def answer_get(self, target: str) -> bytes:
        state = self.state
        path = urlsplit(target).path
        if path == "/control":
            try:
                return json_response(state.control(parse_control(target)))
            except ValueError as exc:
                body = json.dumps({"error": str(exc)}).encode()
                head = f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(body)}\r\n\r\n"
                return head.encode() + body
        if path == "/summary":
            return json_response({name: e.summary() for name, e in state.endpoints.items()})
        if path == "/records":
            return json_response({name: e.events for name, e in state.endpoints.items()})
        if path == "/reset":
            state.endpoints = {}
            return json_response({"reset": True})
        return NOT_FOUND


def main() -> None:
    state = State()
    run(lambda: SoakProtocol(state), int(sys.argv[1]) if len(sys.argv) > 1 else 0)


if __name__ == "__main__":
    main()
