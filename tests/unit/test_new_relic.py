"""New Relic: settings, the pure event builders, limits and splitting, errors, and the fake."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from config_core import ConfigService
from config_core.errors import ConfigError
from connectors.errors import AuthError, RateLimited, Rejected, Skipped, Unavailable
from connectors.new_relic import (
    MAX_ATTRIBUTES,
    MAX_PAYLOAD_BYTES,
    NewRelicConnector,
    build_event,
    encode,
    limit_event,
    performance_event,
    rest_of_minute_s,
    split_batches,
    within_window,
)
from tests.fakes.new_relic import FakeNewRelic
from tests.unit.samples import make_event

GUIDE_EVENT = {
    "eventType": "ConfigurationChanged",
    "timestamp": 1704067200,
    "configKey": "app.database.host",
    "oldValue": "localhost",
    "newValue": "prod-db.internal",
    "userId": "admin@company.com",
    "environment": "production",
    "changeReason": "database migration",
}
"""The guide's custom event, in the guide's order."""

GUIDE_CUSTOM_ATTRIBUTES = {"service": "central-configuration", "team": "platform",
                           "environment": "production"}


def guide_config(**overrides: Any) -> dict[str, Any]:
    """The guide's newrelic_config, with ``overrides``."""
    return {"account_id": "1234567", "api_key": "your-api-key", "region": "US",
            "event_types": {"config_change": "ConfigurationChanged",
                            "config_error": "ConfigurationError",
                            "performance": "ConfigurationPerformance"},
            "custom_attributes": GUIDE_CUSTOM_ATTRIBUTES, **overrides}


def guide_change(**overrides: Any) -> dict[str, Any]:
    """The guide's change as an event, at the guide's time."""
    return make_event(**{"reason": "database migration",
                         "timestamp": "2024-01-01T00:00:00.250000Z",
                         "timestamp_epoch": 1704067200.25, **overrides})


def recent(**overrides: Any) -> dict[str, Any]:
    """An event from a moment ago (New Relic keeps the timestamp of such events)."""
    return guide_change(timestamp_epoch=time.time(), **overrides)


@pytest.fixture
def fake() -> Iterator[FakeNewRelic]:
    """A started FakeNewRelic account."""
    with FakeNewRelic() as server:
        yield server


def against(fake: FakeNewRelic, **overrides: Any) -> NewRelicConnector:
    """The guide's config pointed at ``fake`` with ``base_url`` and the fake's key."""
    config = guide_config(**{"account_id": fake.account_id, "api_key": fake.api_key,
                             "base_url": fake.base_url, **overrides})
    NewRelicConnector.validate_config(config)
    connector = NewRelicConnector.from_stored("newrelic", config)
    assert isinstance(connector, NewRelicConnector)
    return connector


def decoded(request: Any) -> Any:
    """The JSON a recorded request carried, gunzipped."""
    return json.loads(gzip.decompress(request.body))


# --- settings ----------------------------------------------------------------------------------


def test_validate_config__guide_example__accepted_with_defaults() -> None:
    # Given the guide's config without region and event_types
    config = {k: v for k, v in guide_config().items() if k not in ("region", "event_types")}
    # When it is validated
    checked = NewRelicConnector.validate_config(config)
    # Then the guide's defaults fill in
    assert checked["region"] == "US"
    assert checked["event_types"] == guide_config()["event_types"]


@pytest.mark.parametrize(("field", "value", "match"), [
    ("account_id", "12ab", "numeric New Relic account id"),
    ("account_id", 0, "numeric New Relic account id"),
    ("api_key", "two words", "one token"),
    ("region", "APAC", "must be one of"),
    ("event_types", {"config_change": "Config.Changed"}, "letters, digits"),
    ("event_types", {"config_change": "x" * 256}, "letters, digits"),
    ("event_types", {"deploy": "Deploy"}, "unknown kind"),
    ("custom_attributes", {"owner": {"team": "platform"}}, "string or a number"),
    ("custom_attributes", {"flag": True}, "string or a number"),
    ("custom_attributes", {"eventType": "X"}, "reserved"),
    ("custom_attributes", {"note": "x" * 4097}, "at most 4096"),
    ("custom_attributes", {"n" * 256: "x"}, "1 to 255"),
    ("base_url", "http://collector.example.com", "https"),
])
def test_validate_config__bad_value__config_error_naming_the_field(
        field: str, value: Any, match: str) -> None:
    # Given the guide's config with one bad field / Then ConfigError names that field
    with pytest.raises(ConfigError, match=match) as caught:
        NewRelicConnector.validate_config(guide_config(**{field: value}))
    assert f"integrations.newrelic.{field}" in str(caught.value)


