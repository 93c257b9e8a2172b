"""Zendesk: settings, the pure ticket builder, error mapping, dedupe and the fake's contract."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from config_core import ConfigService
from config_core.errors import ConfigError
from connectors import http
from connectors.context import MemoryContext
from connectors.errors import (
    AuthError,
    Misconfigured,
    RateLimited,
    Rejected,
    Skipped,
    TransportError,
)
from connectors.zendesk import ZendeskConnector, build_ticket, error_text, ticket_kind
from connectors.zendesk.connector import raise_for
from connectors.zendesk.payload import SUBJECT_LIMIT, custom_field_values
from tests.fakes.zendesk import FakeZendesk
from tests.unit.samples import make_event

ASSIGNEE = "platform-team@yourcompany.com"
GUIDE_TEMPLATES = {
    "config_change": {"subject": "Configuration Change: {config_key}", "priority": "normal",
                      "type": "incident", "tags": ["configuration", "automated"]},
    "config_error": {"subject": "Configuration Error: {config_key}", "priority": "high",
                     "type": "problem", "tags": ["configuration", "error", "urgent"]},
}


def guide_config(**overrides: Any) -> dict[str, Any]:
    """The guide's zendesk_config, with ``overrides``."""
    return {"subdomain": "yourcompany", "email": "admin@yourcompany.com",
            "api_token": "your-api-token", "default_assignee": ASSIGNEE,
            "ticket_templates": GUIDE_TEMPLATES, **overrides}


def schema_error(**overrides: Any) -> dict[str, Any]:
    """A config.error event for a value a JSON Schema refused."""
    return make_event(type="config.error", new_value=3, metadata={
        "error": "value of 'app.mode' does not match the schema for 'app.*': 3 is not of type "
                 "'string'", "error_kind": "schema", "schema_pattern": "app.*"},
        key="app.mode", **overrides)


@pytest.fixture
def zendesk_fake() -> Iterator[FakeZendesk]:
    """A started FakeZendesk whose account has the guide's assignee as an agent."""
    with FakeZendesk() as fake:
        fake.add_agent(ASSIGNEE)
        yield fake


def against(fake: FakeZendesk, **overrides: Any) -> ZendeskConnector:
    """A connector configured for ``fake`` (guide templates, assignee, every change ticketed)."""
    config = {"base_url": fake.base_url, "email": fake.email, "api_token": fake.api_token,
              "default_assignee": ASSIGNEE, "ticket_templates": GUIDE_TEMPLATES,
              "ticket_all_changes": True, **overrides}
    ZendeskConnector.validate_config(config)
    connector = ZendeskConnector.from_stored("zendesk", config)
    assert isinstance(connector, ZendeskConnector)
    return connector


def posts(fake: FakeZendesk) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


# --- settings ----------------------------------------------------------------------------------


def test_validate_config__guide_example__accepted_with_defaults() -> None:
    # Given the guide's config / When it is validated
    checked = ZendeskConnector.validate_config(guide_config())
    # Then it is accepted as is, and changes are ticketed only when critical
    assert checked["subdomain"] == "yourcompany" and checked["ticket_all_changes"] is False


@pytest.mark.parametrize(("overrides", "field"), [
    ({"ticket_templates": {"config_error": {"priority": "critical"}}},
     r"ticket_templates config_error\.priority must be one of urgent, high, normal, low"),
    ({"ticket_templates": {"config_change": {"type": "bug"}}},
     r"ticket_templates config_change\.type must be one of problem, incident"),
    ({"ticket_templates": {"config_change": {"subject": "Change: {key}"}}},
     r"config_change\.subject has placeholder \{key\}"),
    ({"ticket_templates": {"config_change": {"tags": ["needs review"]}}},
     r"config_change\.tags must not contain spaces"),
    ({"ticket_templates": {"audit": {}}}, r"ticket_templates has unknown template 'audit'"),
    ({"ticket_templates": {"config_error": {"colour": "red"}}},
     r"config_error\.colour is not a template field"),
    ({"subdomain": "yourcompany.zendesk.com"}, r"zendesk\.subdomain must be the Zendesk subdomain"),
    ({"email": "admin"}, r"zendesk\.email must be an email address"),
    ({"default_assignee": "platform team"}, r"zendesk\.default_assignee must be an email"),
    ({"custom_fields": {"environment": "360001"}}, r"zendesk\.custom_fields has 'environment'"),
    ({"base_url": "http://zendesk.example.com"}, r"zendesk\.base_url must be an https://"),
    ({"ticket_all_changes": "yes"}, r"zendesk\.ticket_all_changes must be true or false"),
])
def test_validate_config__bad_value__error_names_the_field(overrides: dict[str, Any],
                                                           field: str) -> None:
    # Given a config with one bad value / When validated / Then the error names that field
    with pytest.raises(ConfigError, match=field):
        ZendeskConnector.validate_config(guide_config(**overrides))


