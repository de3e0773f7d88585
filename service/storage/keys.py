"""Every Redis key this service uses, in one place.

All keys share the `mh:` prefix so the service can share a Redis with other applications
and an operator can find (or delete) everything it owns with `SCAN MATCH mh:*`.
"""

import functools
from collections.abc import Iterator
from contextlib import contextmanager

from service.core.accounts import DEFAULT_ACCOUNT
from service.core.partitions import Partitioning

PREFIX = "mh:"

# The deployment's partitions (EVENT_PARTITIONS, service.core.partitions): with one, every
# name below is as it was before partitions; with several, the keys of an account, its
# webhooks and their deliveries carry their partition's hash tag right after PREFIX
# ("mh:{p3.0}:webhook:35"), so that each script's keys share a Redis Cluster slot. Set once
# at process start (`use`), before any key is named: like PREFIX, names are a property of
# the deployment, not of a client, and every process of a deployment must agree on them.
_partitioning = Partitioning(1)


def use(partitioning: Partitioning) -> None:
    """Name keys for `partitioning` from now on (the web process, the worker and the CLI at
    start; tests that run partitioned)."""
    global _partitioning
    _partitioning = partitioning
    for cached in _CACHED:
        cached.cache_clear()


def partitioning() -> Partitioning:
    return _partitioning


@contextmanager
def naming(partitioning: Partitioning) -> Iterator[None]:
    """Name keys for `partitioning` inside the block, then as before: for `mailhooks migrate`,
    which names the same data for two deployments. The naming is process-wide, so the block
    must not await (another task would name its keys for the wrong deployment)."""
    before = _partitioning
    use(partitioning)
    try:
        yield
    finally:
        use(before)


def in_partition(partition: int) -> str:
    """The start of every name in `partition`: PREFIX, then its hash tag if partitioned."""
    return PREFIX + _partitioning.prefix(partition)


# Names below marked "partitioned: its account's" (its webhook's, its delivery's) carry that
# partition's tag with several partitions (`_placed`); the others never do, and each of those
# is only ever used by single-key commands, or combined with keys of its own slot (each says
# so), so that no script, MULTI or multi-key command spans two slots.

# Hash per account: id, name, created_at, updated_at, and deleting ("1") while a DELETE
# removes what it owns (the account counts as gone from then on; a repeated DELETE resumes).
# Partitioned: its account's.
ACCOUNT = PREFIX + "account:{account_id}"

# Sorted set of every account id, all scores 0: ids sort by creation time
# (service.core.accounts), so lexicographic order pages them by `after`. Not partitioned
# (one listing of every account): written by its own command beside the account's MULTI,
# never inside it (service.storage.accounts says in which order, and why).
ACCOUNT_INDEX = PREFIX + "accounts"

# Hash per account of its API keys: key id → the key's SHA-256 (listing, revoking, deleting).
# Partitioned: its account's.
ACCOUNT_KEYS = PREFIX + "account:{account_id}:keys"

# Hash per API key, found by the key's SHA-256 (the key itself is never stored): id, account,
# prefix, created_at, last_used_at. Revoking deletes it, so every web process refuses the key
# from its next request: nothing caches it. Not partitioned (a request names no account
# before its key is found): written and deleted by its own command, after (issuing) or
# before (revoking) the account's ACCOUNT_KEYS, so that no key works that the account does
# not list.
API_KEY = PREFIX + "api-key:{digest}"

# Sorted set per account of its webhook ids, scored by id (listing and paging by `after`,
# counting against MAX_WEBHOOKS_PER_ACCOUNT). The default account keeps WEBHOOK_INDEX with
# one partition. Partitioned: its account's.
ACCOUNT_WEBHOOKS = PREFIX + "account:{account_id}:webhooks"

# Hash per account of the webhook ids `mailhooks migrate` changed (old id → new id): an id
# that does not name its account's partition on the new deployment is given a new one there.
# The management API and the portal read it only when an id is not found, so that customers'
# old ids keep working; nothing on the ingest or delivery path reads it. Deleting the account
# deletes it. Partitioned: its account's.
WEBHOOK_ALIASES = PREFIX + "account:{account_id}:webhook-aliases"

