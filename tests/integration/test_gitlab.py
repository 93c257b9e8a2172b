"""GitLab through real workers: writer → outbox → relay → worker → loopback FakeGitLab.

The session worker (and the kill test's own workers) read with a 3 s timeout
(APGCFG_HTTP_TIMEOUT_S=2,3), so a fake that answers a create after 4.5 s loses the answer after
the object was made: the next attempt must find it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config_core import ConfigService
from tests.conftest import redis_url
from tests.fakes.gitlab import GUIDE_PROJECT, FakeGitLab, guide_config
from tests.integration.conftest import (
    FAST_RECOVERY,
    RECOVERY_DB,
    all_in,
    settle,
    wait_for_deliveries,
)
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

PATH = GUIDE_PROJECT
FILE = "config/production/app.database.host.json"
LOST_ANSWER_S = 4.5
"""Longer than the workers' 3 s read timeout: the client gives up, the fake has acted."""


@pytest.fixture
def gitlab_fake() -> Iterator[FakeGitLab]:
    """A started FakeGitLab with the guide's project, its main and deployment branches."""
    with FakeGitLab() as fake:
        fake.add_project(PATH, branches=("main", "config-deployment"))
        yield fake


async def change(service: ConfigService, status: str, timeout_s: float = 30.0,
                 ) -> dict[str, Any]:
    """Change the guide's key; wait until the gitlab delivery is ``status``; return its row."""
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    records = await wait_for_deliveries(service, result.event_id, all_in(status), timeout_s)
    (record,) = [r for r in records if r["connector"] == "gitlab"]
    return record


def posts(fake: FakeGitLab, suffix: str) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST" and r.path.endswith(suffix)]