def test_validate_config__no_account_id__required() -> None:
    config = {k: v for k, v in guide_config().items() if k != "account_id"}
    with pytest.raises(ConfigError, match=r"integrations\.newrelic\.account_id is required"):
        NewRelicConnector.validate_config(config)


@pytest.mark.parametrize(("overrides", "url"), [
    ({}, "https://insights-collector.newrelic.com/v1/accounts/1234567/events"),
    ({"region": "EU"}, "https://insights-collector.eu01.nr-data.net/v1/accounts/1234567/events"),
    ({"region": "eu"}, "https://insights-collector.eu01.nr-data.net/v1/accounts/1234567/events"),
    ({"base_url": "http://127.0.0.1:9/", "account_id": 42},
     "http://127.0.0.1:9/v1/accounts/42/events"),
])
def test_events_url__region_or_base_url__the_right_collector(
        overrides: dict[str, Any], url: str) -> None:
    connector = NewRelicConnector(guide_config(**overrides))
    assert connector.events_url() == url


def test_repr__configured__api_key_masked() -> None:
    connector = NewRelicConnector(guide_config(api_key="0123456789abcdefNRAL"))
    assert "0123456789abcdefNRAL" not in repr(connector) and "***" in repr(connector)


# --- the pure builders -------------------------------------------------------------------------


def test_build_event__guide_change__exactly_the_guide_event_first() -> None:
    # Given the guide's change and the guide's config without custom attributes
    config = guide_config(custom_attributes=None)
    # When the event is built
    event = build_event(guide_change(), config)
    # Then it starts with the guide's event, in the guide's order, then a few extras
    assert list(event.items())[:len(GUIDE_EVENT)] == list(GUIDE_EVENT.items())
    assert {k: event[k] for k in ("changeType", "version", "tenant", "urgency", "eventId")} == {
        "changeType": "config.changed", "version": 3, "tenant": "company", "urgency": "medium",
        "eventId": "0" * 32}


def test_build_event__custom_attributes__added_without_overriding_the_event() -> None:
    # Given custom attributes whose "environment" differs from the event's
    config = guide_config(custom_attributes={**GUIDE_CUSTOM_ATTRIBUTES, "environment": "prod"})
    # When a staging change is built
    event = build_event(guide_change(environment="staging"), config)
    # Then the custom attributes are there, but the event's environment wins
    assert event["service"] == "central-configuration" and event["team"] == "platform"
    assert event["environment"] == "staging"


def test_build_event__non_scalar_values__flat_strings_and_numbers_only() -> None:
    # Given values New Relic cannot store as they are
    event = build_event(guide_change(old_value=None, new_value={"hosts": ["a", "b"], "port": 1},
                                     reason=None), guide_config())
    flags = build_event(guide_change(old_value=False, new_value=5433), guide_config())
    # Then nested values are compact JSON text, booleans strings, numbers numbers, None omitted
    assert event["newValue"] == '{"hosts":["a","b"],"port":1}'
    assert "oldValue" not in event and "changeReason" not in event
    assert flags["oldValue"] == "false" and flags["newValue"] == 5433
    assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
               for e in (event, flags) for v in e.values())


def test_build_event__config_deleted__change_event_without_new_value() -> None:
    event = build_event(guide_change(type="config.deleted", new_value=None), guide_config())
    assert event["eventType"] == "ConfigurationChanged"
    assert event["changeType"] == "config.deleted" and "newValue" not in event


def test_build_event__config_error__the_error_event() -> None:
    # Given a config.error event from a schema check
    error = guide_change(type="config.error", key="app.mode", metadata={
        "error": "3 is not of type 'string'", "error_kind": "schema", "schema_pattern": "app.*"})
    # When it is built
    event = build_event(error, guide_config())
    # Then it is a ConfigurationError with the error's text and kind
    assert {k: event[k] for k in ("eventType", "timestamp", "configKey", "error", "errorKind",
                                  "userId", "environment", "schemaPattern")} == {
        "eventType": "ConfigurationError", "timestamp": 1704067200, "configKey": "app.mode",
        "error": "3 is not of type 'string'", "errorKind": "schema",
        "userId": "admin@company.com", "environment": "production", "schemaPattern": "app.*"}


@pytest.mark.parametrize("kind", ["security.violation", "deployment.finished",
                                  "approval.requested"])