# Hash written by `mailhooks migrate` on the deployment it copies to: the partitions it named
# keys for, the id ceiling (every webhook id the source had issued is at most this; the
# sequences start above it), when the first run started, when the last complete run did. A
# second run reads it, so that it renames the same ids the same way and refuses another
# partition count. Not partitioned: single-key commands only.
MIGRATION = PREFIX + "migration"

# String per email id registered by POST /api/emails: the account that sent it, expiring
# EMAIL_OWNER_TTL after its last registration. {digest} as for SEEN. Not partitioned (found
# by the email id alone): single-key commands and claim_email/forget_email.lua only; with
# several partitions routing reads them with one GET each, not MGET (service.storage.accounts).
EMAIL_OWNER = PREFIX + "email-owner:{digest}"

# Sorted set per account of the email ids it registered, scored by expiry (ms): deleting the
# account forgets them; each registration drops the expired. Partitioned: its account's.
ACCOUNT_EMAILS = PREFIX + "account:{account_id}:emails"

# Hash per account of its suppressed addresses (lower case) → JSON {"reason", and "entry": the
# stream entry id of the event that suppressed it (in the account's partition's stream), or
# "at": when it was added by hand}. The sending path's check is one HGET. Written at ingest, in
# the append's pipeline (service.storage.suppressions), so in the account's partition with its
# seen keys; deleting the account deletes it. Name: suppressions(account).
SUPPRESSIONS = PREFIX + "account:{account_id}:suppressions"

# Sorted set per account and reason (hard_bounce, complaint, unsubscribe, manual), all scores 0,
# members the addresses, so lexicographic order pages them by `after`: GET /api/suppressions
# reads one (a reason's) or merges the four (every address), rather than a fifth set of every
# address costing memory again. In the account's partition. Name: suppressed(account, reason).
SUPPRESSED = PREFIX + "account:{account_id}:suppressed:{reason}"

# Sorted set per account (the default account excepted) of its events: members as in
# EVENTS_BY_EMAIL. GET /api/events reads an account's events here instead of scanning the
# stream; the default account, whose events are most of the stream in single-account mode
# and include those stored before accounts existed, scans. Trimming removes members. In the
# account's partition, beside its stream. Name: events_by_account(account).
EVENTS_BY_ACCOUNT = PREFIX + "events:account:{account_id}"

# Stream per account of its events that the workers could not hold in memory: spilled from
# its partition's events stream, each a copy of the entry with field "id" (the original entry
# id: the event id and delivery ids follow from it) before the entry's own fields, read by
# the delivery group as the account's queue in a worker runs low (service.core.fairness,
# docs/delivery.md). Entries are deleted once delivered; an empty lane is deleted.
LANE = "lane:{account_id}"

# Sorted set per partition of the accounts with a lane (score: when it was listed, ms): how
# every worker finds lanes it did not spill itself (another worker's, or a dead one's).
LANES = "lanes"

# String, INCR'd to issue webhook ids (1, 2, 3, … as on the API page). Never reset, so a
# deleted webhook's id is never reused. One per partition (`webhook_sequence`): with several,
# a webhook is created in its account's partition, and its id is
# Partitioning.webhook_id(INCR of that partition's sequence, partition), so that the id alone
# names the partition (id % count); ids are then unique but not consecutive.
WEBHOOK_ID_SEQUENCE = PREFIX + "webhook:seq"

# Hash per webhook: id, account, url, events (comma-separated short names), secret, active
# ("1"/"0"), created_at, updated_at, rate_limit (deliveries per second; absent or "":
# unlimited). The secret lives only here. No account field: the default account's (created
# before accounts existed). Optional: previous_secrets (those a rotation replaced, still
# signing until their expiry: JSON [[secret, expires ms], …], newest first;
# service.core.rotation), headers (the endpoint's custom headers: JSON [[name, value], …];
# service.core.headers); "" or no field when there are none. Partitioned: its webhook's
# (which is its account's).
WEBHOOK = PREFIX + "webhook:{id}"