def test_validate_config__neither_subdomain_nor_base_url__refused_unless_partial() -> None:
    # Given a config that does not say where Zendesk is
    config = guide_config()
    del config["subdomain"]
    # When validated whole / Then refused, naming subdomain and base_url
    with pytest.raises(ConfigError, match=r"zendesk\.subdomain is required .*base_url"):
        ZendeskConnector.validate_config(config)
    # And a config built field by field may leave it for later, but cannot deliver
    assert ZendeskConnector.validate_config(config, partial=True)["email"]
    with pytest.raises(Misconfigured, match="subdomain or base_url"):
        ZendeskConnector.from_stored("zendesk", config)


async def test_set_config__bad_priority__refused_at_set_config_naming_the_field(
        service: ConfigService) -> None:
    # Given the service / When the guide's config is stored with a priority Zendesk lacks
    bad = guide_config(ticket_templates={"config_error": {"priority": "critical"}})
    # Then set_config refuses it, naming the field, and nothing is stored
    with pytest.raises(ConfigError, match=r"integrations\.zendesk\.ticket_templates"):
        await service.set_config("integrations.zendesk", bad)
    assert await service.get_config("integrations.zendesk", None) is None


def test_api_url__subdomain_or_base_url__zendesk_host_or_override() -> None:
    # Given a subdomain, and a proxy base URL with a path / Then URLs are built from each
    plain = ZendeskConnector(guide_config())
    proxied = ZendeskConnector(guide_config(base_url="https://proxy.internal/zendesk/"))
    assert plain.api_url("/api/v2/tickets.json") == (
        "https://yourcompany.zendesk.com/api/v2/tickets.json")
    assert proxied.api_url("/api/v2/tickets.json") == (
        "https://proxy.internal/zendesk/api/v2/tickets.json")


def test_from_stored__env_reference__token_resolved_and_masked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the token kept in the worker's environment
    monkeypatch.setenv("ZENDESK_API_TOKEN", "tok-from-env-123")
    # When the connector is built from a stored config that refers to it
    connector = ZendeskConnector.from_stored(
        "zendesk", guide_config(api_token="${env:ZENDESK_API_TOKEN}"))
    # Then the token is resolved, and secret
    assert connector.config["api_token"] == "tok-from-env-123"
    assert "tok-from-env-123" not in repr(connector)
    assert connector.secrets() == {"tok-from-env-123"}


# --- which events become tickets -----------------------------------------------------------------


@pytest.mark.parametrize(("event", "kind"), [
    (schema_error(), "config_error"),
    (make_event(type="config.error", metadata={"error": "x", "error_kind": "validation"}),
     "config_error"),
    (make_event(type="security.violation", new_value="***"), "security_violation"),
    (make_event(urgency="high"), "config_change"),
    (make_event(type="config.deleted", urgency="high", new_value=None), "config_change"),
])
def test_ticket_kind__guide_cases__template_chosen(event: dict[str, Any], kind: str) -> None:
    assert ticket_kind(event, guide_config()) == kind


@pytest.mark.parametrize("urgency", ["medium", "low", None])
def test_ticket_kind__routine_change__skipped_saying_why(urgency: str | None) -> None:
    # Given a change that is not critical / When classified / Then skipped, with the reason
    with pytest.raises(Skipped, match=r"not critical \(urgency .*ticket_all_changes"):
        ticket_kind(make_event(urgency=urgency), guide_config())
    # And with ticket_all_changes it is ticketed after all
    assert ticket_kind(make_event(urgency=urgency),
                       guide_config(ticket_all_changes=True)) == "config_change"


@pytest.mark.parametrize("event_type", ["deployment.finished", "approval.requested"])
def test_ticket_kind__other_event_types__skipped_even_with_all_changes(event_type: str) -> None:
    with pytest.raises(Skipped, match=f"no tickets for {event_type}"):
        ticket_kind(make_event(type=event_type, urgency="high"),
                    guide_config(ticket_all_changes=True))


