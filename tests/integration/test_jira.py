"""Jira through real workers: issues created once, errors typed, waits honoured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config_core import ConfigError, ConfigService
from tests.conftest import redis_url
from tests.fakes.jira import FakeJira
from tests.integration.conftest import (
    FAST_RECOVERY,
    RECOVERY_DB,
    all_in,
    settle,
    wait_for_deliveries,
)
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

GUIDE_ISSUE_TYPES = {"config_change": "Task", "config_error": "Bug", "schema_update": "Story"}


@pytest.fixture
def jira_fake() -> Iterator[FakeJira]:
    """A started FakeJira (project CONFIG with Task, Bug, Story), stopped after the test."""
    with FakeJira() as fake:
        yield fake


async def configure(service: ConfigService, fake: FakeJira, **overrides: Any) -> None:
    """The guide's Jira config against ``fake``; its own issue is made, then forgotten."""
    await settle(service, "integrations.jira",
                 fake.config(**{"issue_types": GUIDE_ISSUE_TYPES, **overrides}))
    fake.reset()


def creates(fake: FakeJira) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith("/issue")]


async def test_change__guide_config__one_task_with_fingerprint_label(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira configured as the guide shows
    await configure(service, jira_fake)
    # When a key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then a real worker opens one Task carrying the event's label, and the ledger names it
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert record["attempts"] == 1 and record["detail"]["issue_key"] == "CONFIG-1"
    [issue] = jira_fake.issues(label=f"apgcfg-{result.event_id}")
    fields = issue["fields"]
    assert fields["issuetype"] == {"name": "Task"} and fields["project"] == {"key": "CONFIG"}
    assert fields["summary"] == "[production] Configuration changed: app.database.host"
    assert fields["description"]["type"] == "doc"


async def test_schemas_and_refused_value__v2__story_then_bug_with_plain_text(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira on API v2
    await configure(service, jira_fake, api_version=2)
    # When a schema is added, then a value it refuses is written
    schemas = await service.set_config("integrations.schemas",
                                       {"app.port": {"type": "integer"}})
    with pytest.raises(ConfigError, match=r"app\.port"):
        await service.set_config("app.port", "not-a-number")
    await wait_for_deliveries(service, schemas.event_id, all_in("delivered"))
    # Then the schema update is a Story and the refusal a Bug, both plain text on /2/
    deadline = time.monotonic() + 15
    while len(jira_fake.issues()) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    story, bug = sorted(jira_fake.issues(), key=lambda i: i["id"])
    assert story["fields"]["issuetype"] == {"name": "Story"}
    assert bug["fields"]["issuetype"] == {"name": "Bug"}
    assert bug["fields"]["summary"] == "[production] Configuration error (schema): app.port"
    assert isinstance(bug["fields"]["description"], str)
    assert "not-a-number" in bug["fields"]["description"]
    assert {r.path for r in creates(jira_fake)} == {"/rest/api/2/issue"}


async def test_wrong_token__401__dead_after_one_attempt_without_token(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira configured with a token Jira does not know
    await configure(service, jira_fake, api_token="revoked-token-5f2a9c")
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then the delivery is dead at once, with Jira's message and without the token
    [record] = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert record["attempts"] == 1 and "401" in record["last_error"]
    assert "not authenticated" in record["last_error"]
    assert "revoked-token-5f2a9c" not in record["last_error"]
    assert len(creates(jira_fake)) == 1 and jira_fake.issues() == []


async def test_rate_limited__429_then_success__waits_at_least_retry_after(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira answers the next create with 429 Retry-After: 2
    await configure(service, jira_fake)
    jira_fake.fail_next(429, webhook_url=jira_fake.url("issue"), retry_after_s=2)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then the second attempt, no sooner than 2 s later, creates the one issue
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert record["attempts"] == 2
    first, second = creates(jira_fake)
    assert second.received_at - first.received_at >= 2.0
    assert len(jira_fake.issues(label=f"apgcfg-{result.event_id}")) == 1


async def test_server_error__503_twice__retried_then_one_issue(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira answers the next two creates with 503
    await configure(service, jira_fake)
    jira_fake.fail_next(503, times=2, webhook_url=jira_fake.url("issue"), retry_after_s=0)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then the third attempt succeeds, and only one issue exists
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert record["attempts"] == 3 and len(creates(jira_fake)) == 3
    assert len(jira_fake.issues(label=f"apgcfg-{result.event_id}")) == 1


async def test_unknown_issue_type__400__dead_with_jiras_message(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given an issue type the project does not have
    await configure(service, jira_fake, issue_types={"config_change": "Change Request"})
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then dead after one attempt, with Jira's own words
    [record] = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert record["attempts"] == 1
    assert "issuetype: The issue type selected is invalid." in record["last_error"]


async def test_create_answer_lost__read_timeout__retry_finds_issue_no_duplicate(
        service: ConfigService, jira_fake: FakeJira) -> None:
    # Given Jira creates the next issue but answers 4 s late (the worker reads for 3 s)
    await configure(service, jira_fake)
    jira_fake.slow_creates(4.0)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then the retry finds the issue by its label: delivered, one create, one issue
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert record["attempts"] == 2 and record["detail"]["found_by"] == "search"
    assert len(creates(jira_fake)) == 1
    [issue] = jira_fake.issues(label=f"apgcfg-{result.event_id}")
    assert record["detail"]["issue_key"] == issue["key"]
    searches = [r for r in jira_fake.requests if r.path == "/rest/api/3/search/jql"]
    assert searches[0].json["jql"] == f'labels = "apgcfg-{result.event_id}"'


async def test_worker_killed_after_jira_created__next_worker_finds_it_no_duplicate(
        lonely_service: ConfigService, tmp_path: Path) -> None:
    # Given Jira routed alone, a change waiting, and Jira slow to answer that change's create
    svc = lonely_service
    with FakeJira() as fake:
        await svc.set_config("integrations.notifications", {"triggers": {"apps": {
            "patterns": ["app.*"], "connectors": ["jira"], "urgency": "high"}}})
        await svc.set_config("integrations.jira", fake.config(issue_types=GUIDE_ISSUE_TYPES))
        result = await svc.set_config("app.database.host", "prod-db.internal")
        label = f"apgcfg-{result.event_id}"
        fake.slow_creates(30.0, label=label)
        first = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
        second: WorkerProcess | None = None
        try:
            first.wait_ready()
            deadline = time.monotonic() + 15
            while not fake.issues(label) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert fake.issues(label), "the first worker never reached Jira"
            # When the worker is SIGKILLed while Jira's answer is on its way
            first.kill()
            records = await svc.get_deliveries(result.event_id)
            assert [r["status"] for r in records] != ["delivered"]
            second = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
            second.wait_ready()
            # Then the redelivered task finds the issue: delivered, and still one issue
            [record] = await wait_for_deliveries(svc, result.event_id, all_in("delivered"), 40)
        finally:
            first.stop()
            if second is not None:
                second.stop()
        assert len(fake.issues(label)) == 1 and len(creates(fake)) == 1
        assert record["detail"]["issue_key"] == fake.issues(label)[0]["key"]
        assert record["detail"]["found_by"] == "search"
