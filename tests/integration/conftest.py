"""Integration fixtures: a real Redis, real worker subprocesses, loopback vendor fakes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from config_core import ConfigService
from tests.conftest import INTEGRATION_DB, redis_url
from tests.fakes.fixtures import discord_fake, slack_fake  # noqa: F401
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

RECOVERY_DB = 12
"""A database no session worker reads: tests there start and kill workers of their own."""

FAST_RECOVERY = {"APGCFG_VISIBILITY_TIMEOUT_S": "10", "APGCFG_RELAY_CLAIM_IDLE_MS": "2000",
                 "APGCFG_TASK_TIME_LIMIT_S": "8", "APGCFG_HTTP_TIMEOUT_S": "2,3",
                 "APGCFG_RECONCILE_AFTER_S": "3"}
"""Worker settings that make recovery take seconds instead of minutes."""


@pytest.fixture(scope="session")
def integration_redis(redis_server: str) -> str:
    """The integration database, emptied once per run (queues and outboxes of old runs)."""
    url = redis_url(INTEGRATION_DB)
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="session")
def worker(integration_redis: str, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[WorkerProcess]:
    """One real worker for the session (relay + deliveries), on the integration database."""
    proc = WorkerProcess(integration_redis, tmp_path_factory.mktemp("worker")).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture
async def service(integration_redis: str, tenant: str, worker: WorkerProcess,
                  ) -> AsyncIterator[ConfigService]:
    """A writer in its own namespace; the session worker delivers its events."""
    svc = ConfigService(redis_url=integration_redis, environment="production", tenant=tenant)
    yield svc
    await svc.close()


@pytest.fixture
async def lonely_service(redis_server: str, tenant: str) -> AsyncIterator[ConfigService]:
    """A writer on a database no other worker reads; emptied first."""
    url = redis_url(RECOVERY_DB)
    redis.Redis.from_url(url).flushdb()
    svc = ConfigService(redis_url=url, environment="production", tenant=tenant)
    yield svc
    await svc.close()


async def wait_for_deliveries(service: ConfigService, event_id: str,
                              done: Callable[[list[dict[str, Any]]], bool],
                              timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Poll the ledger until ``done(records)``; fail with what it holds."""
    deadline = time.monotonic() + timeout_s
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = await service.get_deliveries(event_id)
        if records and done(records):
            return records
        await asyncio.sleep(0.05)
    raise AssertionError(f"deliveries of {event_id} not done in {timeout_s}s: {records}")


def all_in(*statuses: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``done`` predicate: every record has one of ``statuses``."""
    return lambda records: all(r["status"] in statuses for r in records)


FINISHED = all_in("delivered", "dead", "skipped")
"""Every delivery of the event is over, one way or the other."""


async def settle(service: ConfigService, key: str, value: object) -> list[dict[str, Any]]:
    """Set a key and wait until its own deliveries are over (so a fake can be reset after).

    Returns the event's ledger rows; empty when the change was routed nowhere.
    """
    result = await service.set_config(key, value)
    for _ in range(100):
        if await service.get_deliveries(result.event_id):
            return await wait_for_deliveries(service, result.event_id, FINISHED)
        await asyncio.sleep(0.02)
    return []


def worker_dir(tmp_path: Path) -> Path:
    path = tmp_path / "workers"
    path.mkdir(exist_ok=True)
    return path
