"""One outbox stream per urgency: the write picks the stream, the reader drains high first."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator

import pytest
import redis

from config_core import ConfigError, ConfigService, IntegrationError
from config_core.routing import URGENCIES, route
from config_core.state import events
from config_core.state.keys import Namespace
from config_core.state.values import URGENCY_SCRIPT, value_key
from workers.outbox_reader import READ_BATCH, OutboxReader, relay_urgencies
from workers.relay import Relay

WEBHOOK = "https://discord.com/api/webhooks/123/token-abc"

TRIGGERS = {
    "database": {"patterns": ["db.*"], "connectors": ["discord"], "urgency": "high"},
    "ui": {"patterns": ["ui.*"], "connectors": ["discord"], "urgency": "low"},
    "nobody": {"patterns": ["ui.alert.*"], "connectors": ["jira"], "urgency": "high"},
}
"""``jira`` is never configured here: its trigger must not raise ``ui.alert.*`` to high."""


@pytest.fixture
async def writer(service: ConfigService, monkeypatch: pytest.MonkeyPatch) -> ConfigService:
    """A service whose events stay in the outbox (no eager relay), routing configured."""
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    await service.set_config("integrations.discord", {"webhook_url": WEBHOOK})
    await service.set_config("integrations.notifications", {"triggers": TRIGGERS})
    return service


def lengths(raw: redis.Redis, ns: Namespace) -> dict[str, int]:
    return {urgency: raw.xlen(stream) for urgency, stream in events.outbox_keys(ns).items()}


def keys_in(raw: redis.Redis, stream: str) -> list[str]:
    return [json.loads(fields["e"])["key"] for _, fields in raw.xrange(stream)]


async def test_write__triggers_by_urgency__event_in_the_stream_of_its_urgency(
        writer: ConfigService, raw_redis: redis.Redis) -> None:
    # Given the triggers above / When keys of each kind change
    ns = writer.namespace
    before = lengths(raw_redis, ns)
    for key in ("ui.theme", "db.host", "app.name", "ui.alert.banner", "db.port"):
        await writer.set_config(key, "x")
    # Then high keys are in outbox:high, low ones in outbox:low, the rest in the medium outbox
    assert keys_in(raw_redis, events.outbox_key(ns, "high")) == ["db.host", "db.port"]
    assert keys_in(raw_redis, events.outbox_key(ns, "low")) == ["ui.theme", "ui.alert.banner"]
    assert lengths(raw_redis, ns)["medium"] == before["medium"] + 1
    assert events.outbox_key(ns, "medium") == events.outbox_key(ns) == ns.key("outbox")


async def test_write__no_triggers__every_event_medium(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a configured connector and no triggers (every change goes out on medium)
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    await service.set_config("integrations.discord", {"webhook_url": WEBHOOK})
    # When / Then
    await service.set_config("db.host", "x")
    assert lengths(raw_redis, service.namespace) == {"high": 0, "medium": 2, "low": 0}


async def test_write__backlog_spread_over_streams__limit_counts_them_all(
        writer: ConfigService, raw_redis: redis.Redis) -> None:
    # Given a backlog limit equal to what the three streams hold together
    await writer.set_config("db.host", "x")
    await writer.set_config("ui.theme", "x")
    total = sum(lengths(raw_redis, writer.namespace).values())
    raw_redis.hset(value_key(writer.namespace, "integrations.max_backlog"), "value", str(total))
    # When / Then a change of any urgency is refused
    for key in ("db.host", "ui.theme", "app.name"):
        with pytest.raises(IntegrationError, match=f"max_backlog is {total}"):
            await writer.set_config(key, "y")


PATTERNS = ["app.*", "*.db.*", "a?c", "[abc]x", "[!abc]x", "[a-c]*", "x[", "[]]z", "[!]]z",
            "a.b", "a%b", "*", "a*b*c", "100%", "^a", "[^a]", "a$", "(a)", "a+b", "a-b", "[%]",
            "é*", "[a-]", "[!]", "a\\b", "[\\]", "db.[!t]*"]
KEYS = ["app.x", "app", "x.db.y", "abc", "axc", "ax", "bx", "dx", "a", "x[", "]z", "az", "a.b",
        "axb", "a%b", "100%", "^a", "b", "a$", "(a)", "a+b", "a-b", "%", "é1", "-", "!", "a\\b",
        "\\", "aXbYc", "ac", "db.host", "db.tls"]


@pytest.mark.parametrize("pattern", PATTERNS)
def test_urgency_script__glob_pattern__agrees_with_routing(
        raw_redis: redis.Redis, tenant: str, pattern: str) -> None:
    # Given one high trigger with ``pattern`` for a configured connector
    ns = Namespace(tenant, "production")
    triggers = {"t": {"patterns": [pattern], "connectors": ["discord"], "urgency": "high"}}
    raw_redis.hset(value_key(ns, "integrations.discord"), "value", "{}")
    raw_redis.hset(value_key(ns, "integrations.notifications"), "value",
                   json.dumps({"triggers": triggers}))
    script = raw_redis.register_script(URGENCY_SCRIPT)
    # When / Then the script's urgency is routing's for every key
    for key in KEYS:
        expected = route(key, triggers, {"discord"}).get("discord", "medium")
        assert script(args=[ns.prefix, key]) == expected, (pattern, key)
        assert (expected == "high") == fnmatch.fnmatchcase(key, pattern)


# the reader ------------------------------------------------------------------------------------


@pytest.fixture
def outbox(raw_redis: redis.Redis, tenant: str) -> Iterator[Namespace]:
    ns = Namespace(tenant, "production")
    events.ensure_group(raw_redis, ns)
    yield ns
    raw_redis.delete(*events.outbox_keys(ns).values())


def add(raw: redis.Redis, ns: Namespace, urgency: str, count: int) -> None:
    for i in range(count):
        raw.xadd(events.outbox_key(ns, urgency), {"e": json.dumps({"n": f"{urgency}{i}"})})


def drain(reader: OutboxReader, ns: Namespace, raw: redis.Redis,
          between: dict[int, tuple[str, int]] | None = None) -> list[tuple[str, int]]:
    """Every batch read (urgency, size), acknowledging as a relay does; ``between[i]`` adds
    entries after the i-th batch."""
    batches = []
    for i in range(100):
        found = reader.read([ns])
        if not found:
            return batches
        for batch in found:
            stream = events.outbox_key(ns, batch.urgency)
            raw.xack(stream, events.DISPATCH_GROUP, *(eid for eid, _ in batch.entries))
            batches.append((batch.urgency, len(batch.entries)))
        if between and i in between:
            add(raw, ns, *between[i])
    raise AssertionError(f"the reader never ran dry: {batches[:20]}")


def test_reader__all_levels_waiting__high_then_medium_then_low_in_bounded_batches(
        raw_redis: redis.Redis, outbox: Namespace) -> None:
    # Given a backlog on every level, low written first
    add(raw_redis, outbox, "low", 25)
    add(raw_redis, outbox, "medium", 30)
    add(raw_redis, outbox, "high", 3)
    # When a reader drains it
    batches = drain(OutboxReader(raw_redis, "c1"), outbox, raw_redis)
    # Then every high entry comes first, then medium, then low, each batch bounded
    low, medium = READ_BATCH["low"], READ_BATCH["medium"]
    assert batches == [("high", 3), ("medium", medium), ("medium", 30 - medium),
                       ("low", low), ("low", low), ("low", 25 - 2 * low)]


def test_reader__high_arrives_during_low_backlog__read_next(
        raw_redis: redis.Redis, outbox: Namespace) -> None:
    # Given 50 low entries / When a high one arrives after the first low batch
    add(raw_redis, outbox, "low", 50)
    batches = drain(OutboxReader(raw_redis, "c1"), outbox, raw_redis, between={0: ("high", 1)})
    # Then it is the very next batch, ahead of the 40 low entries still waiting
    assert batches[:3] == [("low", READ_BATCH["low"]), ("high", 1), ("low", READ_BATCH["low"])]
    assert sum(n for u, n in batches if u == "low") == 50


def test_reader__restricted_to_high__never_reads_lower_levels(
        raw_redis: redis.Redis, outbox: Namespace) -> None:
    # Given entries on every level
    for urgency in URGENCIES:
        add(raw_redis, outbox, urgency, 2)
    # When a high-only reader drains / Then it took the high ones and left the others waiting
    assert drain(OutboxReader(raw_redis, "c1", ("high",)), outbox, raw_redis) == [("high", 2)]
    assert drain(OutboxReader(raw_redis, "c2", ("low", "medium")), outbox, raw_redis) == [
        ("medium", 2), ("low", 2)]


def test_reader__own_pending__read_again_most_urgent_first(
        raw_redis: redis.Redis, outbox: Namespace) -> None:
    # Given entries this consumer read but never acknowledged (a failed dispatch)
    add(raw_redis, outbox, "low", 2)
    add(raw_redis, outbox, "high", 1)
    reader = OutboxReader(raw_redis, "c1")
    assert [b.urgency for b in reader.read([outbox])] == ["high"]
    assert [b.urgency for b in reader.read([outbox])] == ["low"]
    # When it reads its own pending entries / Then it gets them back, high first
    again = reader.read([outbox], own_pending=True)
    assert [(b.urgency, len(b.entries)) for b in again] == [("high", 1)]


@pytest.mark.parametrize(("value", "expected"), [
    ("", URGENCIES), ("high", ("high",)), ("low, medium", ("medium", "low")),
    ("high,medium,low", URGENCIES)])
def test_relay_urgencies__setting__most_urgent_first(value: str,
                                                     expected: tuple[str, ...]) -> None:
    assert relay_urgencies({"APGCFG_RELAY_URGENCIES": value}) == expected


@pytest.mark.parametrize("value", ["urgent", "high,,", ",", "high;low"])
def test_relay_urgencies__bad_setting__error_names_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="APGCFG_RELAY_URGENCIES"):
        relay_urgencies({"APGCFG_RELAY_URGENCIES": value})


async def test_relay__entry_routed_below_its_stream__acknowledged_where_it_was_read(
        writer: ConfigService, raw_redis: redis.Redis) -> None:
    # Given an event whose deliveries go out on low, found in the medium stream (as an entry
    # sent again by hand or by a relay that died before acknowledging it)
    ns = writer.namespace
    await writer.set_config("ui.theme", "dark")
    low, medium = events.outbox_key(ns, "low"), events.outbox_key(ns, "medium")
    [(entry_id, fields)] = raw_redis.xrange(low)
    raw_redis.xdel(low, entry_id)
    raw_redis.xadd(medium, fields)
    # When a relay dispatches it
    relay = Relay(raw_redis, "c1")
    for _ in range(50):  # every namespace of the database, bounded
        if relay.read_once() == 0:
            break
    # Then it is acknowledged and deleted in the medium stream, not left pending there
    assert raw_redis.xpending(medium, events.DISPATCH_GROUP)["pending"] == 0
    assert raw_redis.xlen(medium) == 0