def test_build_event__other_event_types__skipped_with_reason(kind: str) -> None:
    with pytest.raises(Skipped, match=kind):
        build_event(guide_change(type=kind), guide_config())


def test_build_event__event_types_overridden__configured_names_used() -> None:
    config = guide_config(event_types={"config_change": "apg:ConfigChange"})
    assert build_event(guide_change(), config)["eventType"] == "apg:ConfigChange"
    errors = build_event(guide_change(type="config.error"), config)
    assert errors["eventType"] == "ConfigurationError"


def test_performance_event__delivery_sample__performance_event_with_custom_attributes() -> None:
    # Given how long one delivery took
    sample = {"operation": "delivery", "duration_ms": 412.34567, "key": "app.database.host",
              "connector": "jira", "event_id": "e" * 32, "timestamp": 1704067200.9}
    # When the performance event is built
    event = performance_event(sample, guide_config())
    # Then it is flat, typed by event_types.performance, and carries the custom attributes
    assert event == {"eventType": "ConfigurationPerformance", "timestamp": 1704067200,
                     "operation": "delivery", "durationMs": 412.346,
                     "configKey": "app.database.host", "connector": "jira",
                     "eventId": "e" * 32, **GUIDE_CUSTOM_ATTRIBUTES}


def test_performance_event__set_config_without_connector__connector_omitted() -> None:
    event = performance_event({"operation": "set_config", "duration_ms": 3, "key": "a.b",
                               "connector": None, "event_id": "x", "timestamp": 1.0},
                              guide_config(custom_attributes=None))
    assert "connector" not in event and event["durationMs"] == 3.0


@pytest.mark.parametrize("sample", [{"operation": "sleep", "duration_ms": 1},
                                    {"operation": "dispatch", "duration_ms": "fast"}])