# String per rate-limited webhook: its limiter's state, the theoretical arrival time of its
# next delivery (GCRA, µs since the epoch), shared by every worker process; expires when that
# time has passed (rate_slot.lua). Partitioned: its webhook's.
WEBHOOK_RATE = PREFIX + "webhook:{id}:rate"

# The default account's ACCOUNT_WEBHOOKS: the name every webhook id was indexed under before
# accounts existed, so that an upgrade needs no migration. With several partitions (a new
# deployment's names) the default account has ACCOUNT_WEBHOOKS like any other.
WEBHOOK_INDEX = PREFIX + "webhooks"

# Set per account and event type ("open", "click", …, or "*" for webhooks subscribed to
# everything) of the ids subscribed to it: the worker finds an event's subscribers with one
# SUNION of two sets of its own account, never a scan, whatever the number of accounts. The
# default account keeps the names from before accounts (DEFAULT_SUBSCRIBERS) with one
# partition. Partitioned: its account's.
SUBSCRIBERS = PREFIX + "subscribers:{account_id}:{event_type}"
DEFAULT_SUBSCRIBERS = PREFIX + "subscribers:{event_type}"

# Stream of every stored inbound event, oldest first. Trimmed to about EVENTS_MAXLEN, but
# never past an entry a consumer group has not read or has not acknowledged.
# Entry field "e" holds the msgspec-encoded canonical Event without its id and account: the
# event id is "evt_" + the entry id, so the id costs no memory and finds its entry with one
# XRANGE. Field "a" holds the account it was routed to, "" when unrouted; an entry without it
# was stored before accounts existed and is the default account's.
# One stream per partition (events_stream(partition)): an account's events are in its
# partition's, unrouted events in partition 0's. Entry ids are per stream, so with several
# partitions an event id also names its partition (service.core.ids). Each partition's stream
# is trimmed to about EVENTS_MAXLEN / partitions. EVENTS_STREAM is the name with one
# partition (as before partitions): the code names it with events_stream().
EVENTS_STREAM = PREFIX + "events"

# String per provider event already stored (value: its entry id), expiring after
# DEDUP_TTL_SECONDS: a provider's retry of the same event is recognised and stored once.
# {digest} is a short hash of the provider's event id, so keys stay small whatever its length.
# In the partition of the event's account (the append script sets it with the XADD).
SEEN = PREFIX + "seen:{provider}:{digest}"

# String per signature token a provider signs without the body (Mailgun), value: the event it
# came with. The same token with another event is a replayed signature over a forged body.
# Untagged: only SET NX and GET touch it, alone, before the events' account is known.
TOKEN = PREFIX + "token:{provider}:{digest}"

# Sorted sets (all scores 0, members = zero-padded entry ids, so lexicographic order is time
# order) of the events about one email id / one recipient, for GET /api/events filters.
# Trimming an entry removes its members (service.storage.trimming); each key also expires
# INDEX_TTL after its last event, a backstop. A member whose entry is gone is skipped. An entry
# whose recipient str.lower changes beyond ASCII letters names its recipient key in field "r".
# In the partition of the event's account, beside its stream: two accounts of different
# partitions that send the same email id or recipient have an index each.
EVENTS_BY_EMAIL = PREFIX + "events:email:{email_id}"
EVENTS_BY_RECIPIENT = PREFIX + "events:recipient:{recipient}"

# Hash of inbound counters: "{provider}:stored", "{provider}:duplicate",
# "{provider}:ignored:{provider_type}" (events with no canonical type, accepted, not stored),
# "{provider}:unrouted" (stored events of no existing account, delivered to nobody).
# One per partition (inbound_counts(partition)), counted by the append script of that
# partition's events; readers add them up. INBOUND_COUNTS is the name with one partition.
INBOUND_COUNTS = PREFIX + "inbound:counts"

