"""What a delivery task tells Celery (and so Flower): RETRY with the reason, FAILURE when dead."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery import signals

from config_core import ConfigService
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from workers import settings as celery_settings
from workers.errors import DeliveryDead, DeliveryRetrying


@pytest.fixture
def task_signals() -> Iterator[list[tuple[str, str, Any]]]:
    """(signal, task name, exception or result) of every delivery task, in order."""
    seen: list[tuple[str, str, Any]] = []

    def on_retry(sender: Any = None, request: Any = None, reason: Any = None, **_: Any) -> None:
        seen.append(("retry", request.task, getattr(reason, "exc", reason)))

    def on_failure(sender: Any = None, exception: Any = None, **_: Any) -> None:
        seen.append(("failure", sender.name, exception))

    def on_success(sender: Any = None, result: Any = None, **_: Any) -> None:
        seen.append(("success", sender.name, result))

    handlers = [(signals.task_retry, on_retry), (signals.task_failure, on_failure),
                (signals.task_success, on_success)]
    for signal, handler in handlers:
        signal.connect(handler, weak=False)
    yield seen
    for signal, handler in handlers:
        signal.disconnect(handler)


async def test_deliver__webhook_404__task_fails_with_delivery_dead_without_the_url(
        service: ConfigService, discord_fake: FakeDiscord,
        task_signals: list[tuple[str, str, Any]]) -> None:
    # Given a Discord webhook that was deleted
    url = discord_fake.add_webhook()
    await service.set_config("integrations.discord", {"webhook_url": url})
    discord_fake.delete_webhook(url)
    task_signals.clear()
    # When a change is delivered
    await service.set_config("app.x", 1)
    # Then the task failed with DeliveryDead naming the vendor's reason, never the URL
    [(kind, name, exc)] = [s for s in task_signals if s[1] == "workers.deliver.discord"]
    assert (kind, name, type(exc)) == ("failure", "workers.deliver.discord", DeliveryDead)
    assert "Unknown Webhook" in str(exc) and str(exc).startswith("discord: ")
    assert url not in str(exc) and url.rsplit("/", 1)[-1] not in str(exc)


async def test_deliver__503_then_ok__task_retried_with_reason_then_succeeds(
        service: ConfigService, slack_fake: FakeSlack,
        task_signals: list[tuple[str, str, Any]]) -> None:
    # Given a Slack webhook that answers 503 once
    url = slack_fake.add_webhook()
    await service.set_config("integrations.slack", {"webhook_url": url})
    slack_fake.fail_next(503)
    task_signals.clear()
    # When a change is delivered
    await service.set_config("app.x", 1)
    # Then the task went RETRY with a DeliveryRetrying saying why, then SUCCESS "delivered"
    mine = [s for s in task_signals if s[1] == "workers.deliver.slack"]
    assert [(kind, type(value)) for kind, _, value in mine] == [
        ("retry", DeliveryRetrying), ("success", str)]
    assert "503" in str(mine[0][2]) and url not in str(mine[0][2])
    assert mine[1][2] == "delivered"


def test_beat_schedule__housekeeping__no_task_more_often_than_every_30_s() -> None:
    # Parked tasks are released by the relay's sweep, not by a task every few seconds
    intervals = {name: float(entry["schedule"])
                 for name, entry in celery_settings.beat_schedule.items()}
    assert intervals and min(intervals.values()) >= 30.0
    tasks = {entry["task"] for entry in celery_settings.beat_schedule.values()}
    assert "workers.release_parked" not in tasks


def test_delivery_errors__pickled__same_type_and_text() -> None:
    import pickle
    for cls in (DeliveryDead, DeliveryRetrying):
        exc = cls("slack", "HTTP 503: rollup_error")
        again = pickle.loads(pickle.dumps(exc))
        assert (type(again), str(again)) == (cls, "slack: HTTP 503: rollup_error")