def test_performance_event__bad_sample__value_error(sample: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        performance_event(sample, guide_config())


# --- limits ------------------------------------------------------------------------------------


def test_build_event__100kb_value__truncated_to_4096_characters() -> None:
    # Given a 100 KB new value
    event = build_event(guide_change(new_value="x" * 100_000), guide_config())
    # Then it is cut to 4096 characters, ending in an ellipsis, and the rest is intact
    assert len(event["newValue"]) == 4096 and event["newValue"].endswith("…")
    assert event["configKey"] == "app.database.host"


def test_limit_event__too_many_attributes__capped_keeping_the_first() -> None:
    event = {"eventType": "T", **{f"a{i:03d}": i for i in range(400)}}
    limited = limit_event(event)
    assert len(limited) == MAX_ATTRIBUTES
    assert list(limited)[:3] == ["eventType", "a000", "a001"]


def test_limit_event__one_event_over_1mb__shrunk_to_fit_one_post() -> None:
    # Given 250 values of 4096 characters of 3-byte UTF-8 (about 3 MB)
    event = {"eventType": "T", "timestamp": 1, **{f"v{i}": "€" * 5000 for i in range(250)}}
    # When it is limited
    limited = limit_event(event)
    # Then every attribute is kept, and alone it fits a POST
    assert len(encode([limited])) <= MAX_PAYLOAD_BYTES
    assert list(limited) == list(event) and limited["eventType"] == "T"
    assert min(len(v) for k, v in limited.items() if k.startswith("v")) > 1000


def test_split_batches__events_over_1mb__several_batches_in_order_none_lost() -> None:
    # Given 600 events of about 5 KB (about 3 MB in all)
    events = [{"eventType": "T", "n": i, "text": "y" * 5000} for i in range(600)]
    # When they are split
    batches = split_batches(events)
    # Then each batch fits 1 MB, as few as fit, and together they are the events in order
    assert all(len(encode(batch)) <= MAX_PAYLOAD_BYTES for batch in batches)
    assert len(batches) == 4
    assert [e["n"] for batch in batches for e in batch] == list(range(600))


def test_split_batches__small_limit__boundary_is_exact() -> None:
    events = [{"eventType": "T", "n": i} for i in range(10)]
    one = len(encode(events[:1]))
    batches = split_batches(events, limit_bytes=len(encode(events[:3])))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert split_batches(events[:1], limit_bytes=one) == [events[:1]]
    assert split_batches([]) == []


def test_within_window__older_than_a_day__timestamp_left_to_new_relic() -> None:
    now = 1_800_000_000.0
    old = within_window({"eventType": "T", "timestamp": int(now) - 30 * 3600}, now)
    fresh = within_window({"eventType": "T", "timestamp": int(now) - 60}, now)
    assert old == {"eventType": "T", "originalTimestamp": int(now) - 30 * 3600}
    assert fresh["timestamp"] == int(now) - 60


def test_rest_of_minute_s__mid_minute__seconds_to_the_next_minute() -> None:
    assert rest_of_minute_s(1_800_000_015.5) == pytest.approx(44.5)
    assert rest_of_minute_s(1_800_000_059.9) == 1.0


# --- against the fake --------------------------------------------------------------------------


def test_send_notification__fake__gzip_json_array_with_api_key(fake: FakeNewRelic) -> None:
    # Given a connector for the fake account
    connector = against(fake)
    # When a recent change is sent
    connector.send_notification(recent())
    # Then one POST: Api-Key, JSON, gzip, a JSON array holding the guide's event
    [request] = fake.requests
    assert request.path == "/v1/accounts/1234567/events"
    assert request.header("Api-Key") == fake.api_key
    assert request.header("Content-Type") == "application/json"
    assert request.header("Content-Encoding") == "gzip" and request.body[:2] == b"\x1f\x8b"
    body = decoded(request)
    assert isinstance(body, list) and len(body) == 1
    assert body[0]["configKey"] == "app.database.host" and body[0]["team"] == "platform"
    assert fake.messages() == body and fake.dropped == []


def test_send_notification__event_older_than_a_day__kept_not_dropped(fake: FakeNewRelic) -> None:
    # Given an event from 2024 (a replay, say)
    against(fake).send_notification(guide_change())
    # Then New Relic keeps it, with the original time in originalTimestamp
    [event] = fake.messages()
    assert "timestamp" not in event and event["originalTimestamp"] == 1704067200
    assert fake.dropped == []


def test_send_notification__100kb_value__accepted_truncated_not_dropped(
        fake: FakeNewRelic) -> None:
    against(fake).send_notification(recent(new_value="z" * 100_000))
    [event] = fake.messages()
    assert len(event["newValue"]) == 4096 and fake.dropped == []


def test_send_events__2_5_mb_of_events__several_posts_no_event_lost(fake: FakeNewRelic) -> None:
    # Given 500 performance-sized events with 5 KB each (about 2.5 MB)
    connector = against(fake)
    events = [{"eventType": "ConfigurationPerformance", "n": i, "text": "p" * 5000,
               "timestamp": int(time.time())} for i in range(500)]
    # When they are sent
    connector.send_events(events)
    # Then three POSTs, each under 1 MB, every event kept once and in order
    assert len(fake.requests) == 3
    assert all(len(gzip.decompress(r.body)) <= MAX_PAYLOAD_BYTES for r in fake.requests)
    assert [e["n"] for e in fake.messages()] == list(range(500)) and fake.dropped == []


def test_send_events__one_oversized_value_among_many__whole_batch_kept(
        fake: FakeNewRelic) -> None:
    events = [performance_event({"operation": "dispatch", "duration_ms": i, "key": f"k{i}",
                                 "connector": None, "event_id": str(i),
                                 "timestamp": time.time()}, guide_config()) for i in range(20)]
    events[7]["configKey"] = "k" * 50_000
    against(fake).send_events(events)
    assert len(fake.messages()) == 20 and fake.dropped == []
    assert len(fake.messages()[7]["configKey"]) == 4096


@pytest.mark.parametrize(("status", "error"), [
    (400, Rejected), (401, AuthError), (403, AuthError), (408, Unavailable), (413, Rejected),
    (415, Rejected), (500, Unavailable), (503, Unavailable)])
def test_send__vendor_answers_status__typed_error_with_vendor_text(
        fake: FakeNewRelic, status: int, error: type[Exception]) -> None:
    connector = against(fake)
    fake.fail_next(status)
    with pytest.raises(error) as caught:
        connector.send_notification(recent())
    assert str(status) in str(caught.value) and "Api-Key" not in str(caught.value)
    assert fake.messages() == []


def test_send__wrong_key__403_auth_error_without_the_key(fake: FakeNewRelic) -> None:
    # Given a key New Relic does not know
    connector = against(fake, api_key="wrong-key-abcdefNRAL")
    # When an event is sent / Then AuthError with New Relic's text and no key in it
    with pytest.raises(AuthError, match="403: Missing or invalid API key") as caught:
        connector.send_notification(recent())
    assert "wrong-key-abcdefNRAL" not in str(caught.value)


def test_send__429_with_retry_after__rate_limited_for_that_long(fake: FakeNewRelic) -> None:
    connector = against(fake)
    fake.fail_next(429, retry_after_s=7)
    with pytest.raises(RateLimited) as caught:
        connector.send_notification(recent())
    assert caught.value.retry_after_s == 7


def test_send__429_without_retry_after__waits_for_the_rest_of_the_minute(
        fake: FakeNewRelic) -> None:
    # Given New Relic's per-minute limit reached, and a 429 with no Retry-After
    connector = against(fake)
    fake.send_retry_after = False
    fake.rate_limit(1, per_s=60)
    connector.send_notification(recent())
    # When the next event is sent
    before = time.time()
    with pytest.raises(RateLimited) as caught:
        connector.send_notification(recent())
    # Then the wait is what is left of the current minute
    wait = caught.value.retry_after_s
    assert wait is not None and 1.0 <= wait <= 60.0
    assert abs(wait - rest_of_minute_s(before)) < 1.5


def test_health_check__valid_key__true_after_one_health_event(fake: FakeNewRelic) -> None:
    assert against(fake).health_check() is True
    [event] = fake.messages()
    assert event["eventType"] == "ConfigurationHealthCheck" and event["team"] == "platform"


def test_health_check__wrong_key__false(fake: FakeNewRelic) -> None:
    assert against(fake, api_key="nope-NRAL").health_check() is False
    assert fake.messages() == []


async def test_eager_delivery__guide_config__fake_gets_the_guide_event(
        service: ConfigService, fake: FakeNewRelic) -> None:
    # Given the guide's config stored through the service (eager mode), pointed at the fake
    await service.set_config("integrations.newrelic", guide_config(
        account_id=fake.account_id, api_key=fake.api_key, base_url=fake.base_url))
    fake.reset()
    # When the guide's change is made
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then the delivery is done and New Relic holds the guide's event
    records = await service.get_deliveries(result.event_id)
    assert [(r["connector"], r["status"]) for r in records] == [("newrelic", "delivered")]
    [event] = fake.messages()
    # (a new key has no old value: oldValue is omitted, NRQL reads it as NULL)
    expected = {**GUIDE_EVENT, "oldValue": None}
    del expected["timestamp"]
    assert {k: event.get(k) for k in expected} == expected
    assert abs(event["timestamp"] - time.time()) < 60 and event["eventId"] == result.event_id


# --- the fake's contract -----------------------------------------------------------------------


def post(fake: FakeNewRelic, body: bytes, **headers: str) -> requests.Response:
    sent = {"Api-Key": fake.api_key, "Content-Type": "application/json",
            "Content-Encoding": "gzip", **headers}
    return requests.post(fake.events_url, data=body, headers=sent, timeout=5)


def test_fake__refuses_what_new_relic_refuses(fake: FakeNewRelic) -> None:
    good = gzip.compress(b'[{"eventType":"T"}]')
    assert post(fake, good, **{"Api-Key": "other"}).status_code == 403
    assert post(fake, good, **{"Content-Type": "text/plain"}).status_code == 415
    assert post(fake, b"not gzip").status_code == 400
    assert post(fake, b"").status_code == 400
    big = gzip.compress(json.dumps([{"eventType": "T", "v": "x" * MAX_PAYLOAD_BYTES}]).encode())
    assert post(fake, big).status_code == 413
    assert requests.get(fake.events_url, timeout=5).status_code == 405
    answer = post(fake, good)
    assert answer.status_code == 200 and answer.json()["success"] is True
    assert fake.messages() == [{"eventType": "T"}]


def test_fake__bad_events__answered_200_then_dropped_with_reason(fake: FakeNewRelic) -> None:
    # Given one good event and one of each kind New Relic drops while parsing
    bad = [{"eventType": "Bad.Type"}, {"eventType": "T", "nested": {"a": 1}},
           {"eventType": "T", "flag": True}, {"eventType": "T", "v": "x" * 4097},
           {"eventType": "T", **{f"a{i}": i for i in range(255)}},
           {"eventType": "T", "timestamp": int(time.time()) - 25 * 3600},
           {"eventType": "T", "timestamp": 1.5}, {"noEventType": 1}]
    body = gzip.compress(json.dumps([{"eventType": "Good"}, *bad]).encode())
    # When they are posted / Then 200, one kept, each bad one dropped with its reason
    assert post(fake, body).status_code == 200
    assert fake.messages() == [{"eventType": "Good"}]
    assert len(fake.dropped) == len(bad)
    assert "eventType" in fake.dropped[0].reason and "dict" in fake.dropped[1].reason
    assert "4096" in fake.dropped[3].reason and "24 hours" in fake.dropped[5].reason
