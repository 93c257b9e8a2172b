"""Connector rate limits applied by Celery in a real worker (``workers.rate_limits``)."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import pytest

from config_core import ConfigService
from tests.conftest import redis_url
from tests.fakes.slack import FakeSlack
from tests.integration.conftest import RECOVERY_DB, worker_dir
from tests.integration.workerproc import WorkerProcess

KEY_RE = re.compile(r"app\.burst\d+\b")

SYNC_S = "1"
"""The worker compares the configured limits with its tasks' every second here."""


def wait_for_log(worker: WorkerProcess, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in worker.log():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the worker's log after {timeout_s}s:\n{worker.log()}")


async def test_slack_rate_limit_setting__changed__worker_applies_it(
        lonely_service: ConfigService, tmp_path: Path) -> None:
    # Given a worker with rate limits on, and Slack configured with its default
    worker = WorkerProcess(redis_url(RECOVERY_DB), worker_dir(tmp_path), rate_limits=True,
                           extra_env={"APGCFG_RATE_LIMIT_SYNC_S": SYNC_S}).wait_ready()
    try:
        with FakeSlack() as fake:
            await lonely_service.set_config("integrations.slack",
                                            {"webhook_url": fake.add_webhook()})
            # When an operator sets integrations.slack.rate_limit
            await lonely_service.set_config("integrations.slack.rate_limit", "30/m")
            # Then the worker applies it to the Slack delivery task through Celery
            wait_for_log(worker, "New rate limit for tasks of type workers.deliver.slack: 30/m")
            # And turning it off (0) is applied too
            await lonely_service.set_config("integrations.slack.rate_limit", 0)
            wait_for_log(worker, "Rate limits disabled for tasks of type workers.deliver.slack")
    finally:
        worker.stop()


@pytest.mark.load
@pytest.mark.timeout(900)
async def test_burst_of_200_changes__slack_at_its_documented_rate__no_429(
        lonely_service: ConfigService, tmp_path: Path) -> None:
    # Given a Slack that allows one post per webhook per second (429 + Retry-After beyond),
    # and a worker with the connectors' default rate limits
    worker = WorkerProcess(redis_url(RECOVERY_DB), worker_dir(tmp_path), rate_limits=True,
                           concurrency=2).wait_ready()
    try:
        with FakeSlack(documented_rate=True) as fake:
            await lonely_service.set_config("integrations.slack",
                                            {"webhook_url": fake.add_webhook()})
            # When 200 changes are written at once
            for i in range(200):
                await lonely_service.set_config(f"app.burst{i}", i)
            # Then every one reaches Slack exactly once (after the config change's own
            # message), and Slack never answered 429
            messages = fake.wait_for_messages(201, timeout_s=600)
            keys = Counter(match.group(0) for match in (KEY_RE.search(m["text"]) for m in messages)
                           if match)
            assert fake.statuses().count(429) == 0, Counter(fake.statuses())
            assert len(messages) == 201 and len(keys) == 200 and set(keys.values()) == {1}
    finally:
        worker.stop()
