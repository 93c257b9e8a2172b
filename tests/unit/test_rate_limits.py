"""Connector rate limits: the setting, its defaults, and what a worker should apply."""

from __future__ import annotations

import pytest
import redis

from config_core import ConfigError, ConfigService
from connectors import registry
from connectors.settings import rate_per_s
from tests.conftest import UNIT_DB, redis_url
from tests.fakes.slack import FakeSlack
from workers import rate_limits
from workers.celery_app import app


def test_rate_per_s__celery_formats_and_numbers__tasks_per_second() -> None:
    assert [rate_per_s(v) for v in ("1/s", "30/m", "3600/h", 2.5, 0, None)] == [
        1.0, 0.5, 1.0, 2.5, 0.0, 0.0]
    for bad in ("fast", "1/d", "-1/s", "/s", -1, True):
        with pytest.raises(ValueError):
            rate_per_s(bad)


def test_delivery_tasks__registered__carry_their_connectors_default_rate_limit() -> None:
    # Slack posts about one message a second per webhook: its default stays under that
    assert rate_per_s(app.tasks["workers.deliver.slack"].rate_limit) < 1.0
    assert rate_per_s(app.tasks["workers.deliver.discord"].rate_limit) < 2.5
    for name in registry.BUILTIN:
        cls = registry.builtin_class(name)
        assert cls is not None
        assert app.tasks[f"workers.deliver.{name}"].rate_limit == cls.rate_limit
        if cls.receives_events:
            assert cls.rate_limit_source, f"{name} must say which vendor limit its default follows"


async def test_rate_limit_setting__bad_value__config_error_naming_the_field(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    url = slack_fake.add_webhook()
    with pytest.raises(ConfigError, match=r"integrations\.slack\.rate_limit must be a rate"):
        await service.set_config("integrations.slack", {"webhook_url": url, "rate_limit": "fast"})
    await service.set_config("integrations.slack", {"webhook_url": url, "rate_limit": "30/m"})
    with pytest.raises(ConfigError, match=r"integrations\.slack\.rate_limit"):
        await service.set_config("integrations.slack.rate_limit", "10/d")
    with pytest.raises(ConfigError, match=r"integrations\.slack\.rate_limit"):
        await service.set_config("integrations.slack.rate_limit", -1)
    assert await service.get_config("integrations.slack.rate_limit") == "30/m"


async def test_configured__two_namespaces_limit_slack__strictest_applies(
        service: ConfigService, slack_fake: FakeSlack, tenant: str) -> None:
    # Given two namespaces whose Slack configs set different (very low) limits
    other = ConfigService(redis_url=redis_url(UNIT_DB), environment="staging", tenant=tenant)
    try:
        await service.set_config("integrations.slack", {"webhook_url": slack_fake.add_webhook(),
                                                        "rate_limit": "2/h"})
        await other.set_config("integrations.slack", {"webhook_url": slack_fake.add_webhook(),
                                                      "rate_limit": "1/h"})
        # When a worker works out the limits its tasks should have
        client = redis.Redis.from_url(redis_url(UNIT_DB), decode_responses=True)
        wanted = rate_limits.configured(client)
        client.close()
    finally:
        await other.close()
    # Then Slack's is the strictest, and a connector nobody limited keeps its default
    assert wanted["workers.deliver.slack"] == "1/h"
    assert wanted["workers.deliver.gitlab"] == registry.builtin_class("gitlab").rate_limit


def test_strictest__mixed_formats_and_off__lowest_rate() -> None:
    assert rate_limits.strictest(["1/s", "30/m", 0, None]) == "30/m"
    assert rate_limits.strictest([0, None]) is None
    assert rate_limits.same("60/m", "1/s") and rate_limits.same(None, 0)
    assert not rate_limits.same("50/m", "1/s")


def test_slack_fake__documented_rate__second_post_in_a_second_is_429_with_retry_after() -> None:
    import requests
    with FakeSlack(documented_rate=True) as fake:
        url = fake.add_webhook()
        first = requests.post(url, json={"text": "one"}, timeout=5)
        second = requests.post(url, json={"text": "two"}, timeout=5)
    assert (first.status_code, first.text) == (200, "ok")
    assert (second.status_code, second.text) == (429, "rate_limited")
    assert second.headers["Retry-After"] == "1"
    assert fake.statuses() == [200, 429]
