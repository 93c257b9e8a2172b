"""Jenkins through real workers: builds triggered, followed, fed back; errors; no duplicates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from config_core import ConfigService
from tests.conftest import redis_url
from tests.fakes.jenkins import FakeJenkins
from tests.integration.conftest import FAST_RECOVERY, RECOVERY_DB, all_in, wait_for_deliveries
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

KEY = "app.database.host"
FINAL = ("delivered", "dead", "skipped")


@pytest.fixture
def jenkins_fake() -> Iterator[FakeJenkins]:
    """A started FakeJenkins: an item waits one poll in the queue, its build runs two."""
    with FakeJenkins(queue_polls=1, build_polls=2) as fake:
        yield fake


async def configure(service: ConfigService, fake: FakeJenkins, **overrides: Any) -> None:
    """Configure Jenkins as the guide does and wait until that change's own delivery ended."""
    config = fake.config(trigger_patterns=["app.database.*", "app.cache.*"],
                         job_parameters={"ENVIRONMENT": "production", "NOTIFY_TEAM": "platform"},
                         poll_interval_s=0.2, **overrides)
    result = await service.set_config("integrations.jenkins", config)
    await wait_for_deliveries(service, result.event_id, all_in(*FINAL))
    fake.reset()


async def wait_for_build_note(service: ConfigService, event_id: str,
                              timeout_s: float = 20) -> dict[str, Any]:
    """The ledger record of the Jenkins delivery once its build result was noted."""
    deadline = time.monotonic() + timeout_s
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = await service.get_deliveries(event_id)
        for record in records:
            if record["connector"] == "jenkins" and "build" in record["detail"]:
                return record
        await asyncio.sleep(0.05)
    raise AssertionError(f"no build result noted for {event_id} in {timeout_s}s: {records}")


def posts(fake: FakeJenkins) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


@pytest.mark.parametrize("result", ["SUCCESS", "FAILURE"])
async def test_change__matching_key__build_followed_and_result_fed_back(
        service: ConfigService, jenkins_fake: FakeJenkins, result: str) -> None:
    # Given Jenkins configured as the guide shows, and a job that ends with ``result``
    jenkins_fake.result = result
    await configure(service, jenkins_fake)
    # When a database key changes
    change = await service.set_config(KEY, "prod-db.internal", changed_by="admin@company.com")
    # Then one build ran with the change as its parameters
    record = await wait_for_build_note(service, change.event_id)
    assert record["status"] == "delivered" and record["attempts"] == 1
    [queued] = jenkins_fake.messages()
    assert queued["parameters"] == {
        "CONFIG_KEY": KEY, "CONFIG_VALUE": "prod-db.internal", "USER_ID": "admin@company.com",
        "APGCFG_EVENT_ID": change.event_id, "ENVIRONMENT": "production",
        "NOTIFY_TEAM": "platform"}
    # And its result is on the ledger and in the key's history
    build = record["detail"]["build"]
    assert (build["number"], build["result"]) == (1, result) and build["duration_ms"] >= 0
    [entry] = await service.history(KEY)
    [note] = entry["notes"]
    assert note["build"] == build and note["connector"] == "jenkins"
    # And the follow-ups polled the queue item, then the build, until it finished
    gets = [r.path for r in jenkins_fake.requests if r.method == "GET"]
    assert gets.count("/queue/item/100/api/json") == 2
    assert gets.count("/job/config-deployment/1/api/json") == 3
    # And deployment.finished was emitted and routed like any event (Jenkins skipped it)
    finished = await wait_for_deliveries(service, note["finished_event_id"], all_in(*FINAL))
    assert [(r["connector"], r["status"]) for r in finished] == [("jenkins", "skipped")]
    assert "deployment.finished events never trigger" in finished[0]["detail"]["skipped"]
    assert len(posts(jenkins_fake)) == 1