# The consumer group the workers read the events stream with.
DELIVERY_GROUP = "mh:delivery"

# Hash per delivery (one event to one webhook): id, webhook_id, event_id, type, status
# (pending|succeeded|failed), attempts, created_at/updated_at/next_attempt_at (ms),
# last_status_code, last_error, lease_owner/lease_until (who may attempt it now, and until
# when), and the payload once the delivery outlives its first attempt (the stream may be
# trimmed before its last retry). The id is deterministic: dlv_{entry id}_{webhook id}.
# Partitioned: its delivery's, which is its webhook's (Partitioning.of_delivery reads the
# webhook id at the end of the delivery id).
DELIVERY = PREFIX + "delivery:{delivery_id}"

# List per delivery of its attempts (msgspec JSON, newest last, the last 50 kept).
# Partitioned: its delivery's.
DELIVERY_ATTEMPTS = PREFIX + "delivery:{delivery_id}:attempts"

# Sorted sets per webhook (all scores 0, members "{created ms, 15 digits}:{delivery id}" so
# lexicographic order is time order): every delivery, and one set per status. Partitioned:
# their webhook's.
DELIVERIES = PREFIX + "deliveries:{webhook_id}"
DELIVERIES_BY_STATUS = PREFIX + "deliveries:{webhook_id}:{status}"

# Sorted set of every leased pending delivery, scored by lease expiry (ms): maintenance
# re-queues those whose lease ran out with nobody attempting them (a worker that died
# between recording an attempt and scheduling the next). One per partition
# (`delivery_leases`), holding that partition's deliveries, as the claim, record and requeue
# scripts change it with the delivery; the sweep reads each partition's in turn.
DELIVERY_LEASES = PREFIX + "delivery-leases"

# Sorted set per partition of the attempts scheduled for later (retries, manual retries,
# recover, hand-offs from a saturated endpoint, waits for a rate-limit slot, the lease
# sweep's), scored by when each is due (ms since the epoch). Members are
# service.core.ids.retry_member: the lease owner that makes the attempt (it names the
# delivery), so scheduling one twice is a no-op. A worker taking due members pushes their
# score a visibility window ahead (take_due_retries.lua): one that dies holding them loses
# nothing. One set per partition, in its deliveries' slot (mh:retries with one partition).
RETRIES = "retries"

# String counter of stream entries that were no event (written there by something else): the
# worker acknowledges and skips them, the event reads skip them, /api/status shows the count.
# One for every partition, untagged: only INCRBY and GET touch it, alone.
UNREADABLE_EVENTS = PREFIX + "events:unreadable"

# Stream of dead letters: events stream entries the worker could not process (not an event,
# or failing DEAD_LETTER_AFTER times), each set aside and acknowledged in the delivery group
# in one script, so that trimming goes on past it. Fields: entry (the original entry id),
# reason (unreadable, failed, reclaimed), detail, at (ISO 8601), deliveries (how many times
# the group handed the entry out), consumer, and the original fields each prefixed "f:"
# (f:e, f:a, f:r). Never trimmed: redrive or delete them. XLEN is their count (/api/status).
# One per partition (dead_letters(partition)), beside its events stream: setting aside and
# redriving touch both in one script. DEAD_LETTERS is the name with one partition.
DEAD_LETTERS = PREFIX + "events:dead"

# String per Idempotency-Key in use, expiring: while its first request runs, a marker
# ("p:" + the request's token + the body's fingerprint) for PENDING_TTL_SECONDS (60 s); then
# that request's response ("s:" + AES-GCM sealed) for RESULT_TTL_SECONDS (24 h). {digest}
# derives from the caller's credential, account, method, path and key
# (service.core.idempotency), so neither the name nor the value reveals any of them. Not
# partitioned: single-key commands and settle_idempotency.lua (one key) only.
IDEMPOTENCY = PREFIX + "idempotency:{digest}"

# String with the worker's last heartbeat (ISO 8601), expiring when the worker stops beating.
# Not partitioned: single-key commands only.
WORKER_HEARTBEAT = PREFIX + "worker:heartbeat"

