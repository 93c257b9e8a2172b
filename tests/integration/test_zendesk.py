"""Zendesk through real workers: the guide's four ticket cases, errors, and no duplicates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config_core import ConfigError, ConfigService
from tests.conftest import redis_url
from tests.fakes.zendesk import FakeZendesk
from tests.integration.conftest import (
    FAST_RECOVERY,
    RECOVERY_DB,
    all_in,
    settle,
    wait_for_deliveries,
)
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

ASSIGNEE = "platform-team@yourcompany.com"
TEMPLATES = {
    "config_change": {"subject": "Configuration Change: {config_key}", "priority": "normal",
                      "type": "incident", "tags": ["configuration", "automated"]},
    "config_error": {"subject": "Configuration Error: {config_key}", "priority": "high",
                     "type": "problem", "tags": ["configuration", "error", "urgent"]},
}


@pytest.fixture
def zendesk_fake() -> Iterator[FakeZendesk]:
    """A started FakeZendesk whose account has the guide's assignee as an agent."""
    with FakeZendesk() as fake:
        fake.add_agent(ASSIGNEE)
        yield fake


def zendesk_config(fake: FakeZendesk, **overrides: Any) -> dict[str, Any]:
    """The guide's config, pointed at ``fake`` with ``base_url``."""
    return {"subdomain": "yourcompany", "base_url": fake.base_url, "email": fake.email,
            "api_token": fake.api_token, "default_assignee": ASSIGNEE,
            "ticket_templates": TEMPLATES, **overrides}


async def configure(service: ConfigService, fake: FakeZendesk, **overrides: Any) -> None:
    """Configure zendesk for ``fake``, wait for that change's own delivery, forget requests."""
    await settle(service, "integrations.zendesk", zendesk_config(fake, **overrides))
    fake.reset()


def posts(fake: FakeZendesk) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


async def violation(service: ConfigService) -> str:
    """Emit a security.violation as access control does; return its event id."""
    return await service.emit_event("security.violation", "app.database.password",
                                    value="hunter2", changed_by="mallory@company.com",
                                    metadata={"required_role": "dba"})


# --- the guide's four automatic cases ----------------------------------------------------------


async def test_critical_change__high_urgency_trigger__one_config_change_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk configured as the guide shows, and the guide's critical_changes trigger
    await configure(service, zendesk_fake, custom_fields={"environment": 360001})
    await service.set_config("integrations.notifications", {"triggers": {"critical_changes": {
        "patterns": ["*.database.*"], "connectors": ["zendesk"], "urgency": "high"}}})
    # When a database key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then a real worker opens one ticket from the config_change template
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    [ticket] = zendesk_fake.tickets()
    assert record["detail"]["ticket_id"] == ticket["id"] and record["urgency"] == "high"
    assert ticket["subject"] == "Configuration Change: app.database.host"
    assert (ticket["priority"], ticket["type"]) == ("normal", "incident")
    assert ticket["tags"] == ["configuration", "automated"]
    assert ticket["external_id"] == result.event_id
    assert ticket["assignee_id"] == zendesk_fake.agent_id(ASSIGNEE)
    assert ticket["custom_fields"] == [{"id": 360001, "value": "production"}]
    assert "Change: (none) → prod-db.internal" in ticket["description"]
    assert "Reason: database migration" in ticket["description"]


async def test_routine_change__low_urgency__skipped_with_reason_no_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk routed routine cache changes at low urgency
    await configure(service, zendesk_fake)
    await service.set_config("integrations.notifications", {"triggers": {"routine": {
        "patterns": ["app.cache.*"], "connectors": ["zendesk"], "urgency": "low"}}})
    # When a cache key changes
    result = await service.set_config("app.cache.ttl", 30)
    # Then the ledger says skipped, and why; Zendesk was not called
    [record] = await wait_for_deliveries(service, result.event_id, all_in("skipped"))
    assert "not critical (urgency low)" in record["detail"]["skipped"]
    assert zendesk_fake.requests == []


async def test_schema_violation__config_error_event__config_error_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk and a schema for app.mode
    await configure(service, zendesk_fake, custom_fields={"error_kind": 360002})
    await settle(service, "integrations.schemas", {"app.mode": {"enum": ["on", "off"]}})
    # When a value breaks the schema
    with pytest.raises(ConfigError):
        await service.set_config("app.mode", "sideways", changed_by="dev@company.com")
    # Then one config_error ticket says what was refused and why
    [ticket] = zendesk_fake.wait_for_messages(1, timeout_s=15)
    await wait_for_deliveries(service, ticket["external_id"], all_in("delivered"))
    assert ticket["subject"] == "Configuration Error: app.mode"
    assert (ticket["priority"], ticket["type"]) == ("high", "problem")
    assert "refused by a schema validation error" in ticket["description"]
    assert "Refused value: sideways" in ticket["description"]
    assert "is not one of ['on', 'off']" in ticket["description"]
    assert ticket["custom_fields"] == [{"id": 360002, "value": "schema"}]


async def test_failed_validation__bad_connector_config__config_error_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk configured
    await configure(service, zendesk_fake)
    # When a connector config fails validation
    with pytest.raises(ConfigError):
        await service.set_config("integrations.zendesk.ticket_templates",
                                 {"config_error": {"priority": "critical"}})
    # Then a ticket reports the failed validation, naming the field
    [ticket] = zendesk_fake.wait_for_messages(1, timeout_s=15)
    assert ticket["subject"] == "Configuration Error: integrations.zendesk.ticket_templates"
    assert "refused by a failed validation" in ticket["description"]
    assert "config_error.priority must be one of urgent" in ticket["description"]


