"""Eager-mode fixtures for the unit layer: deliveries run inline in the writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis

from config_core import ConfigService
from tests.conftest import UNIT_DB, redis_url


@pytest.fixture(scope="session", autouse=True)
def fresh_unit_database(redis_server: str) -> None:
    """Start each run on an empty unit database (namespaces of old runs only slow sweeps)."""
    redis.Redis.from_url(redis_url(UNIT_DB)).flushdb()


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run delivery tasks inline (CELERY_TASK_ALWAYS_EAGER=1), as `make test` does."""
    from workers import app

    monkeypatch.setenv("CELERY_TASK_ALWAYS_EAGER", "1")
    monkeypatch.setenv("CONFIG_REDIS_URL", redis_url(UNIT_DB))
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    yield


@pytest.fixture
async def service(redis_server: str, tenant: str, eager: None) -> AsyncIterator[ConfigService]:
    """A ConfigService on the unit-test Redis database, in a namespace of its own."""
    svc = ConfigService(redis_url=redis_url(UNIT_DB), environment="production", tenant=tenant)
    yield svc
    await svc.close()


@pytest.fixture
def raw_redis(redis_server: str) -> Iterator[redis.Redis]:
    """A plain client of the unit-test database, to look at what was (not) written."""
    client = redis.Redis.from_url(redis_url(UNIT_DB), decode_responses=True)
    yield client
    client.close()
