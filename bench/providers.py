"""Provider ingest (#16): Amazon SES notifications through SNS, RSA-verified with a certificate
the web process fetches (from a local server here, as SNS_CERT_URL_PATTERN allows) and caches,
and SparkPost batches of 1,000 events. Events/s, beside the generic HMAC-signed route measured
in the same run as the floor: the cheapest verified request there is."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from bench.common import base_env, median, run_wrk, signed_script, web
from tests import FIXTURES
from tests.signers import INBOUND_SECRET, SnsSigner, sns_request

Table = list[str]
SAMPLES = FIXTURES / "providers"


@contextlib.contextmanager
def certificate_server(pem: bytes) -> Iterator[str]:
    """Serves `pem` at /sns.pem on a free local port; yields the URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/x-pem-file")
            self.send_header("content-length", str(len(pem)))
            self.end_headers()
            self.wfile.write(pem)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sns.pem"
    finally:
        server.shutdown()
        server.server_close()


def ses_script(signer: SnsSigner, count: int) -> str:
    """A wrk script cycling through `count` signed SNS notifications of one SES delivery each
    (SignatureVersion 2), distinct message ids, so that none is a duplicate."""
    delivery = json.loads((SAMPLES / "amazon_ses" / "delivery.json").read_text())
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    bodies = []
    for number in range(count):
        message = signer.notification(delivery, now, message_id=f"{tag}-{number}", version="2")
        body, _ = sns_request(message)
        bodies.append(f"[==[{body.decode()}]==],")
    return "\n".join(
        [
            "local bodies = {",
            *bodies,
            "}",
            "local threads, i = 0, 0  -- tid: a global each thread gets from setup",
            "setup = function(thread) threads = threads + 1; thread:set('tid', threads) end",
            "request = function()",
            f"  i = i + 1; local k = ((i - 1) * 2 + tid - 1) % {count} + 1",
            "  return wrk.format('POST', nil, {['Content-Type'] = 'text/plain; charset=UTF-8',",
            "    ['x-amz-sns-message-type'] = 'Notification'}, bodies[k])",
            "end",
        ]
    )


def sparkpost_bodies(requests: int) -> list[bytes]:
    [element] = json.loads((SAMPLES / "sparkpost" / "delivery.json").read_text())
    tag = uuid.uuid4().hex[:8]
    bodies = []
    for number in range(requests):
        batch = []
        for i in range(1000):
            event = {**element["msys"]["message_event"], "event_id": f"{tag}-{number}-{i}"}
            batch.append({"msys": {"message_event": event}})
        bodies.append(json.dumps(batch).encode())
    return bodies


def bench_providers(s: Any) -> tuple[Table, dict[str, Any]]:
    from bench.service import post_batches  # bench.service imports this module

    seconds = s.pick(2, 5)
    rounds = s.pick(2, 3)
    count = s.pick(3000, 10_000)  # each is used once per run: no duplicates
    signer = SnsSigner()
    per: dict[str, list[float]] = {"generic": [], "ses": []}
    with certificate_server(signer.certificate) as cert_url:
        signer.cert_url = cert_url
        pattern = cert_url.replace(".", r"\.")
        env = base_env(
            s.redis_url,
            INBOUND_SECRET=INBOUND_SECRET,
            ALLOW_UNSIGNED_INBOUND="true",  # SparkPost without its basic auth; SES regardless
            SNS_CERT_URL_PATTERN=pattern,
        )
        with web(env) as url:
            run_wrk(url + "/api/webhooks/ses", ses_script(signer, 50), seconds=1)  # warm
            for number in range(rounds):
                prefix = f"p{number}{uuid.uuid4().hex[:6]}"
                generic = run_wrk(
                    url + "/api/webhooks", signed_script(prefix, count, INBOUND_SECRET),
                    seconds=seconds,
                )  # fmt: skip
                ses = run_wrk(url + "/api/webhooks/ses", ses_script(signer, count), seconds=seconds)
                if ses["non2xx"] or generic["non2xx"]:
                    raise RuntimeError(f"non-2xx answers: ses {ses}, generic {generic}")
                per["generic"].append(generic["rps"])
                per["ses"].append(ses["rps"])
                print(
                    f"  providers round {number + 1}: generic signed {generic['rps']:.0f} req/s, "
                    f"SES {ses['rps']:.0f} events/s",
                    flush=True,
                )
            batches = post_batches(
                url + "/api/webhooks/sparkpost",
                sparkpost_bodies(s.pick(6, 20)),
                s.pick(2, 4),
                events_per_body=1000,
            )
    generic_rps, ses_rps = median(per["generic"]), median(per["ses"])
    table = [
        f"wrk -t2 -c50 -d{seconds}s, {rounds} rounds; medians. SES: one SNS notification (an SES "
        "delivery, SignatureVersion 2, RSA-SHA256) per request, distinct message ids, the "
        "certificate fetched once from a local server and cached. Generic: HMAC-signed.",
        "",
        "| route | events/s | vs generic signed | rounds |",
        "|---|---:|---:|---|",
        f"| POST /api/webhooks (generic, HMAC) | {generic_rps:,.0f} | 1.00 | "
        + ", ".join(f"{r:,.0f}" for r in per["generic"])
        + " |",
        f"| POST /api/webhooks/ses (SNS, RSA) | {ses_rps:,.0f} | {ses_rps / generic_rps:.2f} | "
        + ", ".join(f"{r:,.0f}" for r in per["ses"])
        + " |",
        "",
        f"SparkPost batches of 1,000 events: {batches['requests']} requests, "
        f"{batches['parallel']} in parallel: {batches['events_per_s']:,.0f} events/s "
        f"({batches['seconds']:.2f} s, median request {batches['median_request_s']:.2f} s, "
        f"{batches['body_bytes']:,} B each).",
    ]
    return table, {"rounds": per, "sparkpost_batches": batches}
