"""GitHub through real workers: issues and deploy dispatches against the loopback fake.

The session worker reads with a 3 s timeout (APGCFG_HTTP_TIMEOUT_S=2,3), so a fake that answers
a create 4.5 s late makes the worker give up after GitHub already created the object.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import ConfigService
from config_core.state.dedupe import dedupe_key
from connectors.github.payloads import DISPATCH_INPUTS
from tests.conftest import redis_url
from tests.fakes.github import FakeGitHub
from tests.integration.conftest import FAST_RECOVERY, RECOVERY_DB, all_in, wait_for_deliveries
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

TRACKING, INFRA = "company/config-tracking", "company/infrastructure"
RUN_NAME = "Deploy ${{ inputs.config_key }} [${{ inputs.event_id }}]"
LATE_S = 4.5
"""How late the fake answers a create: past the workers' 3 s read timeout."""


@pytest.fixture
def github_fake() -> Iterator[FakeGitHub]:
    """A started FakeGitHub with the guide's repositories and a deploy workflow whose
    run-name carries the event id (as the docs ask)."""
    with FakeGitHub() as fake:
        fake.add_repo(TRACKING)
        fake.add_repo(INFRA)
        fake.add_workflow(INFRA, inputs={name: name == "event_id" for name in DISPATCH_INPUTS},
                          run_name=RUN_NAME)
        yield fake


def guide_config(fake: FakeGitHub, **overrides: Any) -> dict[str, Any]:
    config = {
        "token": fake.token, "organization": "company",
        "repositories": {"config-tracking": TRACKING, "infrastructure": INFRA},
        "auto_create_issues": True, "issue_labels": ["configuration", "automated"],
        "workflow_triggers": {"deploy": ".github/workflows/deploy-config.yml"},
        "api_url": fake.base_url,
    }
    config.update(overrides)
    return config


async def configure(service: ConfigService, fake: FakeGitHub, **overrides: Any) -> None:
    """Store the config, wait until its own change is delivered, then forget it in the fake."""
    result = await service.set_config("integrations.github", guide_config(fake, **overrides))
    for _ in range(100):
        if await service.get_deliveries(result.event_id):
            break
        await asyncio.sleep(0.02)
    await wait_for_deliveries(service, result.event_id, all_in("delivered", "dead", "skipped"))
    fake.reset()


def posts(fake: FakeGitHub, suffix: str) -> list[float]:
    return [r.received_at for r in fake.requests if r.method == "POST"
            and r.path.endswith(suffix)]


