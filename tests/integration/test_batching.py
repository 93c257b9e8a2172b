"""Digests and timed flushes through a real worker: buffers, claims and chords on Redis."""

from __future__ import annotations

import time

import pytest

from config_core import ConfigService
from tests.fakes.slack import FakeSlack
from tests.integration.conftest import all_in, wait_for_deliveries

pytestmark = pytest.mark.integration


async def configure(service: ConfigService, slack: FakeSlack, size: int, timeout_s: int) -> str:
    url = slack.add_webhook()
    await service.set_config("integrations.batching",
                             {"batch_size": size, "batch_timeout": timeout_s})
    setup = await service.set_config("integrations.slack", {"webhook_url": url})
    # the set-up change itself waits for its digest window; let it go out first
    await wait_for_deliveries(service, setup.event_id, all_in("delivered"), timeout_s + 20)
    slack.reset()
    return url


async def test_digest__50_changes_in_5_seconds__reach_slack_as_one_message(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given digests of up to 50 changes within 5 s
    url = await configure(service, slack_fake, size=50, timeout_s=5)
    # When 50 changes are made within 5 seconds
    started = time.monotonic()
    ids = [(await service.set_config(f"app.flag{i}", i % 2 == 0, changed_by="ops")).event_id
           for i in range(50)]
    assert time.monotonic() - started < 5
    # Then Slack gets exactly one message listing all 50
    for event_id in ids:
        await wait_for_deliveries(service, event_id, all_in("delivered"), 30)
    [digest] = slack_fake.messages(url)
    assert "50 Configuration Changes" in digest["text"]
    assert all(f"app.flag{i}:" in str(digest["blocks"]) for i in range(50))


async def test_digest__fewer_than_batch_size__flushed_when_timeout_passes(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    url = await configure(service, slack_fake, size=50, timeout_s=2)
    first = time.monotonic()
    ids = [(await service.set_config(f"app.k{i}", i)).event_id for i in range(3)]
    for event_id in ids:
        await wait_for_deliveries(service, event_id, all_in("delivered"), 20)
    waited = time.monotonic() - first
    [digest] = slack_fake.messages(url)
    assert "3 Configuration Changes" in digest["text"] and waited >= 1.5
