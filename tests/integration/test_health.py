"""Connector health on real processes: a worker, celery beat's health tick, the Slack fake.

Slack fails ten deliveries in a row: the connector is paused, later changes wait (nothing
reaches the fake, no attempt is counted), health says unhealthy with the error (masked) and
``integration.unhealthy`` is emitted; ``apgcfg connectors resume slack`` sends every waiting
delivery exactly once, in order, and the next tick emits ``integration.recovered``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import ConfigService
from tests.fakes.slack import FakeSlack
from tests.integration.conftest import all_in, wait_for_deliveries
from tests.integration.polling import until_async
from tests.integration.workerproc import ROOT

pytestmark = pytest.mark.integration

TICK_S = "1"
"""APGCFG_HEALTH_CHECK_INTERVAL_S of the beat process under test."""


@pytest.fixture
def beat(integration_redis: str, tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery -A workers beat`` ticking health every second."""
    env = {**os.environ, "CONFIG_REDIS_URL": integration_redis, "PYTHONPATH": str(ROOT),
           "APGCFG_HEALTH_CHECK_INTERVAL_S": TICK_S}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    with open(tmp_path / "beat.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "beat", "--schedule",
             str(tmp_path / "schedule"), "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def emitted(client: redis.Redis, service: ConfigService, kind: str) -> list[dict[str, Any]]:
    keys = client.keys(service.namespace.key("event", "*"))
    found = [json.loads(str(client.get(k))) for k in keys]
    return [e for e in found if e["type"] == kind]


def apgcfg(integration_redis: str, tenant: str, *args: str) -> Any:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("apgcfg")), *args, "--json", "--redis-url",
         integration_redis, "--tenant", tenant, "--environment", "production"],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def test_slack_fails_ten_times__paused_changes_wait__resume_sends_all_once_in_order(
        service: ConfigService, slack_fake: FakeSlack, beat: subprocess.Popen[bytes],
        integration_redis: str, tenant: str) -> None:
    client = redis.Redis.from_url(integration_redis, decode_responses=True)
    # Given Slack, whose webhook answers 404 no_service to the next ten posts
    url = slack_fake.add_webhook()
    secret = url.rsplit("/", 1)[1]
    await service.set_config("integrations.slack", {"webhook_url": url})
    slack_fake.reset()
    slack_fake.fail_next(404, times=10, webhook_url=url)
    # When changes fail, one after the other, until ten deliveries failed (the health
    # events the tick emits are routed to Slack too, and fail like the rest)
    for i in range(10):
        result = await service.set_config(f"app.failing.k{i}", i)
        rows = await wait_for_deliveries(service, result.event_id, all_in(
            "delivered", "dead", "waiting"))
        if rows[0]["status"] == "waiting":
            break
    # Then after exactly ten failures the connector is paused
    assert len(slack_fake.requests) == 10 and slack_fake.messages(url) == []
    listed = apgcfg(integration_redis, tenant, "connectors", "list")
    assert listed[0]["name"] == "slack" and listed[0]["paused"] is True
    assert listed[0]["consecutive_failures"] == 10
    # And integration.unhealthy was emitted once, masked
    (unhealthy,) = emitted(client, service, "integration.unhealthy")
    assert unhealthy["key"] == "integrations.slack" and "no_service" in unhealthy["reason"]
    assert secret not in json.dumps(unhealthy)
    # When three more changes are made
    posts = len(slack_fake.requests)
    later = []
    for i in range(3):
        result = await service.set_config(f"app.later.k{i}", i)
        later.append(result.event_id)
        await wait_for_deliveries(service, result.event_id, all_in("waiting"))
    # Then they wait: nothing reached the fake, no attempt was counted, nothing lost
    await asyncio.sleep(2 * float(TICK_S))  # ticks run meanwhile; none may resume Slack
    assert len(slack_fake.requests) == posts
    for event_id in later:
        (row,) = await service.get_deliveries(event_id)
        assert (row["status"], row["attempts"]) == ("waiting", 0)
    # And health, on demand and as the tick recorded it, says unhealthy with the error, masked
    report = (await service.check_integration_health())["slack"]
    assert report["status"] == "unhealthy" and "no_service" in report["error"]
    assert secret not in json.dumps(report)
    assert client.hget(service.namespace.key("health", "slack"), "status") == "unhealthy"
    # When an operator resumes it
    apgcfg(integration_redis, tenant, "connectors", "resume", "slack")
    # Then every waiting delivery arrives exactly once, in order
    for event_id in later:
        await wait_for_deliveries(service, event_id, all_in("delivered"))
    keys = [m["blocks"][1]["fields"][0]["text"].split("`")[1]
            for m in slack_fake.messages(url)]
    app_keys = [k for k in keys if k.startswith("app.")]
    assert len(app_keys) == len(set(app_keys))
    assert app_keys[-3:] == ["app.later.k0", "app.later.k1", "app.later.k2"]
    for event_id in later:
        (row,) = await service.get_deliveries(event_id)
        assert row["attempts"] == 1
    # And the next tick finds it healthy and emits integration.recovered once
    recovered = await until_async("integration.recovered",
                                  lambda: emitted(client, service, "integration.recovered"), 30)
    assert len(recovered) == 1 and recovered[0]["metadata"]["previous_status"] == "unhealthy"
    client.close()