# --- the ticket --------------------------------------------------------------------------------


def test_build_ticket__critical_change__guide_template_assignee_and_fingerprint() -> None:
    # Given the guide's example change, routed as critical, with a reason
    event = make_event(urgency="high", reason="database migration")
    # When the ticket is built
    ticket = build_ticket(event, guide_config())["ticket"]
    # Then it follows the config_change template, is assigned, and carries the event id
    assert ticket["subject"] == "Configuration Change: app.database.host"
    assert (ticket["priority"], ticket["type"], ticket["tags"]) == (
        "normal", "incident", ["configuration", "automated"])
    assert ticket["assignee_email"] == ASSIGNEE and ticket["external_id"] == event["event_id"]
    # And the comment (an internal note) says what changed, by whom, where, why and when
    body = ticket["comment"]["body"]
    assert ticket["comment"]["public"] is False
    for line in ["Key: app.database.host", "Change: localhost → prod-db.internal",
                 "Changed by: admin@company.com", "Environment: production",
                 "Reason: database migration", "Time: 2025-01-01 14:30:00 UTC",
                 f"Event: {event['event_id']}"]:
        assert line in body.splitlines()


def test_build_ticket__schema_error__config_error_template_and_why() -> None:
    # Given a value refused by a schema / When its ticket is built
    ticket = build_ticket(schema_error(), guide_config())["ticket"]
    # Then the config_error template is used and the comment says what was refused and why
    assert ticket["subject"] == "Configuration Error: app.mode"
    assert (ticket["priority"], ticket["type"]) == ("high", "problem")
    body = ticket["comment"]["body"]
    assert body.startswith("A change to app.mode (production) was refused by a schema "
                           "validation error.")
    assert "Refused value: 3" in body and "3 is not of type 'string'" in body
    assert "Schema pattern: app.*" in body and "Attempted by: admin@company.com" in body


def test_build_ticket__failed_validation__says_validation() -> None:
    event = make_event(type="config.error", key="integrations.discord",
                       metadata={"error": "integrations.discord.username must not contain "
                                          "\"discord\"", "error_kind": "validation"})
    body = build_ticket(event, guide_config())["ticket"]["comment"]["body"]
    assert "was refused by a failed validation" in body
    assert 'Why: integrations.discord.username must not contain "discord"' in body


def test_build_ticket__security_violation__built_in_template_and_policy_details() -> None:
    # Given a write refused by access control (value masked in the event)
    event = make_event(type="security.violation", key="app.db.password", new_value="***",
                       changed_by="mallory@x", metadata={"required_role": "admin"})
    # When its ticket is built with the guide's templates (which have none for this case)
    ticket = build_ticket(event, guide_config())["ticket"]
    # Then the built-in template applies and the comment names the policy, masked value kept
    assert ticket["subject"] == "Security Policy Violation: app.db.password"
    assert (ticket["priority"], ticket["type"]) == ("high", "incident")
    assert "security" in ticket["tags"]
    body = ticket["comment"]["body"]
    assert "Required role: admin" in body and "Refused value: ***" in body
    assert "Attempted by: mallory@x" in body


def test_build_ticket__partial_template__missing_fields_from_defaults() -> None:
    config = guide_config(ticket_templates={"config_error": {"priority": "urgent"},
                                            "security_violation": {"tags": ["sec"]}})
    error = build_ticket(schema_error(), config)["ticket"]
    violation = build_ticket(make_event(type="security.violation"), config)["ticket"]
    assert (error["subject"], error["priority"]) == ("Configuration Error: app.mode", "urgent")
    assert violation["tags"] == ["sec"] and violation["priority"] == "high"


def test_build_ticket__deleted_key__shown_as_deleted() -> None:
    event = make_event(type="config.deleted", urgency="high", new_value=None)
    body = build_ticket(event, guide_config())["ticket"]["comment"]["body"]
    assert "Change: localhost → (deleted)" in body and "was deleted." in body


def test_build_ticket__no_assignee_no_custom_fields__fields_left_out() -> None:
    config = guide_config()
    del config["default_assignee"]
    ticket = build_ticket(make_event(urgency="high"), config)["ticket"]
    assert "assignee_email" not in ticket and "custom_fields" not in ticket