async def test_change__key_outside_trigger_patterns__skipped_with_reason_no_build(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given Jenkins triggered by database and cache keys
    await configure(service, jenkins_fake)
    # When another key changes
    change = await service.set_config("app.name", "x")
    # Then the ledger says skipped, and why; Jenkins heard nothing
    [record] = await wait_for_deliveries(service, change.event_id, all_in("skipped"))
    assert "'app.name' matches no trigger_patterns" in record["detail"]["skipped"]
    assert jenkins_fake.requests == []


async def test_trigger__wrong_api_token__dead_at_once_without_the_token(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given a revoked token
    await configure(service, jenkins_fake, api_token="revoked-token-0123456789")
    # When a key changes
    change = await service.set_config(KEY, "h")
    # Then one attempt, dead, with Jenkins' message and without the token
    [record] = await wait_for_deliveries(service, change.event_id, all_in("dead"))
    assert record["attempts"] == 1
    assert "401" in record["last_error"] and "Invalid password/token" in record["last_error"]
    assert "revoked-token-0123456789" not in record["last_error"]
    assert len(posts(jenkins_fake)) == 1


async def test_trigger__proxy_429_then_accepted__waits_at_least_retry_after(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given a reverse proxy answering the next trigger with 429 Retry-After: 2
    await configure(service, jenkins_fake)
    jenkins_fake.fail_next(429, method="POST", retry_after_s=2)
    # When a key changes
    change = await service.set_config(KEY, "h")
    # Then it is delivered on the second attempt, no sooner than 2 s after the first
    [record] = await wait_for_deliveries(service, change.event_id, all_in("delivered", "dead"))
    assert (record["status"], record["attempts"]) == ("delivered", 2)
    first, second = posts(jenkins_fake)
    assert second.received_at - first.received_at >= 2.0
    assert len(jenkins_fake.messages()) == 1


async def test_trigger__503_while_starting__retried_then_delivered(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given Jenkins answering the next two triggers with 503 (getting ready to work)
    await configure(service, jenkins_fake)
    jenkins_fake.fail_next(503, times=2, method="POST")
    # When a key changes
    change = await service.set_config(KEY, "h")
    # Then the third attempt triggers the one build
    [record] = await wait_for_deliveries(service, change.event_id, all_in("delivered", "dead"),
                                         timeout_s=30)
    assert (record["status"], record["attempts"]) == ("delivered", 3)
    assert len(posts(jenkins_fake)) == 3 and len(jenkins_fake.messages()) == 1


async def test_trigger__unknown_job__dead_with_jenkins_message(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given a default_job that does not exist (in a folder that does not either)
    await configure(service, jenkins_fake, default_job="deploy/missing")
    jenkins_fake.add_job("other")
    # When a key changes
    change = await service.set_config(KEY, "h")
    # Then one attempt, dead, naming the job and Jenkins' answer
    [record] = await wait_for_deliveries(service, change.event_id, all_in("dead"))
    assert record["attempts"] == 1
    assert record["last_error"] == ("jenkins answered 404: no job 'deploy/missing' at "
                                    "/job/deploy/job/missing (Not Found)")


async def test_trigger__older_version_replayed_after_newer_triggered__skipped_as_stale(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given version 1's trigger went dead (the job was briefly missing)
    await configure(service, jenkins_fake)
    jenkins_fake.fail_next(404, method="POST")
    first = await service.set_config(KEY, "v1")
    await wait_for_deliveries(service, first.event_id, all_in("dead"))
    # And version 2 was then triggered
    second = await service.set_config(KEY, "v2")
    await wait_for_deliveries(service, second.event_id, all_in("delivered"))
    # When the dead version 1 is replayed
    await service.replay(first.event_id)
    # Then it starts nothing: skipped, and the ledger says it is stale
    [old] = await wait_for_deliveries(service, first.event_id, all_in("skipped"))
    assert old["detail"]["skipped"].endswith(f"stale: version 2 of {KEY} was already triggered")
    assert [m["parameters"]["CONFIG_VALUE"] for m in jenkins_fake.messages()] == ["v2"]


async def test_trigger__answer_lost_to_read_timeout__retry_finds_the_build_no_second_post(
        service: ConfigService, jenkins_fake: FakeJenkins) -> None:
    # Given Jenkins queues the build but answers after the worker's 3 s read timeout
    await configure(service, jenkins_fake)
    jenkins_fake.trigger_delay_s = 4
    # When a key changes
    change = await service.set_config(KEY, "h")
    # Then the retry finds the queued build by its APGCFG_EVENT_ID and posts nothing more
    [record] = await wait_for_deliveries(service, change.event_id, all_in("delivered", "dead"))
    assert (record["status"], record["attempts"]) == ("delivered", 2)
    assert len(posts(jenkins_fake)) == 1 and len(jenkins_fake.messages()) == 1
    assert any(r.path == "/queue/api/json" for r in jenkins_fake.requests)
    # And that one build is followed to its result
    noted = await wait_for_build_note(service, change.event_id)
    assert noted["detail"]["build"]["result"] == "SUCCESS"


async def test_trigger__worker_killed_after_jenkins_accepted__next_worker_adopts_the_build(
        lonely_service: ConfigService, jenkins_fake: FakeJenkins, tmp_path: Path) -> None:
    # Given a worker of our own and a Jenkins that is slow to answer the trigger
    svc = lonely_service
    await svc.set_config("integrations.jenkins", jenkins_fake.config(
        trigger_patterns=["app.*"], poll_interval_s=0.2))
    jenkins_fake.trigger_delay_s = 5
    url = redis_url(RECOVERY_DB)
    first = WorkerProcess(url, tmp_path, extra_env=FAST_RECOVERY)
    second: WorkerProcess | None = None
    try:
        first.wait_ready()
        change = await svc.set_config(KEY, "h")
        # When the worker is SIGKILLed after Jenkins accepted the POST, before the answer
        deadline = time.monotonic() + 15
        while not posts(jenkins_fake) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert len(jenkins_fake.messages()) == 1
        first.kill()
        second = WorkerProcess(url, tmp_path, extra_env=FAST_RECOVERY).wait_ready()
        # Then the redelivered task finds the queued build instead of posting again
        [record] = await wait_for_deliveries(svc, change.event_id, all_in("delivered", "dead"),
                                             timeout_s=40)
        assert record["status"] == "delivered"
        assert len(posts(jenkins_fake)) == 1 and len(jenkins_fake.messages()) == 1
        noted = await wait_for_build_note(svc, change.event_id)
        assert noted["detail"]["build"]["number"] == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()
