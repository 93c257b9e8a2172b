"""Performance events: set_config, dispatch and delivery timings reach New Relic in batches."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from config_core import ConfigService
from config_core.state.samples import samples_key
from tests.fakes.new_relic import FakeNewRelic
from workers import performance


@pytest.fixture
def new_relic() -> Iterator[FakeNewRelic]:
    with FakeNewRelic() as fake:
        yield fake


async def test_performance__new_relic_configured__timings_sent_in_one_batch(
        service: ConfigService, raw_redis: redis.Redis, new_relic: FakeNewRelic) -> None:
    # Given New Relic configured (it receives every change, so it is timed too)
    await service.set_config("integrations.newrelic", {
        "account_id": new_relic.account_id, "api_key": new_relic.api_key,
        "base_url": new_relic.base_url})
    # When keys change
    for i in range(5):
        await service.set_config(f"app.k{i}", i)
    assert raw_redis.llen(samples_key(service.namespace)) >= 15
    sent = performance.flush(raw_redis)
    # Then one flush sent every timing in one request, none dropped by New Relic
    perf = [e for e in new_relic.messages() if e["eventType"] == "ConfigurationPerformance"]
    assert sent >= 15 and len(perf) >= 15 and new_relic.dropped == []
    assert {e["operation"] for e in perf} == {"set_config", "dispatch", "delivery"}
    assert all(e["durationMs"] >= 0 for e in perf)
    assert {e["configKey"] for e in perf} >= {f"app.k{i}" for i in range(5)}
    assert len([b for b in new_relic.batches() if b[0]["eventType"] ==
                "ConfigurationPerformance"]) == 1
    assert raw_redis.llen(samples_key(service.namespace)) == 0


async def test_performance__new_relic_down__samples_kept_for_next_flush(
        service: ConfigService, raw_redis: redis.Redis, new_relic: FakeNewRelic) -> None:
    await service.set_config("integrations.newrelic", {
        "account_id": new_relic.account_id, "api_key": new_relic.api_key,
        "base_url": new_relic.base_url})
    await service.set_config("app.k", 1)
    waiting = raw_redis.llen(samples_key(service.namespace))
    new_relic.fail_next(503)
    performance.flush(raw_redis)
    assert raw_redis.llen(samples_key(service.namespace)) == waiting


async def test_performance__no_new_relic__nothing_recorded(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    await service.set_config("app.k", 1)
    assert raw_redis.llen(samples_key(service.namespace)) == 0