def test_build_ticket__placeholders_and_long_key__subject_filled_and_cut() -> None:
    config = guide_config(ticket_templates={"config_change": {
        "subject": "[{environment}/{tenant}] {event_type} {config_key} by {changed_by}"}})
    short = build_ticket(make_event(urgency="high"), config)["ticket"]["subject"]
    long = build_ticket(make_event(urgency="high", key="k" * 300), config)["ticket"]["subject"]
    assert short == ("[production/company] config.changed app.database.host by "
                     "admin@company.com")
    assert len(long) == SUBJECT_LIMIT and long.endswith("…")


def test_custom_field_values__metadata_and_event_fields__mapped_missing_left_out() -> None:
    # Given custom fields for metadata names and event fields, one absent from the event
    fields = {"error_kind": 1, "schema_pattern": 2, "environment": 3, "changed_by": 4,
              "required_role": 5, "version": 6}
    # When mapped for a schema error
    values = custom_field_values(schema_error(), fields)
    # Then each present value goes to its field id, absent ones are left out
    assert values == [{"id": 1, "value": "schema"}, {"id": 2, "value": "app.*"},
                      {"id": 3, "value": "production"}, {"id": 4, "value": "admin@company.com"},
                      {"id": 6, "value": 3}]


def test_custom_field_values__structured_metadata__compact_json_text() -> None:
    event = make_event(metadata={"labels": {"team": "db"}})
    assert custom_field_values(event, {"labels": 9}) == [{"id": 9, "value": '{"team":"db"}'}]


# --- error mapping -----------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "text"), [
    ({"error": "RecordInvalid", "description": "Record validation errors",
      "details": {"base": [{"description": "Subject: cannot be blank", "error": "BlankValue",
                            "field_key": "subject"}]}},
     "RecordInvalid: Record validation errors (base: Subject: cannot be blank)"),
    ({"error": "Couldn't authenticate you"}, "Couldn't authenticate you"),
    ({"error": "RecordNotFound", "description": "Not found"}, "RecordNotFound: Not found"),
    ({"error": {"title": "Forbidden", "message": "No access"}}, "Forbidden: No access"),
    ({}, None),
])
def test_error_text__zendesk_bodies__vendor_words_kept(body: dict[str, Any],
                                                       text: str | None) -> None:
    assert error_text(body) == text


def test_raise_for__429_without_retry_after__waits_ratelimit_reset() -> None:
    # Given a 429 that only carries the ticketing API's ratelimit-reset
    response = requests.Response()
    response.status_code = 429
    response.headers["ratelimit-reset"] = "12"
    response._content = b"You have exceeded the rate limit for your account."
    # When mapped / Then rate limited for at least that long, with Zendesk's text
    with pytest.raises(RateLimited, match="exceeded the rate limit") as caught:
        raise_for(response, set())
    assert caught.value.retry_after_s == 12


def test_send__wrong_token__auth_error_without_token(zendesk_fake: FakeZendesk) -> None:
    # Given a connector whose token Zendesk does not know
    connector = against(zendesk_fake, api_token="not-the-token-123")
    # When it sends / Then AuthError with Zendesk's words, and no token in it
    with pytest.raises(AuthError, match="401: Couldn't authenticate you") as caught:
        connector.send_notification(schema_error())
    assert "not-the-token-123" not in str(caught.value)
    assert zendesk_fake.tickets() == []


def test_send__assignee_not_an_agent__rejected_with_zendesk_details(
        zendesk_fake: FakeZendesk) -> None:
    # Given a default_assignee who is not an agent of the account
    connector = against(zendesk_fake, default_assignee="nobody@yourcompany.com")
    # When it sends / Then Zendesk's 422 comes back as Rejected with its field details
    with pytest.raises(Rejected, match=r"422: RecordInvalid: Record validation errors "
                                       r"\(assignee: .*nobody@yourcompany.com"):
        connector.send_notification(schema_error())
    # And nothing is remembered as created
    assert connector.context.created(f"ticket:{schema_error()['event_id']}") is None


def test_send__429__rate_limited_then_next_attempt_creates_without_lookup(
        zendesk_fake: FakeZendesk) -> None:
    # Given Zendesk rate limiting the next create for 7 s
    connector = against(zendesk_fake)
    zendesk_fake.fail_next(429, method="POST", retry_after_s=7)
    # When it sends twice
    with pytest.raises(RateLimited) as caught:
        connector.send_notification(schema_error())
    ref = connector.send_notification(schema_error())
    # Then the wait is Zendesk's, and the retry creates straight away (a 429 created nothing)
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 7
    assert [r.method for r in zendesk_fake.requests] == ["POST", "POST"]
    assert [t["id"] for t in zendesk_fake.tickets()] == [ref["ticket_id"]]


