"""Splunk HEC: the guide's envelope, 900 KB requests, HEC's codes, and batches in eager mode."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from typing import Any

import pytest

from config_core import ConfigError, ConfigService
from connectors import AuthError, RateLimited, Rejected, Unavailable, http
from connectors.errors import ConnectorError, PartialFailure
from connectors.splunk import (
    MAX_REQUEST_BYTES,
    TRUNCATED,
    RetryableAfter,
    SplunkConnector,
    action,
    build_envelope,
    encode,
    event_epoch,
    fit_envelope,
    split_requests,
)
from tests.fakes.splunk import FakeSplunk, split_envelopes
from tests.unit.samples import make_event
from workers import batches

GUIDE_CONFIG = {"index": "apg_config", "sourcetype": "apg:configuration",
                "source": "central-configuration"}


@pytest.fixture
def splunk_fake() -> Iterator[FakeSplunk]:
    with FakeSplunk() as fake:
        yield fake


def connector(fake: FakeSplunk, **overrides: Any) -> SplunkConnector:
    config = SplunkConnector.validate_config(fake.config(**overrides))
    built = SplunkConnector.from_stored("splunk", config)
    assert isinstance(built, SplunkConnector)
    return built


def envelopes(count: int, size: int = 0, prefix: str = "app.k") -> list[dict[str, Any]]:
    return [build_envelope(make_event(key=f"{prefix}{i}", new_value="x" * size), GUIDE_CONFIG)
            for i in range(count)]


# payload ------------------------------------------------------------------------------------


def test_build_envelope__guide_change__exactly_the_guide_event() -> None:
    # Given the guide's example change / When it becomes an envelope
    event = make_event(reason="database migration")
    # Then it is the guide's log format plus the configured index, sourcetype and source
    assert build_envelope(event, GUIDE_CONFIG) == {
        "time": 1735741800.123,
        "event": {
            "action": "config_changed", "config_key": "app.database.host",
            "old_value": "localhost", "new_value": "prod-db.internal",
            "user_id": "admin@company.com", "tenant_id": "company",
            "metadata": {"environment": "production", "change_reason": "database migration"},
        },
        "index": "apg_config", "sourcetype": "apg:configuration",
        "source": "central-configuration",
    }


def test_build_envelope__no_optional_settings__only_time_and_event() -> None:
    assert sorted(build_envelope(make_event(), {"index": None})) == ["event", "time"]


@pytest.mark.parametrize(("event_type", "expected"), [
    ("config.changed", "config_changed"), ("config.deleted", "config_deleted"),
    ("config.error", "config_error"), ("security.violation", "security_violation"),
    (None, "unknown")])
def test_action__event_type__snake_case(event_type: str | None, expected: str) -> None:
    assert action(event_type) == expected


def test_build_envelope__config_error__error_text_kept_in_metadata() -> None:
    event = make_event(type="config.error", metadata={"error": "port must be int",
                                                      "error_kind": "validation"})
    built = build_envelope(event, {})["event"]
    assert built["action"] == "config_error"
    assert built["metadata"] == {"environment": "production", "change_reason": None,
                                 "error": "port must be int", "error_kind": "validation"}


def test_build_envelope__structured_and_masked_values__kept_as_json() -> None:
    event = make_event(key="integrations.splunk", old_value=None,
                       new_value={"hec_token": "***", "batch_size": 100})
    built = build_envelope(event, {})["event"]
    assert built["old_value"] is None
    assert built["new_value"] == {"hec_token": "***", "batch_size": 100}


def test_event_epoch__no_epoch_field__parsed_from_iso_timestamp() -> None:
    assert event_epoch(make_event(timestamp_epoch=None)) == 1735741800.123
    assert event_epoch(make_event(timestamp_epoch=None, timestamp="garbage")) is None


def test_fit_envelope__value_over_limit__longest_value_truncated_rest_kept() -> None:
    # Given an envelope whose new value alone is 3 MB (multi-byte characters)
    envelope = build_envelope(make_event(new_value="é" * 1_500_000), {})
    # Then it fits 900 KB, the value is marked truncated, other fields are intact
    assert len(encode(envelope)) <= MAX_REQUEST_BYTES
    assert envelope["event"]["new_value"].endswith(TRUNCATED)
    assert len(envelope["event"]["new_value"]) > 400_000
    assert envelope["event"]["config_key"] == "app.database.host"
    assert envelope["event"]["old_value"] == "localhost"


def test_fit_envelope__huge_dict_value__replaced_by_its_truncated_json_text() -> None:
    envelope = build_envelope(make_event(new_value={f"k{i}": i for i in range(100_000)}), {})
    assert len(encode(envelope)) <= MAX_REQUEST_BYTES
    assert envelope["event"]["new_value"].startswith('{"k0": 0, "k1": 1')
    small = {"event": {"a": 1}}
    assert fit_envelope(small, MAX_REQUEST_BYTES) is small


def test_split_requests__lines__in_order_within_limit() -> None:
    lines = [b"a" * 4, b"b" * 4, b"c" * 4, b"d" * 10]
    assert split_requests(lines, 9) == [(0, [b"aaaa", b"bbbb"]), (2, [b"cccc"]),
                                        (3, [b"d" * 10])]
    assert split_requests([], 9) == []


# sending ------------------------------------------------------------------------------------


def test_send_notification__guide_config__one_concatenated_body_with_splunk_token(
        splunk_fake: FakeSplunk) -> None:
    # When one event is sent
    result = connector(splunk_fake).send_notification(make_event())
    # Then one POST to /services/collector/event with the Splunk scheme, indexed once
    post = splunk_fake.event_posts()[-1]
    assert post.path == "/services/collector/event"
    assert post.header("Authorization") == f"Splunk {splunk_fake.token}"
    assert post.header("Content-Type") == "application/json"
    assert split_envelopes(post.body) == splunk_fake.messages()
    assert splunk_fake.indexed_keys() == ["app.database.host"]
    assert result == {"requests": 1, "events": 1}


def test_send_batch__5000_events_of_1kb__split_under_900kb_each_event_once_in_order(
        splunk_fake: FakeSplunk) -> None:
    # Given 5,000 envelopes of about 1 KB
    items = envelopes(5000, size=1000)
    # When they are sent as one batch
    result = connector(splunk_fake).send_batch(items)
    # Then at least 6 requests, none over 900 KB, newline-separated objects, all in order once
    posts = splunk_fake.event_posts()
    assert len(posts) >= 6 and result["requests"] == len(posts)
    assert all(len(p.body) <= MAX_REQUEST_BYTES for p in posts)
    assert all(p.body.startswith(b"{") and b"}\n{" in p.body for p in posts)
    assert splunk_fake.indexed_keys() == [f"app.k{i}" for i in range(5000)]


def test_send_batch__one_event_over_900kb__truncated_and_indexed_not_dropped(
        splunk_fake: FakeSplunk) -> None:
    # Given a small event, a 2 MB one, and another small one (the big one built elsewhere)
    big = {"time": 1.0, "event": {"config_key": "app.big", "new_value": "v" * 2_000_000}}
    items = [envelopes(1)[0], big, envelopes(1, prefix="app.after")[0]]
    # When sent
    connector(splunk_fake).send_batch(items)
    # Then all three are indexed, the big one cut short, no request over 900 KB
    assert splunk_fake.indexed_keys() == ["app.k0", "app.big", "app.after0"]
    assert splunk_fake.messages()[1]["event"]["new_value"].endswith(TRUNCATED)
    assert all(len(p.body) <= MAX_REQUEST_BYTES for p in splunk_fake.event_posts())


@pytest.mark.parametrize("hec_url", [
    "{base}", "{base}/services/collector", "{base}/services/collector/",
    "{base}/services/collector/event"])
def test_send__hec_url_forms__posted_to_the_event_endpoint(splunk_fake: FakeSplunk,
                                                           hec_url: str) -> None:
    built = connector(splunk_fake, hec_url=hec_url.format(base=splunk_fake.base_url))
    built.send_notification(make_event())
    assert [p.path for p in splunk_fake.event_posts()] == ["/services/collector/event"]


def test_send__ssl_verify_false__passed_to_the_shared_client(
        splunk_fake: FakeSplunk, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    real_send = http.send

    def spy(method: str, url: str, **kwargs: Any) -> Any:
        seen.append(kwargs.get("verify"))
        return real_send(method, url, **kwargs)

    monkeypatch.setattr(http, "send", spy)
    connector(splunk_fake, ssl_verify=False).send_notification(make_event())
    connector(splunk_fake).send_notification(make_event())
    assert seen == [False, True]


# HEC codes ----------------------------------------------------------------------------------

CODE_CASES = [
    (1, 403, AuthError), (2, 401, AuthError), (3, 401, AuthError), (4, 403, AuthError),
    (5, 400, Rejected), (6, 400, Rejected), (7, 400, Rejected), (8, 500, Unavailable),
    (9, 503, RateLimited), (10, 400, Rejected), (11, 400, Rejected), (12, 400, Rejected),
    (13, 400, Rejected), (14, 400, Rejected), (15, 400, Rejected), (16, 400, Rejected),
    (18, 503, Unavailable), (19, 503, Unavailable), (20, 503, Unavailable),
    (21, 400, AuthError), (22, 400, AuthError),
]


@pytest.mark.parametrize(("code", "status", "expected"), CODE_CASES)
def test_send__hec_code__typed_error_with_hec_text(splunk_fake: FakeSplunk, code: int,
                                                   status: int, expected: type) -> None:
    # Given HEC answers with ``code`` for the whole request (no invalid-event-number)
    built = connector(splunk_fake)
    splunk_fake.fail_next(status, body={"text": f"hec says {code}", "code": code})
    # When an event is sent / Then the code decides the error; HEC's text, never the token
    with pytest.raises(ConnectorError) as caught:
        built.send_notification(make_event())
    assert type(caught.value) is expected
    assert f"hec says {code}" in str(caught.value) and f"code {code}" in str(caught.value)
    assert splunk_fake.token not in str(caught.value)


@pytest.mark.parametrize(("status", "expected"), [(429, RateLimited), (502, Unavailable),
                                                  (404, Rejected), (401, AuthError)])
def test_send__http_status_without_hec_code__mapped_by_status(
        splunk_fake: FakeSplunk, status: int, expected: type) -> None:
    built = connector(splunk_fake)
    splunk_fake.fail_next(status, body="<html>proxy error</html>",
                          headers={"Retry-After": "4", "Content-Type": "text/html"})
    with pytest.raises(ConnectorError) as caught:
        built.send_notification(make_event())
    assert type(caught.value) is expected and f"HTTP {status}" in str(caught.value)
    if isinstance(caught.value, RateLimited):
        assert caught.value.retry_after_s == 4


def test_send_batch__bad_event_in_third_request__partial_failure_index_counts_all_requests(
        splunk_fake: FakeSplunk) -> None:
    # Given 2,000 envelopes of ~1 KB (three requests) and HEC refusing event 1,900
    items = envelopes(2000, size=1000)
    splunk_fake.refuse_events(lambda e: e["event"]["config_key"] == "app.k1900")
    # When sent
    with pytest.raises(PartialFailure) as caught:
        connector(splunk_fake).send_batch(items)
    # Then the failed index is 1,900 of the whole batch; every event before it is indexed
    assert len(splunk_fake.event_posts()) == 3
    assert caught.value.failed_index == 1900
    assert isinstance(caught.value.error, Rejected)
    assert "Invalid data format" in str(caught.value.error)
    assert splunk_fake.indexed_keys() == [f"app.k{i}" for i in range(1900)]


def test_send_batch__first_event_missing_event_field__partial_failure_at_zero(
        splunk_fake: FakeSplunk) -> None:
    items = [{"time": 1.0, "fields": {"a": "b"}}, *envelopes(2)]
    with pytest.raises(PartialFailure) as caught:
        connector(splunk_fake).send_batch(items)
    assert caught.value.failed_index == 0 and "code 12" in str(caught.value.error)
    assert splunk_fake.messages() == []


def test_send_batch__busy_on_second_request__retryable_after_first_requests_events(
        splunk_fake: FakeSplunk) -> None:
    # Given 2,000 envelopes (three requests) and HEC busy on the second request
    items = envelopes(2000, size=1000)
    splunk_fake.fail_later(1, 503)
    # When sent
    with pytest.raises(RetryableAfter) as caught:
        connector(splunk_fake).send_batch(items)
    # Then the error says how many were indexed (the first request's), and it is retryable
    indexed = len(splunk_fake.messages())
    assert 0 < indexed < 2000 and caught.value.accepted == indexed
    assert isinstance(caught.value.error, RateLimited)
    assert len(splunk_fake.event_posts()) == 2


def test_send_batch__token_revoked_before_second_request__rest_refused_from_there(
        splunk_fake: FakeSplunk) -> None:
    items = envelopes(2000, size=1000)
    splunk_fake.fail_later(1, 403)
    with pytest.raises(PartialFailure) as caught:
        connector(splunk_fake).send_batch(items)
    assert caught.value.failed_index == len(splunk_fake.messages()) > 0
    assert isinstance(caught.value.error, AuthError)


def test_send_batch__server_limit_below_900kb__413_halves_requests_all_indexed() -> None:
    # Given a HEC that accepts at most 300 KB per request
    with FakeSplunk(max_content_length=300_000) as fake:
        # When 1,000 envelopes of ~1 KB are sent
        connector(fake).send_batch(envelopes(1000, size=1000))
        # Then 413s are answered by halving; every event is indexed once, in order
        assert 413 in [a[1] for a in fake._answers]
        assert fake.indexed_keys() == [f"app.k{i}" for i in range(1000)]


def test_send_batch__one_event_over_server_limit__partial_failure_names_it() -> None:
    with FakeSplunk(max_content_length=3000) as fake:
        items = [*envelopes(1), *envelopes(1, size=5000, prefix="app.big"),
                 *envelopes(1, prefix="app.after")]
        with pytest.raises(PartialFailure) as caught:
            connector(fake).send_batch(items)
        assert caught.value.failed_index == 1 and "413" in str(caught.value.error)
        assert fake.indexed_keys() == ["app.k0"]


# settings -----------------------------------------------------------------------------------

GUIDE = {"hec_url": "https://splunk.company.com:8088/services/collector",
         "hec_token": "your-hec-token", "index": "apg_config",
         "sourcetype": "apg:configuration", "source": "central-configuration",
         "ssl_verify": True, "batch_size": 100, "flush_interval": 30}


def test_validate_config__guide_example__accepted_with_defaults() -> None:
    assert SplunkConnector.validate_config(GUIDE) == GUIDE
    minimal = SplunkConnector.validate_config({"hec_url": GUIDE["hec_url"], "hec_token": "t"})
    assert (minimal["ssl_verify"], minimal["batch_size"], minimal["flush_interval"]) == (
        True, 100, 30)


@pytest.mark.parametrize(("change", "field"), [
    ({"hec_url": None}, "hec_url"), ({"hec_token": None}, "hec_token"),
    ({"hec_url": "http://splunk.company.com:8088/services/collector"}, "hec_url"),
    ({"hec_url": "https://splunk.company.com:8088/services/collector/raw"}, "hec_url"),
    ({"hec_url": "https://splunk.company.com:8088/services/collector?token=abc"}, "hec_url"),
    ({"hec_token": "  "}, "hec_token"), ({"index": "Main"}, "index"),
    ({"index": "_internal"}, "index"), ({"ssl_verify": "yes"}, "ssl_verify"),
    ({"batch_size": 0}, "batch_size"), ({"batch_size": 10_001}, "batch_size"),
    ({"batch_size": "100"}, "batch_size"), ({"flush_interval": 0}, "flush_interval"),
    ({"flush_interval": True}, "flush_interval")])
def test_validate_config__bad_setting__error_names_the_field(change: dict[str, Any],
                                                            field: str) -> None:
    config = {k: v for k, v in {**GUIDE, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=rf"integrations\.splunk\.{field}\b"):
        SplunkConnector.validate_config(config)


def test_batch_policy__any_event__batch_size_and_flush_interval_from_settings(
        splunk_fake: FakeSplunk) -> None:
    built = connector(splunk_fake, batch_size=7, flush_interval=2.5)
    assert SplunkConnector.batched is True
    assert built.batch_policy(make_event(), {}) == (7, 2.5)
    assert built.prepare(make_event()) == build_envelope(make_event(), built.config)
    assert splunk_fake.token not in repr(built)


# health -------------------------------------------------------------------------------------


def test_health_check__healthy_hec__true_wrong_token_or_unhealthy_false(
        splunk_fake: FakeSplunk) -> None:
    assert connector(splunk_fake).health_check() is True
    assert splunk_fake.requests[-1].path == "/services/collector/health"
    assert connector(splunk_fake, hec_token="wrong").health_check() is False
    splunk_fake.unhealthy = True
    assert connector(splunk_fake).health_check() is False


def test_health_check__hec_unreachable__false(splunk_fake: FakeSplunk) -> None:
    built = connector(splunk_fake)
    splunk_fake.stop()
    assert built.health_check() is False


# the fake enforces HEC's contract -----------------------------------------------------------


def post(fake: FakeSplunk, body: bytes, auth: str | None = None, **headers: str) -> Any:
    sent = {"Authorization": auth or f"Splunk {fake.token}", **headers}
    return http.session().post(fake.hec_url + "/event", data=body, headers=sent, timeout=5)


@pytest.mark.parametrize(("body", "code", "number"), [
    (b'[{"event": "a"}]', 6, 0), (b'{"event": "a"}{"time": 1}', 12, 1),
    (b'{"event": "  "}', 13, 0), (b'{"event": "a", "index": "secret"}', 7, 0),
    (b'{"event": "a", "fields": {"x": {"y": 1}}}', 15, 0), (b'{"event": "a"} {oops', 6, 1),
    (b'{"event": "a", "time": "noon"}', 6, 0)])
def test_fake__invalid_envelope__hec_code_with_invalid_event_number(
        splunk_fake: FakeSplunk, body: bytes, code: int, number: int) -> None:
    answer = post(splunk_fake, body)
    assert answer.json() == {"text": answer.json()["text"], "code": code,
                             "invalid-event-number": number}
    assert len(splunk_fake.messages()) == number


@pytest.mark.parametrize(("auth", "status", "code"), [
    ("Bearer {token}", 401, 3), ("Splunk wrong", 403, 4), ("Splunk ", 401, 3)])
def test_fake__bad_authorization__refused(splunk_fake: FakeSplunk, auth: str, status: int,
                                          code: int) -> None:
    answer = post(splunk_fake, b'{"event": "a"}', auth.format(token=splunk_fake.token))
    assert (answer.status_code, answer.json()["code"]) == (status, code)
    no_header = http.session().post(splunk_fake.hec_url, data=b'{"event": "a"}', timeout=5)
    assert (no_header.status_code, no_header.json()["code"]) == (401, 2)
    assert splunk_fake.messages() == []


def test_fake__over_max_content_length_or_deflate__refused_gzip_read(
        splunk_fake: FakeSplunk) -> None:
    big = json.dumps({"event": "x" * 1_000_001}).encode()
    assert post(splunk_fake, big).status_code == 413
    assert post(splunk_fake, b'{"event": "a"}', **{"Content-Encoding": "deflate"}
                ).status_code == 415
    assert post(splunk_fake, gzip.compress(b'{"event": "z"}'), **{"Content-Encoding": "gzip"}
                ).json() == {"text": "Success", "code": 0}
    assert splunk_fake.messages() == [{"event": "z"}]


# eager mode: the real buffer, claim and chord code ------------------------------------------


async def configure(service: ConfigService, fake: FakeSplunk, **overrides: Any) -> None:
    """Route app.* changes (only) to Splunk, configured against ``fake``."""
    await service.set_config("integrations.notifications", {"triggers": {
        "logs": {"patterns": ["app.*"], "connectors": ["splunk"], "urgency": "low"}}})
    await service.set_config("integrations.splunk", fake.config(**overrides))


async def test_eager__batch_size_5_and_12_changes__two_requests_then_forced_flush_the_rest(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given Splunk configured with batch_size 5, receiving app.* changes
    await configure(service, splunk_fake, batch_size=5)
    # When 12 keys change
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(12)]
    # Then two requests of five went out; the last two wait in the buffer
    assert [len(split_envelopes(p.body)) for p in splunk_fake.event_posts()] == [5, 5]
    statuses = [(await service.get_deliveries(e))[0]["status"] for e in ids]
    assert statuses == ["delivered"] * 10 + ["batched"] * 2
    # When the buffer is flushed / Then a third request carries the last two
    assert batches.flush(service.namespace.name, "splunk", force=True) == "flushed"
    assert [len(split_envelopes(p.body)) for p in splunk_fake.event_posts()] == [5, 5, 2]
    assert splunk_fake.indexed_keys() == [f"app.k{i}" for i in range(12)]
    assert splunk_fake.messages()[0]["event"]["new_value"] == 0
    records = [(await service.get_deliveries(e))[0] for e in ids]
    assert {(r["status"], r["attempts"]) for r in records} == {("delivered", 1)}


async def test_eager__code_6_for_one_event__it_is_dead_later_ones_resent_once(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    await configure(service, splunk_fake, batch_size=4)
    splunk_fake.refuse_events(lambda e: e["event"]["config_key"] == "app.k1")
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(4)]
    records = [(await service.get_deliveries(e))[0] for e in ids]
    assert [r["status"] for r in records] == ["delivered", "dead", "delivered", "delivered"]
    assert "Invalid data format" in records[1]["last_error"]
    assert splunk_fake.indexed_keys() == ["app.k0", "app.k2", "app.k3"]


async def test_eager__busy_on_second_request__first_requests_events_not_sent_twice(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given a batch that needs two requests, and HEC busy on the second one
    await configure(service, splunk_fake, batch_size=20)
    splunk_fake.fail_later(1, 503)
    # When twenty changes of 60 KB each fill the batch (1.2 MB: two requests)
    for i in range(20):
        await service.set_config(f"app.k{i}", "v" * 60_000)
    # Then after the retry every event is indexed exactly once
    assert sorted(splunk_fake.indexed_keys()) == sorted(f"app.k{i}" for i in range(20))
    assert len(splunk_fake.event_posts()) == 3