async def test_security_violation__emitted__ticket_from_security_template(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk configured (its templates have none for security violations)
    await configure(service, zendesk_fake)
    # When access control reports a refused write
    event_id = await violation(service)
    # Then the built-in template opens one ticket, with the value masked
    await wait_for_deliveries(service, event_id, all_in("delivered"))
    [ticket] = zendesk_fake.tickets()
    assert ticket["subject"] == "Security Policy Violation: app.database.password"
    assert "Required role: dba" in ticket["description"]
    assert "Refused value: ***" in ticket["description"]
    assert "hunter2" not in ticket["description"]


# --- errors ------------------------------------------------------------------------------------


async def test_auth__wrong_token__dead_at_once_without_the_token(
        service: ConfigService, zendesk_fake: FakeZendesk, worker: WorkerProcess) -> None:
    # Given a token Zendesk does not know
    await configure(service, zendesk_fake, api_token="revoked-token-0123456789")
    # When an event needs a ticket
    event_id = await violation(service)
    # Then one attempt, dead, with Zendesk's words and never the token
    [record] = await wait_for_deliveries(service, event_id, all_in("dead"))
    assert record["attempts"] == 1 and "401: Couldn't authenticate you" in record["last_error"]
    assert "revoked-token-0123456789" not in record["last_error"]
    assert "revoked-token-0123456789" not in worker.log()
    assert len(zendesk_fake.requests) == 1 and zendesk_fake.tickets() == []


async def test_rate_limited__429_then_success__waits_at_least_retry_after(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given Zendesk answers the next create with 429 Retry-After: 2
    await configure(service, zendesk_fake)
    zendesk_fake.fail_next(429, method="POST", retry_after_s=2)
    # When an event needs a ticket
    event_id = await violation(service)
    # Then the second attempt creates it, no sooner than 2 s after the first
    [record] = await wait_for_deliveries(service, event_id, all_in("delivered"))
    first, second = posts(zendesk_fake)
    assert record["attempts"] == 2 and second.received_at - first.received_at >= 2.0
    assert len(zendesk_fake.tickets()) == 1


async def test_server_error__503_then_success__retried_one_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given Zendesk answers the next create with 503
    await configure(service, zendesk_fake)
    zendesk_fake.fail_next(503, method="POST", retry_after_s=1)
    # When an event needs a ticket
    event_id = await violation(service)
    # Then it is retried: the retry looks the ticket up, then creates the only one
    [record] = await wait_for_deliveries(service, event_id, all_in("delivered"))
    assert record["attempts"] == 2
    assert [r.method for r in zendesk_fake.requests] == ["POST", "GET", "POST"]
    assert [t["external_id"] for t in zendesk_fake.tickets()] == [event_id]


async def test_record_invalid__assignee_not_an_agent__dead_with_zendesk_details(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given a default_assignee who is not an agent of the account
    await configure(service, zendesk_fake, default_assignee="intern@yourcompany.com")
    # When an event needs a ticket
    event_id = await violation(service)
    # Then Zendesk's 422 kills the delivery at once, its details in the ledger
    [record] = await wait_for_deliveries(service, event_id, all_in("dead"))
    assert record["attempts"] == 1
    assert "422: RecordInvalid: Record validation errors" in record["last_error"]
    assert "intern@yourcompany.com is not an agent" in record["last_error"]
    assert zendesk_fake.tickets() == []


# --- no duplicates -----------------------------------------------------------------------------


async def test_read_timeout__ticket_created_answer_lost__retry_finds_it_one_ticket(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given Zendesk creates the ticket but answers after 4 s (the workers read for 3 s)
    await configure(service, zendesk_fake)
    zendesk_fake.slow_creates(4.0)
    # When an event needs a ticket
    event_id = await violation(service)
    # Then the retry finds the ticket by external_id instead of opening a second one
    [record] = await wait_for_deliveries(service, event_id, all_in("delivered"))
    [ticket] = zendesk_fake.tickets()
    assert record["attempts"] == 2 and record["detail"]["ticket_id"] == ticket["id"]
    assert len(posts(zendesk_fake)) == 1
    assert [r.query for r in zendesk_fake.requests if r.method == "GET"] == [
        {"external_id": event_id}]


async def test_worker_killed__after_zendesk_accepted_the_post__next_worker_adopts_ticket(
        lonely_service: ConfigService, zendesk_fake: FakeZendesk, tmp_path: Path) -> None:
    # Given zendesk configured and a worker of our own, with fast recovery
    svc = lonely_service
    await svc.set_config("integrations.zendesk", zendesk_config(zendesk_fake))
    url = redis_url(RECOVERY_DB)
    first = WorkerProcess(url, tmp_path, extra_env=FAST_RECOVERY)
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        # And Zendesk slow to answer a create it has already made
        zendesk_fake.slow_creates(10.0)
        event_id = await violation(svc)
        zendesk_fake.wait_for_messages(1, timeout_s=15)
        # When the worker is SIGKILLed while waiting for that answer
        first.kill()
        killed_at = time.monotonic()
        [record] = await svc.get_deliveries(event_id)
        assert record["status"] != "delivered"
        second = WorkerProcess(url, tmp_path, extra_env=FAST_RECOVERY)
        second.wait_ready()
        # Then the redelivered task finds the ticket: delivered, still exactly one ticket
        [record] = await wait_for_deliveries(svc, event_id, all_in("delivered"), 40)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    [ticket] = zendesk_fake.tickets()
    assert ticket["external_id"] == event_id and record["detail"]["ticket_id"] == ticket["id"]
    assert len(posts(zendesk_fake)) == 1
    lookups = [r for r in zendesk_fake.requests if r.method == "GET"]
    assert [r.query for r in lookups] == [{"external_id": event_id}]
    assert time.monotonic() - killed_at < 45
