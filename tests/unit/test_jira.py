"""Jira: pure payload builders, settings, error mapping and no-duplicate look-ups (fast)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from config_core import ConfigError, ConfigService
from connectors import AuthError, RateLimited, Rejected, Skipped, Unavailable
from connectors.context import MemoryContext
from connectors.jira import JiraConnector, build_payload
from connectors.jira.connector import SEARCH_SETTLE_S, STEP, reset_wait_s
from connectors.jira.payload import (
    DESCRIPTION_BUDGET,
    SUMMARY_LIMIT,
    adf_description,
    fingerprint,
    issue_kind,
    plain_description,
    search_body,
    summary,
)
from tests.fakes.jira import FakeJira, basic
from tests.unit.samples import make_event

CONFIG = {"server_url": "https://yourcompany.atlassian.net", "username": "automation@x.com",
          "api_token": "tok-123456789", "default_project": "CONFIG"}
TIMEOUT_S = 5.0


@pytest.fixture
def jira_fake() -> Iterator[FakeJira]:
    """A started FakeJira (project CONFIG with Task, Bug, Story), stopped after the test."""
    with FakeJira() as fake:
        yield fake


def connector(config: dict[str, Any]) -> JiraConnector:
    """A connector built the way a worker builds it (validated, defaults filled)."""
    JiraConnector.validate_config(config)
    built = JiraConnector.from_stored("jira", config)
    assert isinstance(built, JiraConnector)
    return built


def fields_of(event: dict[str, Any], **config: Any) -> dict[str, Any]:
    merged = JiraConnector.validate_config({**CONFIG, **config})
    return build_payload(event, merged)["fields"]


def adf_texts(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    own = [node["text"]] if node.get("type") == "text" else []
    return own + [t for child in node.get("content") or () for t in adf_texts(child)]


def post_issue(fake: FakeJira, fields: dict[str, Any], version: int = 3,
               auth: str | None = None) -> requests.Response:
    headers = {"Authorization": auth or basic(fake.username, fake.api_token)}
    return requests.post(fake.url("issue", version), json={"fields": fields}, headers=headers,
                         timeout=TIMEOUT_S)


# --- which events make which issue -------------------------------------------------------------


@pytest.mark.parametrize(("event_type", "key", "kind"), [
    ("config.changed", "app.database.host", "config_change"),
    ("config.deleted", "app.database.host", "config_change"),
    ("config.changed", "integrations.schemas", "schema_update"),
    ("config.error", "app.database.port", "config_error"),
    ("security.violation", "app.database.password", "config_error"),
    ("deployment.finished", "app.database.host", None),
    ("approval.requested", "app.database.host", "config_change"),
    ("approval.decided", "app.database.host", None),
])
def test_issue_kind__event_type_and_key__guide_kind_or_none(event_type: str, key: str,
                                                            kind: str | None) -> None:
    # Given an event / Then its kind follows the issue's table
    assert issue_kind(make_event(type=event_type, key=key)) == kind


@pytest.mark.parametrize(("event_type", "key", "expected_type"), [
    ("config.changed", "app.x", "Task"), ("config.changed", "integrations.schemas", "Story"),
    ("config.error", "app.x", "Bug"), ("security.violation", "app.x", "Bug")])
def test_build_payload__guide_defaults__issue_type_per_kind(event_type: str, key: str,
                                                            expected_type: str) -> None:
    # Given the guide's config / When an event is built / Then its issue type is the guide's
    fields = fields_of(make_event(type=event_type, key=key))
    assert fields["issuetype"] == {"name": expected_type}
    assert fields["project"] == {"key": "CONFIG"}


def test_build_payload__approval_requested__task_naming_the_request_and_its_approvers() -> None:
    # Given an approval request (jira is one of the guide's approval_methods)
    event = make_event(type="approval.requested", key="app.database.host", metadata={
        "request_id": "3f9a", "approvers": ["dba-team@company.com"], "min_approvals": 1})
    # When its issue is built
    fields = fields_of(event)
    # Then it is a Task saying a change waits for approval, with the request's facts
    assert fields["issuetype"] == {"name": "Task"}
    assert fields["summary"] == "[production] Approval requested: app.database.host"
    text = json.dumps(fields["description"])
    assert "waits for approval" in text and "3f9a" in text and "dba-team@company.com" in text


def test_build_payload__v3_change__adf_description_summary_and_fingerprint_label() -> None:
    # Given the guide's example change and the default api_version 3
    event = make_event(reason="database migration")
    # When the issue body is built
    fields = fields_of(event)
    # Then the description is an Atlassian Document holding the change's facts
    description = fields["description"]
    assert (description["type"], description["version"]) == ("doc", 1)
    texts = adf_texts(description)
    for fact in ("app.database.host", "localhost", "prod-db.internal", "admin@company.com",
                 "database migration", "2025-01-01 14:30:00 UTC", event["event_id"]):
        assert fact in texts
    assert fields["summary"] == "[production] Configuration changed: app.database.host"
    assert fields["labels"] == ["apgcfg", "apgcfg-" + event["event_id"]]
    assert set(fields) == {"project", "issuetype", "summary", "description", "labels"}


def test_build_payload__v2__plain_text_description_with_facts_verbatim() -> None:
    # Given api_version 2 and a value full of wiki markup (a mention, bold, a noformat end)
    event = make_event(new_value="[~admin] *bold* {noformat} done")
    # When the issue body is built
    description = fields_of(event, api_version=2)["description"]
    # Then it is a string whose facts sit in one noformat block the value cannot close
    assert isinstance(description, str)
    assert description.startswith("A configuration value changed.\n\n{noformat}\n")
    assert description.endswith("\n{noformat}") and description.count("{noformat}") == 2
    assert "New value: [~admin] *bold* {\u200bnoformat} done" in description


def test_build_payload__partial_issue_types__other_kinds_keep_defaults() -> None:
    # Given only config_change overridden
    config = {"issue_types": {"config_change": "Change Request"}}
    # Then config_change uses it and config_error keeps Bug
    assert fields_of(make_event(), **config)["issuetype"] == {"name": "Change Request"}
    error = make_event(type="config.error")
    assert fields_of(error, **config)["issuetype"] == {"name": "Bug"}


def test_summary__long_key_with_newlines__one_line_within_255_with_ellipsis() -> None:
    # Given an event whose environment holds a newline and whose key is very long
    event = make_event(environment="prod\nuction", key="app." + "k" * 300)
    # When the summary is built
    text = summary(event)
    # Then it is one line of exactly the limit, ending in an ellipsis
    assert len(text) == SUMMARY_LIMIT and text.endswith("…")
    assert "\n" not in text and text.startswith("[prod uction] Configuration changed: app.kkk")


def test_summary__schema_error__names_kind_and_key() -> None:
    event = make_event(type="config.error", key="app.port",
                       metadata={"error": "5 is not a string", "error_kind": "schema"})
    assert summary(event) == "[production] Configuration error (schema): app.port"
    assert summary(make_event(key="integrations.schemas")) == (
        "[production] Configuration schemas updated: integrations.schemas")


def test_description__huge_values__kept_within_jira_text_limit() -> None:
    # Given values and metadata far larger than Jira's 32,767-character text fields
    event = make_event(old_value="o" * 50_000, new_value="n" * 50_000,
                       metadata={f"m{i}": "x" * 5000 for i in range(40)})
    # When both descriptions are built
    adf_total = sum(len(t) for t in adf_texts(adf_description(event)))
    # Then each stays within the budget
    assert adf_total <= DESCRIPTION_BUDGET
    assert len(plain_description(event)) <= DESCRIPTION_BUDGET + 100


def test_description__config_error__error_text_and_refused_value_shown() -> None:
    event = make_event(type="config.error", new_value=5,
                       metadata={"error": "5 is not of type 'string'", "error_kind": "schema",
                                 "schema_pattern": "app.*"})
    texts = adf_texts(adf_description(event))
    assert "5 is not of type 'string'" in texts and "app.*" in texts and "5" in texts
    assert "Value: " in texts and "Old value: " not in texts


def test_labels__configured_labels_repeat_fingerprint__no_repeats() -> None:
    event = make_event()
    fields = fields_of(event, labels=["config", fingerprint(event), "config"])
    assert fields["labels"] == ["config", fingerprint(event)]


def test_search_body__fingerprint__jql_on_label_with_key_field() -> None:
    body = search_body('odd"label')
    assert body["jql"] == 'labels = "odd\\"label"' and "key" in body["fields"]


# --- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [
    ({"api_version": 4}, "api_version"),
    ({"api_version": "3"}, "api_version"),
    ({"labels": ["needs review"]}, "labels"),
    ({"labels": "apgcfg"}, "labels"),
    ({"issue_types": {"deploy": "Task"}}, "issue_types"),
    ({"issue_types": {"config_change": ""}}, "issue_types"),
    ({"server_url": "http://jira.example.com"}, "server_url"),
    ({"default_project": "config"}, "default_project"),
    ({"api_token": None}, "api_token"),
    ({"colour": "red"}, "colour"),
])
def test_validate_config__bad_setting__config_error_naming_it(change: dict[str, Any],
                                                             field: str) -> None:
    # Given the guide's config with one bad setting / Then ConfigError names that setting
    config = {k: v for k, v in {**CONFIG, **change}.items() if v is not None}
    with pytest.raises(ConfigError, match=field):
        JiraConnector.validate_config(config)


def test_validate_config__guide_config__defaults_filled() -> None:
    # Given the guide's config exactly
    guide = {**CONFIG, "issue_types": {"config_change": "Task", "config_error": "Bug",
                                       "schema_update": "Story"}}
    # Then it is accepted and api_version / labels take their defaults
    stored = JiraConnector.validate_config(guide)
    assert stored["api_version"] == 3 and stored["labels"] == ["apgcfg"]


# --- against the fake: create, errors ----------------------------------------------------------


def test_send__guide_config__one_issue_created_and_ref_returned(jira_fake: FakeJira) -> None:
    # Given a connector against the fake
    jira = connector(jira_fake.config())
    # When an event is sent
    ref = jira.send_notification(make_event())
    # Then the fake holds one issue with the fingerprint label, and the ref names it
    issues = jira_fake.issues(label="apgcfg-" + "0" * 32)
    assert len(issues) == 1 and ref["issue_key"] == issues[0]["key"] == "CONFIG-1"
    assert ref["issue_url"] == f"{jira_fake.base_url}/browse/CONFIG-1"
    posts = [r for r in jira_fake.requests if r.method == "POST"]
    assert [p.path for p in posts] == ["/rest/api/3/issue"]
    assert posts[0].header("Authorization") == basic(jira_fake.username, jira_fake.api_token)


def test_send__api_version_2__v2_endpoint_and_string_description(jira_fake: FakeJira) -> None:
    jira = connector(jira_fake.config(api_version=2))
    jira.send_notification(make_event())
    assert [r.path for r in jira_fake.requests] == ["/rest/api/2/issue"]
    assert isinstance(jira_fake.messages()[0]["description"], str)


@pytest.mark.parametrize(("config", "message"), [
    ({"default_project": "NOPE"}, "project: valid project is required"),
    ({"issue_types": {"config_change": "Epic Story"}},
     "issuetype: The issue type selected is invalid."),
])
def test_send__jira_refuses_fields__rejected_with_jiras_message(
        jira_fake: FakeJira, config: dict[str, Any], message: str) -> None:
    # Given a config Jira will refuse / When sending / Then Rejected carries Jira's own words
    jira = connector(jira_fake.config(**config))
    with pytest.raises(Rejected, match="jira answered 400") as caught:
        jira.send_notification(make_event())
    assert message in str(caught.value) and caught.value.status == 400
    assert jira_fake.issues() == [] and jira.context.created(STEP) is None


def test_send__wrong_token__auth_error_without_token(jira_fake: FakeJira) -> None:
    jira = connector(jira_fake.config(api_token="wrong-token-987654"))
    with pytest.raises(AuthError) as caught:
        jira.send_notification(make_event())
    assert "You are not authenticated" in str(caught.value)
    assert "wrong-token-987654" not in str(caught.value)


def test_send__forbidden__auth_error(jira_fake: FakeJira) -> None:
    jira_fake.fail_next(403)
    with pytest.raises(AuthError, match="permission"):
        connector(jira_fake.config()).send_notification(make_event())


def test_send__429_retry_after__rate_limited_with_that_wait(jira_fake: FakeJira) -> None:
    jira_fake.fail_next(429, retry_after_s=7, webhook_url=jira_fake.url("issue"))
    with pytest.raises(RateLimited) as caught:
        connector(jira_fake.config()).send_notification(make_event())
    assert caught.value.retry_after_s == 7.0 and "Rate limit exceeded" in str(caught.value)


def test_send__429_with_reset_header_only__waits_until_reset(jira_fake: FakeJira) -> None:
    # Given a 429 without Retry-After but with X-RateLimit-Reset two minutes ahead
    reset = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(time.time() + 120))
    jira_fake.fail_next(429, headers={"Retry-After": "", "X-RateLimit-Reset": reset})
    # When sending / Then the wait runs until the reset time
    with pytest.raises(RateLimited) as caught:
        connector(jira_fake.config()).send_notification(make_event())
    assert caught.value.retry_after_s is not None and 59 <= caught.value.retry_after_s <= 120


def test_reset_wait_s__formats__seconds_or_none() -> None:
    assert reset_wait_s("2025-01-01T12:01Z", now_s=1735732800.0) == 60.0
    assert reset_wait_s("2025-01-01T12:00:30.000Z", now_s=1735732800.0) == 30.0
    assert reset_wait_s("2020-01-01T00:00Z") == 0.0
    assert reset_wait_s("soon") is None and reset_wait_s(None) is None


def test_send__503_with_retry_after__unavailable_and_nothing_recorded(
        jira_fake: FakeJira) -> None:
    jira_fake.fail_next(503, retry_after_s=4)
    jira = connector(jira_fake.config())
    with pytest.raises(Unavailable) as caught:
        jira.send_notification(make_event())
    assert caught.value.retry_after_s == 4.0 and jira.context.created(STEP) is None


@pytest.mark.parametrize("status", [500, 502, 504])
def test_send__5xx_other_than_503__outcome_unknown_so_retry_searches_first(
        jira_fake: FakeJira, status: int) -> None:
    # Given Jira (or its gateway) answers the create with a 5xx that may follow a create
    jira = connector(jira_fake.config())
    jira_fake.fail_next(status, webhook_url=jira_fake.url("issue"))
    with pytest.raises(Unavailable):
        jira.send_notification(make_event())
    # When the delivery is retried at once
    with pytest.raises(Unavailable, match="search can lag"):
        jira.send_notification(make_event())
    # Then it searched instead of creating, and waits for the search to settle
    assert [r.path for r in jira_fake.requests] == ["/rest/api/3/issue",
                                                    "/rest/api/3/search/jql"]
    assert (jira.context.created(STEP) or {})["state"] == "creating"
    assert jira_fake.issues() == []


def test_send__deployment_finished__skipped_with_reason_and_no_request(
        jira_fake: FakeJira) -> None:
    with pytest.raises(Skipped, match=r"not 'deployment\.finished'"):
        connector(jira_fake.config()).send_notification(make_event(type="deployment.finished"))
    assert jira_fake.requests == []


# --- no duplicates -----------------------------------------------------------------------------


def test_send__answer_lost_after_create__search_finds_issue_no_second_post(
        jira_fake: FakeJira) -> None:
    # Given an attempt that created the issue but whose answer was lost (record "creating")
    jira = connector(jira_fake.config())
    event = make_event()
    jira.send_notification(event)
    jira.context.mark(STEP, "creating", {"sent_at": time.time() - 1})
    # When the delivery is retried
    ref = jira.send_notification(event)
    # Then the issue is found by its label, no second create is sent, one issue exists
    assert ref["issue_key"] == "CONFIG-1" and ref["found_by"] == "search"
    assert [r.path for r in jira_fake.requests if r.method == "POST"] == [
        "/rest/api/3/issue", "/rest/api/3/search/jql"]
    search = jira_fake.requests[-1].json
    assert search["jql"] == f'labels = "apgcfg-{event["event_id"]}"'
    assert len(jira_fake.issues()) == 1
    assert (jira.context.created(STEP) or {})["state"] == "created"


def test_send__search_lags_behind_create__waits_instead_of_duplicating() -> None:
    # Given Jira Cloud's eventually consistent search (issues visible after 60 s)
    with FakeJira(index_lag_s=60) as fake:
        jira = connector(fake.config())
        event = make_event()
        jira.send_notification(event)
        jira.context.mark(STEP, "creating", {"sent_at": time.time()})
        # When the retry's search finds nothing yet
        with pytest.raises(Unavailable) as caught:
            jira.send_notification(event)
        # Then it waits for search to settle instead of creating a second issue
        assert SEARCH_SETTLE_S - 5 <= (caught.value.retry_after_s or 0) <= SEARCH_SETTLE_S
        assert len(fake.issues()) == 1
        assert (jira.context.created(STEP) or {})["state"] == "creating"


def test_send__request_never_reached_jira__creates_once_search_settled(
        jira_fake: FakeJira) -> None:
    # Given an unknown outcome long ago, and no issue in Jira (the request was lost)
    jira = connector(jira_fake.config())
    jira.context = MemoryContext(records={STEP: {"state": "creating",
                                                 "ref": {"sent_at": time.time() - 120}}})
    # When the delivery is retried
    ref = jira.send_notification(make_event())
    # Then it searched, found nothing, and created the issue
    assert [r.path for r in jira_fake.requests] == ["/rest/api/3/search/jql",
                                                    "/rest/api/3/issue"]
    assert ref["issue_key"] == "CONFIG-1" and len(jira_fake.issues()) == 1


def test_send__created_before__no_request_at_all(jira_fake: FakeJira) -> None:
    jira = connector(jira_fake.config())
    jira.send_notification(make_event())
    assert jira.send_notification(make_event())["issue_key"] == "CONFIG-1"
    assert len(jira_fake.requests) == 1


def test_find__data_center_without_enhanced_search__falls_back_to_legacy_search() -> None:
    # Given a self-hosted Jira (v2, no /search/jql) holding the event's issue
    with FakeJira(legacy_search=True) as fake:
        jira = connector(fake.config(api_version=2))
        event = make_event()
        jira.send_notification(event)
        jira.context.mark(STEP, "creating", {"sent_at": time.time()})
        # When the retry looks the issue up
        ref = jira.send_notification(event)
        # Then the legacy search found it
        assert ref["issue_key"] == "CONFIG-1"
        assert [r.path for r in fake.requests][-2:] == ["/rest/api/2/search/jql",
                                                        "/rest/api/2/search"]
        assert len(fake.issues()) == 1


# --- health ------------------------------------------------------------------------------------


def test_health_check__credentials__true_only_when_myself_answers(jira_fake: FakeJira) -> None:
    assert connector(jira_fake.config()).health_check() is True
    assert jira_fake.requests[-1].path == "/rest/api/3/myself"
    assert connector(jira_fake.config(api_token="bad-token-000")).health_check() is False
    url = jira_fake.base_url
    jira_fake.stop()
    assert connector({**CONFIG, "server_url": url, "api_token": "x"}).health_check() is False


# --- the fake refuses what Jira refuses --------------------------------------------------------

GOOD_FIELDS = {"project": {"key": "CONFIG"}, "issuetype": {"name": "Task"}, "summary": "s",
               "labels": ["apgcfg"],
               "description": {"type": "doc", "version": 1, "content": []}}


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"summary": "s" * 256}, "summary", "less than 255"),
    ({"summary": "a\nb"}, "summary", "newline"),
    ({"summary": None}, "summary", "You must specify a summary"),
    ({"labels": ["two words"]}, "labels", "contains spaces"),
    ({"description": "plain text"}, "description", "Atlassian Document"),
    ({"description": {"type": "doc", "version": 1, "content": [{"type": "text", "text": ""}]}},
     "description", "non-empty"),
    ({"project": {"key": "OPS"}}, "project", "valid project is required"),
    ({"issuetype": {"name": "Incident"}}, "issuetype", "issue type selected is invalid"),
    ({"customfield_10010": "x"}, "customfield_10010", "not on the appropriate screen"),
])
def test_fake_create__field_breaks_contract__400_naming_field(
        jira_fake: FakeJira, change: dict[str, Any], field: str, message: str) -> None:
    fields = {k: v for k, v in {**GOOD_FIELDS, **change}.items() if v is not None}
    response = post_issue(jira_fake, fields)
    assert response.status_code == 400 and message in response.json()["errors"][field]
    assert jira_fake.issues() == []


def test_fake_create__v2_with_adf__400_and_v2_string_accepted(jira_fake: FakeJira) -> None:
    assert post_issue(jira_fake, GOOD_FIELDS, version=2).status_code == 400
    response = post_issue(jira_fake, {**GOOD_FIELDS, "description": "text"}, version=2)
    assert response.status_code == 201 and response.json()["key"] == "CONFIG-1"


def test_fake_auth__missing_or_wrong__401(jira_fake: FakeJira) -> None:
    response = requests.post(jira_fake.url("issue"), json={"fields": GOOD_FIELDS},
                             timeout=TIMEOUT_S)
    assert response.status_code == 401 and response.json()["errorMessages"]
    wrong = basic(jira_fake.username, "nope")
    assert post_issue(jira_fake, GOOD_FIELDS, auth=wrong).status_code == 401


def test_fake_rate_limit__over_limit__429_with_jira_headers(jira_fake: FakeJira) -> None:
    jira_fake.rate_limit(1, per_s=30)
    assert post_issue(jira_fake, GOOD_FIELDS).status_code == 201
    response = post_issue(jira_fake, GOOD_FIELDS)
    assert response.status_code == 429
    for header in ("Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining",
                   "X-RateLimit-Reset", "RateLimit-Reason"):
        assert response.headers[header]
    assert int(response.headers["Retry-After"]) >= 29


def test_fake_search__jql_fields_and_legacy__as_cloud_answers(jira_fake: FakeJira) -> None:
    auth = {"Authorization": basic(jira_fake.username, jira_fake.api_token)}
    post_issue(jira_fake, GOOD_FIELDS)

    def search(body: dict[str, Any], endpoint: str = "search/jql") -> requests.Response:
        return requests.post(jira_fake.url(endpoint), json=body, headers=auth, timeout=TIMEOUT_S)

    assert search({"jql": 'labels = "apgcfg"'}).json()["issues"] == [{"id": "10000"}]
    found = search({"jql": "labels = apgcfg", "fields": ["key"]}).json()
    assert found["isLast"] is True and found["issues"][0]["key"] == "CONFIG-1"
    assert search({"jql": 'labels = "other"', "fields": ["key"]}).json()["issues"] == []
    assert search({"jql": "summary ~ s"}).status_code == 400
    assert search({"jql": ""}).status_code == 400
    assert search({"jql": "labels = apgcfg"}, endpoint="search").status_code == 410


# --- eager mode: the whole path through the service --------------------------------------------


async def test_security_violation__eager__bug_created_and_other_events_skipped(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira configured as the guide shows
    await service.set_config("integrations.jira", jira_fake.config(
        issue_types={"config_change": "Task", "config_error": "Bug", "schema_update": "Story"}))
    # (that change is itself a Task, whose description shows the token masked)
    [config_issue] = jira_fake.messages()
    assert config_issue["summary"] == "[production] Configuration changed: integrations.jira"
    assert "***" in json.dumps(config_issue)
    assert all(jira_fake.api_token not in r.body.decode() for r in jira_fake.requests)
    jira_fake.reset()
    # When access control reports a violation, and a deployment finishes
    violation = await service.emit_event("security.violation", "app.database.password",
                                         changed_by="mallory@company.com",
                                         metadata={"rule": "dba-only"})
    other = await service.emit_event("deployment.finished", "app.database.host")
    # Then the violation is a Bug, and the other event is skipped with the reason
    [record] = await service.get_deliveries(violation)
    assert record["status"] == "delivered" and record["detail"]["issue_key"] == "CONFIG-1"
    [issue] = jira_fake.messages()
    assert issue["issuetype"] == {"name": "Bug"} and "apgcfg-" + violation in issue["labels"]
    assert "dba-only" in json.dumps(issue["description"])
    [skipped] = await service.get_deliveries(other)
    assert skipped["status"] == "skipped" and "deployment.finished" in json.dumps(skipped)
    assert len(jira_fake.issues()) == 1
