"""New Relic through a real worker: the guide's event, errors, rate limits and truncation."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest

from config_core import ConfigError, ConfigService
from tests.fakes.new_relic import FakeNewRelic
from tests.integration.conftest import all_in, settle, wait_for_deliveries

pytestmark = pytest.mark.integration

GUIDE_CUSTOM_ATTRIBUTES = {"service": "central-configuration", "team": "platform",
                           "environment": "production"}


@pytest.fixture
def newrelic_fake() -> Iterator[FakeNewRelic]:
    """A started FakeNewRelic account."""
    with FakeNewRelic() as fake:
        yield fake


def newrelic_config(fake: FakeNewRelic, **overrides: Any) -> dict[str, Any]:
    """The guide's newrelic_config, pointed at ``fake`` with ``base_url``."""
    return {"account_id": fake.account_id, "api_key": fake.api_key, "region": "US",
            "event_types": {"config_change": "ConfigurationChanged",
                            "config_error": "ConfigurationError",
                            "performance": "ConfigurationPerformance"},
            "custom_attributes": GUIDE_CUSTOM_ATTRIBUTES, "base_url": fake.base_url,
            **overrides}


async def configure(service: ConfigService, fake: FakeNewRelic, **overrides: Any) -> None:
    """Configure newrelic for ``fake``, wait for that change's own delivery, forget it."""
    await settle(service, "integrations.newrelic", newrelic_config(fake, **overrides))
    fake.reset()


def posts(fake: FakeNewRelic) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


async def test_change__guide_config__the_guide_custom_event_arrives(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given newrelic configured as the guide shows, and an existing key
    await configure(service, newrelic_fake)
    await settle(service, "app.database.host", "localhost")
    newrelic_fake.reset()
    # When the guide's change is made
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then a real worker posts one gzip'd array holding the guide's event plus custom attributes
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert record["attempts"] == 1
    [request] = posts(newrelic_fake)
    assert request.header("Api-Key") == newrelic_fake.api_key
    assert request.header("Content-Encoding") == "gzip"
    [event] = json.loads(gzip.decompress(request.body))
    assert list(event)[:8] == ["eventType", "timestamp", "configKey", "oldValue", "newValue",
                               "userId", "environment", "changeReason"]
    assert {k: event[k] for k in list(event)[2:8]} == {
        "configKey": "app.database.host", "oldValue": "localhost",
        "newValue": "prod-db.internal", "userId": "admin@company.com",
        "environment": "production", "changeReason": "database migration"}
    assert event["eventType"] == "ConfigurationChanged" and isinstance(event["timestamp"], int)
    assert event["eventId"] == result.event_id and event["team"] == "platform"
    assert newrelic_fake.messages() == [event] and newrelic_fake.dropped == []


async def test_schema_violation__config_error_event__configuration_error_arrives(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given newrelic and a schema for app.mode
    await configure(service, newrelic_fake)
    await settle(service, "integrations.schemas", {"app.mode": {"enum": ["on", "off"]}})
    newrelic_fake.reset()
    # When a value breaks the schema
    with pytest.raises(ConfigError):
        await service.set_config("app.mode", "sideways", changed_by="dev@company.com")
    # Then a ConfigurationError event says which key, why and who
    [event] = newrelic_fake.wait_for_messages(1, timeout_s=15)
    assert event["eventType"] == "ConfigurationError" and event["configKey"] == "app.mode"
    assert event["errorKind"] == "schema" and "is not one of" in event["error"]
    assert event["userId"] == "dev@company.com" and newrelic_fake.dropped == []


async def test_security_violation__not_recorded__skipped_with_reason(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given newrelic configured
    await configure(service, newrelic_fake)
    # When an event of a type New Relic does not record is emitted
    event_id = await service.emit_event("security.violation", "app.database.password",
                                        changed_by="mallory@company.com")
    # Then the ledger says skipped, and why, and New Relic was not called
    [record] = await wait_for_deliveries(service, event_id, all_in("skipped"))
    assert "security.violation" in record["detail"]["skipped"]
    assert posts(newrelic_fake) == []


async def test_rate_limited__429_then_success__waits_at_least_retry_after(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given New Relic answers the next post with 429 Retry-After: 2
    await configure(service, newrelic_fake)
    newrelic_fake.fail_next(429, method="POST", retry_after_s=2)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then it is delivered on the second attempt, no sooner than 2 s after the first
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert record["attempts"] == 2
    first, second = posts(newrelic_fake)
    assert second.received_at - first.received_at >= 2.0
    assert [e["configKey"] for e in newrelic_fake.messages()] == ["app.x"]


async def test_unavailable__503_twice__retried_then_delivered(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given New Relic answers the next two posts with 503
    await configure(service, newrelic_fake)
    newrelic_fake.fail_next(503, times=2, method="POST")
    # When a key changes
    result = await service.set_config("app.y", "on")
    # Then the worker retries until it is accepted, and the event arrives once
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"), 60)
    assert record["attempts"] == 3 and len(posts(newrelic_fake)) == 3
    assert [e["newValue"] for e in newrelic_fake.messages()] == ["on"]


async def test_bad_key__403__dead_at_once_without_the_key(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given a key that is not this account's License key
    wrong_key = "0000badkey0000badkey0000badkey0000NRAL"
    await configure(service, newrelic_fake, api_key=wrong_key)
    # When a key changes
    result = await service.set_config("app.z", 2)
    # Then one attempt, dead, with New Relic's text and no key in the ledger
    [record] = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert record["attempts"] == 1 and len(posts(newrelic_fake)) == 1
    assert "403" in record["last_error"] and "invalid API key" in record["last_error"]
    assert wrong_key not in record["last_error"] and newrelic_fake.api_key not in json.dumps(
        record)
    assert newrelic_fake.messages() == []


async def test_long_value__60kb__arrives_truncated_to_4096_not_dropped(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given newrelic configured
    await configure(service, newrelic_fake)
    # When a 60 KB value is set (values are capped at 64 KB, so 100 KB cannot be stored;
    # the unit tests send 100 KB through the connector directly)
    result = await service.set_config("app.certificate.bundle", "c" * 60_000)
    # Then the event is delivered, its value cut to 4096 characters, and nothing dropped
    await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    [event] = newrelic_fake.messages()
    assert len(event["newValue"]) == 4096 and event["newValue"].startswith("ccc")
    assert event["configKey"] == "app.certificate.bundle" and newrelic_fake.dropped == []


async def test_batching_on__10_changes__one_post_with_10_events(
        service: ConfigService, newrelic_fake: FakeNewRelic) -> None:
    # Given newrelic configured, only app.* routed to it, and batches of 10 asked for
    await configure(service, newrelic_fake)
    await settle(service, "integrations.notifications", {"triggers": {"nr": {
        "patterns": ["app.*"], "connectors": ["newrelic"], "urgency": "medium"}}})
    await settle(service, "integrations.batching", {"batch_size": 10, "batch_timeout": 30})
    newrelic_fake.reset()
    # When 10 keys change
    ids = [(await service.set_config(f"app.batched{i}", i)).event_id for i in range(10)]
    # Then all 10 are delivered by one POST, in order, each the guide's event
    for event_id in ids:
        await wait_for_deliveries(service, event_id, all_in("delivered"), 30)
    [request] = posts(newrelic_fake)
    assert [e["configKey"] for e in newrelic_fake.messages()] == [
        f"app.batched{i}" for i in range(10)]
    assert request.header("Api-Key") == newrelic_fake.api_key and newrelic_fake.dropped == []