async def test_change__guide_config__commit_merge_request_and_pipeline(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given GitLab configured as the guide shows (its own change is skipped, not committed)
    own = await settle(service, "integrations.gitlab", guide_config(gitlab_fake))
    assert own[0]["status"] == "skipped" and "configures this service" in \
        own[0]["detail"]["skipped"]
    # When a key changes
    record = await change(service, "delivered")
    # Then one commit writes config/production/<key>.json on the event's branch, one MR opens
    # from it to main, and one pipeline runs on config-deployment with the change as variables
    (commit,) = gitlab_fake.commits()
    (mr,) = gitlab_fake.merge_requests()
    (pipeline,) = gitlab_fake.pipelines()
    pid = mr["project_id"]
    document = json.loads(gitlab_fake.file(pid, commit["branch"], FILE) or "{}")
    assert document["value"] == "prod-db.internal" and document["reason"] == "database migration"
    assert (mr["source_branch"], mr["target_branch"]) == (commit["branch"], "main")
    variables = {v["key"]: v["value"] for v in pipeline["variables"]}
    assert pipeline["ref"] == "config-deployment"
    assert variables["CONFIG_KEY"] == "app.database.host"
    assert variables["CONFIG_VALUE"] == "prod-db.internal"
    assert record["attempts"] == 1
    assert record["detail"]["merge_request_iid"] == mr["iid"]
    assert record["detail"]["pipelines"] == {"config-deploy": pipeline["id"]}


async def test_auth__wrong_token__dead_at_once_without_the_token(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given a token GitLab does not know
    await settle(service, "integrations.gitlab",
                 guide_config(gitlab_fake, token="glpat-revoked-secret-value"))
    # When a key changes
    record = await change(service, "dead")
    # Then one attempt, dead, with GitLab's 401 text and a hint, never the token
    assert record["attempts"] == 1
    assert "401 Unauthorized" in record["last_error"]
    assert "integrations.gitlab.token" in record["last_error"]
    assert "glpat-revoked-secret-value" not in record["last_error"]
    assert not gitlab_fake.commits()


async def test_rate_limited__429_then_success__waits_at_least_retry_after(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given GitLab answers the next create with 429 Retry-After: 2
    await settle(service, "integrations.gitlab",
                 guide_config(gitlab_fake, pipeline_triggers=None))
    gitlab_fake.reset()
    gitlab_fake.fail_next(429, method="POST", retry_after_s=2)
    # When a key changes
    record = await change(service, "delivered")
    # Then the second attempt commits, no sooner than 2 s after the refused one, once
    commits = posts(gitlab_fake, "/repository/commits")
    assert record["attempts"] == 2 and len(commits) == 2
    assert commits[1].received_at - commits[0].received_at >= 2.0
    assert len(gitlab_fake.commits()) == 1 and len(gitlab_fake.merge_requests()) == 1


async def test_server_error__503_on_create__retried_and_created_once(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given GitLab answers the next create with 503
    await settle(service, "integrations.gitlab",
                 guide_config(gitlab_fake, pipeline_triggers=None))
    gitlab_fake.reset()
    gitlab_fake.fail_next(503, method="POST", retry_after_s=0)
    # When a key changes
    record = await change(service, "delivered")
    # Then it is retried, looks for the branch first, and creates one commit and one MR
    assert record["attempts"] == 2
    assert any(r.method == "GET" and "/repository/branches/" in r.path
               for r in gitlab_fake.requests)
    assert len(gitlab_fake.commits()) == 1 and len(gitlab_fake.merge_requests()) == 1


async def test_rejected__pipeline_ref_missing__dead_with_gitlab_message(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given a pipeline trigger on a branch the project does not have
    await settle(service, "integrations.gitlab", guide_config(
        gitlab_fake, auto_create_mrs=False, pipeline_triggers={"deploy": "no-such-branch"}))
    # When a key changes
    record = await change(service, "dead")
    # Then one attempt, dead with GitLab's own message
    assert record["attempts"] == 1
    assert "gitlab answered 400: Reference not found" in record["last_error"]
    assert not gitlab_fake.pipelines()


async def test_no_duplicates__commit_and_mr_answers_lost__one_commit_one_mr(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given GitLab makes the commit and the MR but both answers arrive after the read timeout
    await settle(service, "integrations.gitlab",
                 guide_config(gitlab_fake, pipeline_triggers=None))
    gitlab_fake.reset()
    gitlab_fake.slow("repository/commits", LOST_ANSWER_S)
    gitlab_fake.slow("merge_requests", LOST_ANSWER_S)
    # When a key changes
    record = await change(service, "delivered", timeout_s=40)
    # Then the retries found the commit by its branch and the MR by its source branch
    assert record["attempts"] == 3
    assert len(posts(gitlab_fake, "/repository/commits")) == 1
    assert len(posts(gitlab_fake, "/merge_requests")) == 1
    assert len(gitlab_fake.commits()) == 1 and len(gitlab_fake.merge_requests()) == 1
    assert record["detail"]["merge_request_iid"] == gitlab_fake.merge_requests()[0]["iid"]


async def test_no_duplicates__trigger_answer_lost__one_pipeline(
        service: ConfigService, gitlab_fake: FakeGitLab) -> None:
    # Given a trigger token, and GitLab answering the trigger after the read timeout
    project_id = gitlab_fake.add_project("group/deploys", branches=("main", "prod"))
    token = gitlab_fake.add_trigger(project_id)
    await settle(service, "integrations.gitlab", guide_config(
        gitlab_fake, project_id=project_id, auto_create_mrs=False, trigger_token=token,
        pipeline_triggers={"deploy": "prod"}))
    gitlab_fake.reset()
    gitlab_fake.slow("trigger/pipeline", LOST_ANSWER_S)
    # When a key changes
    record = await change(service, "delivered")
    # Then the retry found the pipeline by its CONFIG_EVENT_ID variable: one pipeline only
    assert record["attempts"] == 2
    assert len(posts(gitlab_fake, "/trigger/pipeline")) == 1
    (pipeline,) = gitlab_fake.pipelines(project_id)
    assert pipeline["source"] == "trigger"
    assert record["detail"]["pipelines"] == {"deploy": pipeline["id"]}


async def test_no_duplicates__worker_killed_while_mr_created__next_worker_adopts_it(
        lonely_service: ConfigService, tmp_path: Path) -> None:
    # Given GitLab configured, and a vendor that creates MRs but answers slowly
    svc = lonely_service
    with FakeGitLab() as fake:
        fake.add_project(PATH)
        await svc.set_config("integrations.gitlab", guide_config(fake, pipeline_triggers=None))
        fake.slow("merge_requests", 8.0)
        first = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
        second: WorkerProcess | None = None
        try:
            first.wait_ready()
            result = await svc.set_config("app.database.host", "prod-db.internal")
            # When the worker is SIGKILLed after GitLab made the MR, before the answer
            await wait_until(lambda: posts(fake, "/merge_requests"), timeout_s=20)
            assert len(fake.merge_requests()) == 1
            first.kill()
            second = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
            second.wait_ready()
            # Then the redelivered task finds the MR by its source branch: delivered, one MR
            records = await wait_for_deliveries(svc, result.event_id, all_in("delivered"), 45)
        finally:
            first.stop()
            if second is not None:
                second.stop()
        assert len(posts(fake, "/merge_requests")) == 1
        assert len(fake.merge_requests()) == 1 and len(fake.commits()) == 1
        assert records[0]["detail"]["merge_request_iid"] == fake.merge_requests()[0]["iid"]


async def wait_until(check: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout_s}s")
        await asyncio.sleep(0.05)