async def test_change__guide_config__one_issue_and_one_dispatch(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given GitHub configured as the guide shows
    await configure(service, github_fake)
    # When a key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then a real worker opens one labelled issue and dispatches the deploy once
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 1 and records[0]["detail"]["issue_number"] == 1
    issue, = github_fake.issues(TRACKING)
    assert issue["title"] == "Configuration changed: app.database.host (production)"
    assert issue["labels"] == ["configuration", "automated", f"apgcfg-{result.event_id}"]
    assert "`database migration`" in issue["body"]
    dispatch, = github_fake.dispatches(INFRA)
    assert dispatch["ref"] == "main"
    assert dispatch["inputs"]["config_key"] == "app.database.host"
    assert dispatch["inputs"]["event_id"] == result.event_id


async def test_change__nothing_enabled__skipped_with_reason(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given issues off and no workflow trigger
    await configure(service, github_fake, auto_create_issues=False, workflow_triggers={})
    # When a key changes / Then the ledger says skipped, why, and GitHub was not called
    result = await service.set_config("app.x", 1)
    records = await wait_for_deliveries(service, result.event_id, all_in("skipped"))
    assert "auto_create_issues is off" in records[0]["detail"]["skipped"]
    assert github_fake.requests == []


async def test_token__refused_401__dead_at_once_without_the_token(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given a token GitHub does not know
    bad_token = "ghp_" + "W" * 36
    await configure(service, github_fake, token=bad_token)
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then one attempt, dead, GitHub's message in the ledger and no token
    records = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert records[0]["attempts"] == 1
    assert "401: Bad credentials" in records[0]["last_error"]
    assert bad_token not in records[0]["last_error"] and "W" * 36 not in records[0]["last_error"]
    assert len(github_fake.requests) == 1


async def test_rate_limit__primary_429__retried_no_sooner_than_reset(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given GitHub's primary limit is exhausted for the next 2 s
    await configure(service, github_fake)
    github_fake.primary_rate_limit(status=429, reset_in_s=2, method="POST")
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then the issue is created on the second attempt, at least 2 s after the first
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 2
    first, second = posts(github_fake, "/issues")
    assert second - first >= 2.0
    assert len(github_fake.issues()) == 1 and len(github_fake.dispatches()) == 1


async def test_rate_limit__secondary_403_retry_after__retried_not_dead(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given a secondary rate limit: 403 with retry-after 2 (a 403 that is no auth error)
    await configure(service, github_fake)
    github_fake.secondary_rate_limit(status=403, retry_after_s=2, method="POST")
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then it waits at least 2 s and succeeds
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 2
    first, second = posts(github_fake, "/issues")
    assert second - first >= 2.0


async def test_server_error__502_on_create__retried_and_one_issue(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given GitHub answers the next create with 502
    await configure(service, github_fake)
    github_fake.fail_next(502, method="POST")
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then it is retried, looks for the issue first (the 502 left the outcome unknown),
    # and GitHub holds exactly one issue
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 2
    calls = [(r.method, r.path.rsplit("/", 1)[-1]) for r in github_fake.requests]
    assert calls[:3] == [("POST", "issues"), ("GET", "issues"), ("POST", "issues")]
    assert len(github_fake.issues()) == 1


async def test_dispatch__unknown_ref_422__dead_with_githubs_message(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given a workflow_ref the repository does not have
    await configure(service, github_fake, workflow_ref="release/v9")
    # When a key changes
    result = await service.set_config("app.x", 1)
    # Then dead after one attempt with GitHub's own words; the issue stays single
    records = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert records[0]["attempts"] == 1
    assert "422: No ref found for: release/v9" in records[0]["last_error"]
    assert len(github_fake.issues()) == 1 and github_fake.dispatches() == []


async def test_issue__repository_missing_404__dead_with_not_found(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    await configure(service, github_fake, repositories={"config-tracking": "company/gone",
                                                        "infrastructure": INFRA})
    result = await service.set_config("app.x", 1)
    records = await wait_for_deliveries(service, result.event_id, all_in("dead"))
    assert records[0]["attempts"] == 1
    assert "404: Not Found (repository company/gone" in records[0]["last_error"]


async def test_issue__answer_lost_after_create__retry_finds_it_one_issue(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given GitHub creates the issue but answers after the worker's read timeout
    await configure(service, github_fake)
    github_fake.slow_next(LATE_S, method="POST", path_suffix="/issues")
    # When a key changes
    result = await service.set_config("app.lost.issue", 1)
    # Then the retry finds the issue by its label: delivered, and exactly one issue
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 2
    label = f"apgcfg-{result.event_id}"
    assert [i["labels"][-1] for i in github_fake.issues()] == [label]
    assert any(r.method == "GET" and r.query.get("labels") == label for r in github_fake.requests)
    assert len(posts(github_fake, "/issues")) == 1 and len(github_fake.dispatches()) == 1


async def test_dispatch__answer_lost_after_dispatch__retry_finds_run_one_dispatch(
        service: ConfigService, github_fake: FakeGitHub) -> None:
    # Given GitHub accepts the dispatch but answers after the worker's read timeout
    await configure(service, github_fake)
    github_fake.slow_next(LATE_S, method="POST", path_suffix="/dispatches")
    # When a key changes
    result = await service.set_config("app.lost.dispatch", 1)
    # Then the retry finds the run titled with the event id: one dispatch, one issue
    records = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert records[0]["attempts"] == 2
    dispatch, = github_fake.dispatches()
    assert records[0]["detail"]["workflow_run_id"] == dispatch["run_id"]
    assert len(posts(github_fake, "/dispatches")) == 1 and len(github_fake.issues()) == 1


async def test_dispatch__worker_killed_mid_post__next_worker_finds_run_no_duplicates(
        lonely_service: ConfigService, github_fake: FakeGitHub, tmp_path: Path) -> None:
    # Given a worker of its own, GitHub configured, and a dispatch GitHub accepts but holds
    svc = lonely_service
    await svc.set_config_local_only("integrations.github", guide_config(github_fake))
    github_fake.slow_next(30, method="POST", path_suffix="/dispatches")
    first = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        result = await svc.set_config("app.killed", 1)
        await _wait_until(lambda: posts(github_fake, "/dispatches"), 20)
        # When the whole worker is SIGKILLed while the dispatch is in flight
        first.kill()
        raw = redis.Redis.from_url(redis_url(RECOVERY_DB), decode_responses=True)
        dedupe = raw.hgetall(dedupe_key(svc.namespace, result.event_id))
        assert '"creating"' in dedupe["github:dispatch"] and '"created"' in dedupe["github:issue"]
        second = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
        second.wait_ready()
        # Then the redelivered task finds the issue record and the run: delivered, one of each
        records = await wait_for_deliveries(svc, result.event_id, all_in("delivered"), 45)
        assert records[0]["detail"]["workflow_run_id"] == github_fake.dispatches()[0]["run_id"]
    finally:
        first.stop()
        if second is not None:
            second.stop()
    assert len(github_fake.issues()) == 1 and len(github_fake.dispatches()) == 1
    assert len(posts(github_fake, "/issues")) == 1 and len(posts(github_fake, "/dispatches")) == 1


async def _wait_until(found: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not found():
        if time.monotonic() > deadline:
            raise AssertionError(f"not seen within {timeout_s}s")
        await asyncio.sleep(0.05)