# Hash of the service's counters and histogram buckets, one field per metric family and label
# values ("deliveries|succeeded", "delivery_latency_seconds|0.05"; service.core.metrics): each
# web and worker process adds its counts once a second, and GET /metrics reads them. Bounded:
# no field names a webhook, URL or (unless METRICS_PER_ACCOUNT) account. Not partitioned, but
# record.lua counts the webhooks it disables in the hash of the delivery's partition
# (`partition_metrics`): METRICS itself with one partition; with several, one hash per
# partition beside it, which a scrape adds in (service.storage.metrics).
METRICS = PREFIX + "metrics"

# String per portal link opened (docs/portal.md), set with NX: a link id seen here is refused.
# Expires when the link would have expired anyway. Not partitioned: single-key commands only.
PORTAL_LINK = PREFIX + "portal:link:{link_id}"

# Hash per portal session: account, csrf (the forms' synchronizer token), created_at,
# expires_at. {digest} is the SHA-256 of the cookie's value, which is never stored. Expires
# with the session (PORTAL_SESSION_SECONDS); signing out deletes it. Not partitioned: one
# MULTI of this key alone (HSET, EXPIRE) and single-key commands.
PORTAL_SESSION = PREFIX + "portal:session:{digest}"


def _placed(name: str, partition: int) -> str:
    """`name` (a name above, from PREFIX) in `partition`: its hash tag right after PREFIX;
    with one partition, `name` itself."""
    return in_partition(partition) + name[len(PREFIX) :]


def _of_account(account_id: str) -> int:
    return _partitioning.of_account(account_id)


def _of_delivery(delivery_id: str) -> int:
    if _partitioning.count == 1:
        return 0  # skip parsing the id, on the path of every delivery
    try:
        return _partitioning.of_delivery(delivery_id)
    except (IndexError, ValueError):
        # Not a delivery id (a URL's path, say): no delivery has it, in whichever partition
        # it is looked up, so it is answered as missing rather than failing.
        return 0


# Per-webhook names are built for every delivery (the outcome script alone names six):
# cached, as there are few webhooks and many deliveries.
@functools.lru_cache(maxsize=4096)
def webhook(webhook_id: int) -> str:
    return _placed(WEBHOOK.format(id=webhook_id), _partitioning.of_webhook(webhook_id))


@functools.lru_cache(maxsize=4096)
def webhook_rate(webhook_id: int) -> str:
    return _placed(WEBHOOK_RATE.format(id=webhook_id), _partitioning.of_webhook(webhook_id))


def webhook_sequence(partition: int) -> str:
    """The sequence `partition`'s webhook ids are issued from (WEBHOOK_ID_SEQUENCE)."""
    return _placed(WEBHOOK_ID_SEQUENCE, partition)


@functools.lru_cache(maxsize=16384)
def subscribers(account_id: str, event_type: str) -> str:
    if account_id == DEFAULT_ACCOUNT and _partitioning.count == 1:
        return DEFAULT_SUBSCRIBERS.format(event_type=event_type)
    name = SUBSCRIBERS.format(account_id=account_id, event_type=event_type)
    return _placed(name, _of_account(account_id))


def account_webhooks(account_id: str) -> str:
    if account_id == DEFAULT_ACCOUNT and _partitioning.count == 1:
        return WEBHOOK_INDEX
    return _placed(ACCOUNT_WEBHOOKS.format(account_id=account_id), _of_account(account_id))


def account(account_id: str) -> str:
    return _placed(ACCOUNT.format(account_id=account_id), _of_account(account_id))


def account_keys(account_id: str) -> str:
    return _placed(ACCOUNT_KEYS.format(account_id=account_id), _of_account(account_id))


def webhook_aliases(account_id: str) -> str:
    return _placed(WEBHOOK_ALIASES.format(account_id=account_id), _of_account(account_id))


def api_key(digest: str) -> str:
    return API_KEY.format(digest=digest)


def email_owner(digest: str) -> str:
    return EMAIL_OWNER.format(digest=digest)