def test_send__503_on_create__retryable_and_next_attempt_looks_first(
        zendesk_fake: FakeZendesk) -> None:
    # Given Zendesk failing the next create with 503 (its outcome unknown to the client)
    connector = against(zendesk_fake)
    zendesk_fake.fail_next(503, method="POST", retry_after_s=2)
    # When it sends twice
    with pytest.raises(TransportError, match="503") as caught:
        connector.send_notification(schema_error())
    connector.send_notification(schema_error())
    # Then the retry looked the ticket up by external_id before creating the only one
    assert caught.value.retry_after_s == 2
    assert [r.method for r in zendesk_fake.requests] == ["POST", "GET", "POST"]
    assert zendesk_fake.requests[1].query == {"external_id": "0" * 32}
    assert len(zendesk_fake.tickets()) == 1


# --- no duplicates -----------------------------------------------------------------------------


def test_send__answer_lost_to_read_timeout__retry_finds_the_ticket(
        zendesk_fake: FakeZendesk, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a 0.5 s read timeout and a Zendesk that creates the ticket but answers after 2 s
    real_send = http.send
    monkeypatch.setattr(http, "send", lambda *a, **kw: real_send(*a, **kw, timeout=(1, 0.5)))
    connector = against(zendesk_fake)
    zendesk_fake.slow_creates(2.0)
    # When the first attempt times out and a second one runs
    with pytest.raises(TransportError):
        connector.send_notification(schema_error())
    ref = connector.send_notification(schema_error())
    # Then the second found the ticket: one ticket, one POST
    assert [t["id"] for t in zendesk_fake.tickets()] == [ref["ticket_id"]]
    assert len(posts(zendesk_fake)) == 1


def test_send__earlier_attempt_died_after_post__found_not_recreated(
        zendesk_fake: FakeZendesk) -> None:
    # Given a ticket an attempt created before dying (its record left at "creating")
    event = schema_error()
    made = against(zendesk_fake).send_notification(event)
    connector = against(zendesk_fake)
    connector.context = MemoryContext()
    connector.context.mark(f"ticket:{event['event_id']}", "creating")
    before = len(zendesk_fake.requests)
    # When the redelivered task runs
    ref = connector.send_notification(event)
    # Then it adopts that ticket with one look-up and no create
    assert ref == made
    assert [r.method for r in zendesk_fake.requests[before:]] == ["GET"]
    assert len(zendesk_fake.tickets()) == 1


def test_send__creating_but_nothing_there__creates_one(zendesk_fake: FakeZendesk) -> None:
    connector = against(zendesk_fake)
    connector.context.mark(f"ticket:{'0' * 32}", "creating")
    ref = connector.send_notification(schema_error())
    assert [r.method for r in zendesk_fake.requests] == ["GET", "POST"]
    assert [t["id"] for t in zendesk_fake.tickets()] == [ref["ticket_id"]]


def test_send__already_created__returns_ref_without_calling_zendesk(
        zendesk_fake: FakeZendesk) -> None:
    connector = against(zendesk_fake)
    connector.context.mark(f"ticket:{'0' * 32}", "created", {"ticket_id": 7, "ticket_url": "u"})
    assert connector.send_notification(schema_error()) == {"ticket_id": 7, "ticket_url": "u"}
    assert zendesk_fake.requests == []


def test_send__one_connector_many_events__one_ticket_each(zendesk_fake: FakeZendesk) -> None:
    # Given one connector used directly (one MemoryContext) / When two events are sent
    connector = against(zendesk_fake)
    first = connector.send_notification(schema_error(event_id="a" * 32))
    second = connector.send_notification(schema_error(event_id="b" * 32))
    # Then each has its own ticket
    assert first != second and len(zendesk_fake.tickets()) == 2


def test_send__fake_ticket__everything_the_builder_set_is_stored(
        zendesk_fake: FakeZendesk) -> None:
    # Given custom fields and the guide's assignee
    connector = against(zendesk_fake, custom_fields={"error_kind": 360001})
    # When a schema error is ticketed
    ref = connector.send_notification(schema_error())
    # Then Zendesk holds it as built: subject, template values, assignee, fingerprint, fields
    [ticket] = zendesk_fake.tickets(external_id="0" * 32)
    assert ticket["id"] == ref["ticket_id"] and ticket["url"] == ref["ticket_url"]
    assert ticket["subject"] == "Configuration Error: app.mode"
    assert (ticket["priority"], ticket["type"], ticket["status"]) == ("high", "problem", "open")
    assert ticket["tags"] == ["configuration", "error", "urgent"]
    assert ticket["assignee_id"] == zendesk_fake.agent_id(ASSIGNEE)
    assert ticket["custom_fields"] == [{"id": 360001, "value": "schema"}]
    assert ticket["is_public"] is False and "Why: value of 'app.mode'" in ticket["description"]


# --- health ------------------------------------------------------------------------------------


def test_health_check__credentials_right_wrong_or_no_server__true_false_false(
        zendesk_fake: FakeZendesk) -> None:
    assert against(zendesk_fake).health_check() is True
    assert against(zendesk_fake, api_token="wrong-token-1").health_check() is False
    port = zendesk_fake.port
    zendesk_fake.stop()
    assert against_url(f"http://127.0.0.1:{port}").health_check() is False


def against_url(base_url: str) -> ZendeskConnector:
    return ZendeskConnector({"base_url": base_url, "email": "a@b.co", "api_token": "t"})


async def test_health_check__through_service__guide_monitoring_loop(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    await service.set_config("integrations.zendesk", {
        "base_url": zendesk_fake.base_url, "email": zendesk_fake.email,
        "api_token": zendesk_fake.api_token})
    connector = await service.get_connector("zendesk")
    assert await connector.health_check() is True


# --- eager delivery: the guide's cases through the service -------------------------------------


async def test_eager__schema_violation__ticket_delivered_and_ref_in_ledger(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk and a schema for app.*
    await service.set_config("integrations.zendesk", {
        "base_url": zendesk_fake.base_url, "email": zendesk_fake.email,
        "api_token": zendesk_fake.api_token, "default_assignee": ASSIGNEE,
        "ticket_templates": GUIDE_TEMPLATES})
    await service.set_config("integrations.schemas", {"app.*": {"type": "string"}})
    # When a value breaks the schema
    with pytest.raises(ConfigError):
        await service.set_config("app.mode", 3, changed_by="dev@company.com")
    # Then one config_error ticket exists, and the ledger of its event says delivered
    [ticket] = zendesk_fake.tickets()
    assert ticket["subject"] == "Configuration Error: app.mode"
    [record] = await service.get_deliveries(ticket["external_id"])
    assert (record["status"], record["detail"]["ticket_id"]) == ("delivered", ticket["id"])


async def test_eager__routine_change__skipped_with_reason_no_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    await service.set_config("integrations.zendesk", {
        "base_url": zendesk_fake.base_url, "email": zendesk_fake.email,
        "api_token": zendesk_fake.api_token})
    result = await service.set_config("app.cache.ttl", 30)
    [record] = await service.get_deliveries(result.event_id)
    assert record["status"] == "skipped" and "not critical" in record["detail"]["skipped"]
    assert zendesk_fake.requests == []


# --- the fake enforces Zendesk's contract ------------------------------------------------------


def call(fake: FakeZendesk, method: str, path: str, auth: Any = "default",
         **kwargs: Any) -> requests.Response:
    auth = (f"{fake.email}/token", fake.api_token) if auth == "default" else auth
    return requests.request(method, fake.base_url + path, auth=auth, timeout=5, **kwargs)


TICKET = {"ticket": {"subject": "Disk full on db-1", "comment": {"body": "Alert details"},
                     "priority": "high", "type": "incident", "tags": ["alert"]}}


@pytest.mark.parametrize("auth", [None, ("agent@acme.test", "password"),
                                  ("agent@acme.test/token", "wrong")])
def test_fake__create_without_token_auth__401_couldnt_authenticate(
        zendesk_fake: FakeZendesk, auth: Any) -> None:
    response = call(zendesk_fake, "POST", "/api/v2/tickets.json", auth=auth, json=TICKET)
    assert (response.status_code, response.json()) == (401, {"error": "Couldn't authenticate you"})


def test_fake__bearer_token__401(zendesk_fake: FakeZendesk) -> None:
    response = requests.post(zendesk_fake.base_url + "/api/v2/tickets.json", json=TICKET,
                             headers={"Authorization": f"Bearer {zendesk_fake.api_token}"},
                             timeout=5)
    assert response.status_code == 401


def test_fake__contract_minimal_request__201_with_ticket_and_audit(
        zendesk_fake: FakeZendesk) -> None:
    response = call(zendesk_fake, "POST", "/api/v2/tickets.json", json=TICKET)
    assert response.status_code == 201
    body = response.json()
    assert body["ticket"]["subject"] == "Disk full on db-1" and "audit" in body
    assert zendesk_fake.messages() == zendesk_fake.tickets() and len(zendesk_fake.tickets()) == 1
    token = base64.b64encode(f"{zendesk_fake.email}/token:{zendesk_fake.api_token}".encode())
    assert posts(zendesk_fake)[0].header("Authorization") == f"Basic {token.decode()}"


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"comment": None}, "base", "Description: cannot be blank"),
    ({"subject": ""}, "base", "Subject: cannot be blank"),
    ({"priority": "critical"}, "priority", "Priority: 'critical' is not one of"),
    ({"type": "bug"}, "type", "Type: 'bug' is not one of"),
    ({"custom_fields": [{"id": "x", "value": 1}]}, "custom_fields", "Custom fields"),
    ({"assignee_email": "stranger@x.com"}, "assignee", "is not an agent"),
])
def test_fake__invalid_ticket__422_record_invalid_naming_the_field(
        zendesk_fake: FakeZendesk, change: dict[str, Any], field: str, message: str) -> None:
    ticket = {k: v for k, v in {**TICKET["ticket"], **change}.items() if v is not None}
    response = call(zendesk_fake, "POST", "/api/v2/tickets.json", json={"ticket": ticket})
    body = response.json()
    assert (response.status_code, body["error"]) == (422, "RecordInvalid")
    assert any(message in p["description"] for p in body["details"][field])
    assert zendesk_fake.tickets() == []


