"""Parked deliveries: taken once when due, and taken again if the taker died."""

from __future__ import annotations

import time

import pytest
import redis

from config_core.state import parking
from config_core.state.parking import PARKED_KEY
from tests.conftest import redis_url

PARKING_DB = 10


@pytest.fixture
def parked_redis(redis_server: str) -> redis.Redis:
    client = redis.Redis.from_url(redis_url(PARKING_DB), decode_responses=True)
    client.delete(PARKED_KEY)
    return client


def test_take_due__not_yet_due__nothing(parked_redis: redis.Redis) -> None:
    parking.park(parked_redis, "workers.deliver.slack", ["t:e", "ev", "slack"], {}, wait_s=60)
    assert parking.take_due(parked_redis) == []


def test_take_due__due__taken_once_then_leased(parked_redis: redis.Redis,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a parked task that is due
    parking.park(parked_redis, "workers.deliver.slack", ["t:e", "ev", "slack"],
                 {"urgency": "low"}, wait_s=0)
    # When two relays look for due work
    first, second = parking.take_due(parked_redis), parking.take_due(parked_redis)
    # Then only one gets it
    assert [(i["task"], i["args"], i["kwargs"]) for i in first] == [
        ("workers.deliver.slack", ["t:e", "ev", "slack"], {"urgency": "low"})]
    assert second == []
    # And if the taker died before publishing, it is due again after the lease
    monkeypatch.setattr(time, "time", lambda: 10**10)
    assert len(parking.take_due(parked_redis)) == 1
    parking.done(parked_redis, first[0]["member"])
    assert parked_redis.zcard(PARKED_KEY) == 0