def account_emails(account_id: str) -> str:
    return _placed(ACCOUNT_EMAILS.format(account_id=account_id), _of_account(account_id))


# The event log's keys (docs/design.md#partitions): each in the partition of the account whose
# events it holds. Built with f-strings from the partition's start (no str.format): the
# append names four per event.


def events_stream(partition: int) -> str:
    return in_partition(partition) + "events"


def dead_letters(partition: int) -> str:
    return in_partition(partition) + "events:dead"


def inbound_counts(partition: int) -> str:
    return in_partition(partition) + "inbound:counts"


def events_by_account(account_id: str, partition: int | None = None) -> str:
    """In the account's partition; `partition` names it when known (the append, whose
    unrouted events in partition 0 name the default account's, which they never write)."""
    if partition is None:
        partition = _partitioning.of_account(account_id)
    return f"{in_partition(partition)}events:account:{account_id}"


def seen(provider: str, digest: str, partition: int) -> str:
    return f"{in_partition(partition)}seen:{provider}:{digest}"


def retries(partition: int) -> str:
    return in_partition(partition) + RETRIES


def delivery(delivery_id: str) -> str:
    return _placed(DELIVERY.format(delivery_id=delivery_id), _of_delivery(delivery_id))


def delivery_attempts(delivery_id: str) -> str:
    return _placed(DELIVERY_ATTEMPTS.format(delivery_id=delivery_id), _of_delivery(delivery_id))


@functools.lru_cache(maxsize=16384)
def deliveries(webhook_id: int, status: str | None = None) -> str:
    if status is None:
        name = DELIVERIES.format(webhook_id=webhook_id)
    else:
        name = DELIVERIES_BY_STATUS.format(webhook_id=webhook_id, status=status)
    return _placed(name, _partitioning.of_webhook(webhook_id))


def delivery_leases(partition: int) -> str:
    """`partition`'s DELIVERY_LEASES."""
    return _placed(DELIVERY_LEASES, partition)


def delivery_partition(delivery_id: str) -> int:
    """The partition of a delivery's keys (its lease index's among them)."""
    return _of_delivery(delivery_id)


def partition_metrics(partition: int) -> str:
    """The hash record.lua counts disabled webhooks in for `partition` (see METRICS)."""
    return _placed(METRICS, partition)


def token(provider: str, digest: str) -> str:
    return TOKEN.format(provider=provider, digest=digest)


# The partition defaults to 0, the only one of a single Redis (where these names are as before
# partitions); the service always passes it.
def events_by_email(email_id: str, partition: int = 0) -> str:
    return f"{in_partition(partition)}events:email:{email_id}"


def events_by_recipient(recipient: str, partition: int = 0) -> str:
    return f"{in_partition(partition)}events:recipient:{recipient.lower()}"


def suppressions(account_id: str) -> str:
    partition = _partitioning.of_account(account_id)
    return f"{in_partition(partition)}account:{account_id}:suppressions"


def suppressed(account_id: str, reason: str) -> str:
    partition = _partitioning.of_account(account_id)
    return f"{in_partition(partition)}account:{account_id}:suppressed:{reason}"


def portal_link(link_id: str) -> str:
    return PORTAL_LINK.format(link_id=link_id)


def portal_session(digest: str) -> str:
    return PORTAL_SESSION.format(digest=digest)


def idempotency(digest: str) -> str:
    return IDEMPOTENCY.format(digest=digest)


def lane(account_id: str) -> str:
    return lane_in(_partitioning.of_account(account_id), account_id)


def lane_in(partition: int, account_id: str) -> str:
    """The account's lane, named in `partition` (its own: the caller knows it otherwise)."""
    return in_partition(partition) + LANE.format(account_id=account_id)


def lanes(partition: int) -> str:
    return in_partition(partition) + LANES


# Cleared by `use`: their names depend on the partitioning.
_CACHED: list[functools._lru_cache_wrapper] = [webhook, webhook_rate, subscribers, deliveries]  # type: ignore[type-arg]