def test_fake__not_json__400(zendesk_fake: FakeZendesk) -> None:
    response = call(zendesk_fake, "POST", "/api/v2/tickets.json", data="ticket=1")
    assert response.status_code == 400 and zendesk_fake.tickets() == []


def test_fake__list_by_external_id__only_that_ticket(zendesk_fake: FakeZendesk) -> None:
    for external_id in ("e1", "e2"):
        ticket = {**TICKET["ticket"], "external_id": external_id}
        assert call(zendesk_fake, "POST", "/api/v2/tickets", json={"ticket": ticket}).ok
    found = call(zendesk_fake, "GET", "/api/v2/tickets.json", params={"external_id": "e2"})
    assert [t["external_id"] for t in found.json()["tickets"]] == ["e2"]
    assert found.json()["count"] == 1
    none = call(zendesk_fake, "GET", "/api/v2/tickets.json", params={"external_id": "e3"})
    assert none.json()["tickets"] == []


def test_fake__users_me__anonymous_200_null_id_bad_token_401(zendesk_fake: FakeZendesk) -> None:
    anonymous = call(zendesk_fake, "GET", "/api/v2/users/me.json", auth=None)
    assert (anonymous.status_code, anonymous.json()["user"]["id"]) == (200, None)
    assert call(zendesk_fake, "GET", "/api/v2/users/me.json",
                auth=(f"{zendesk_fake.email}/token", "bad")).status_code == 401
    assert call(zendesk_fake, "GET", "/api/v2/users/me.json").json()["user"]["id"]


def test_fake__scripted_429__plain_text_retry_after_and_rate_headers(
        zendesk_fake: FakeZendesk) -> None:
    zendesk_fake.fail_next(429, retry_after_s=7)
    response = call(zendesk_fake, "POST", "/api/v2/tickets.json", json=TICKET)
    assert response.status_code == 429 and response.text.startswith("You have exceeded")
    assert response.headers["Retry-After"] == "7"
    assert response.headers["X-Rate-Limit-Remaining"] == "0"
    assert response.headers["ratelimit-reset"] == "7"


def test_fake__account_rate_limit__429_once_exceeded(zendesk_fake: FakeZendesk) -> None:
    zendesk_fake.rate_limit(2, per_s=60)
    statuses = [call(zendesk_fake, "GET", "/api/v2/users/me.json").status_code
                for _ in range(3)]
    assert statuses == [200, 200, 429]


# --- the shared contract test's entry and the docs ---------------------------------------------
