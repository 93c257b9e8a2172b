"""A flush that claimed a batch and died before posting loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from config_core import ConfigService
from config_core.state import buffers
from tests.conftest import redis_url
from tests.fakes.splunk import FakeSplunk
from tests.integration.conftest import FAST_RECOVERY, RECOVERY_DB
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration

LEASE_S = 4


async def test_batch_claimed_then_flush_died__sweeper_posts_it_once(
        lonely_service: ConfigService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    svc = lonely_service
    raw = redis.Redis.from_url(redis_url(RECOVERY_DB), decode_responses=True)
    worker = WorkerProcess(redis_url(RECOVERY_DB), tmp_path,
                           extra_env={**FAST_RECOVERY, "APGCFG_BATCH_LEASE_S": str(LEASE_S)})
    with FakeSplunk() as fake:
        try:
            worker.wait_ready()
            # Given Splunk at batch size 10 with a long interval, and 25 changes
            await svc.set_config("integrations.notifications", {"triggers": {
                "logs": {"patterns": ["app.*"], "connectors": ["splunk"], "urgency": "low"}}})
            await svc.set_config("integrations.splunk",
                                 fake.config(batch_size=10, flush_interval=120))
            ids = [(await svc.set_config(f"app.k{i}", i)).event_id for i in range(25)]
            fake.wait_for_messages(20, timeout_s=30)  # two full batches went out
            await wait_until(lambda: raw.llen(buffers.buffer_key(svc.namespace, "splunk")) == 5)
            # When a flush claims the last five and dies before posting them
            monkeypatch.setattr(buffers, "LEASE_S", LEASE_S)
            claimed = buffers.claim(raw, svc.namespace, "splunk", force=True)
            assert claimed["status"] == "batch" and len(fake.messages()) == 20
            # Then once the lease runs out the worker's sweep posts that batch, once
            fake.wait_for_messages(25, timeout_s=LEASE_S + 30)
            await asyncio.sleep(2)  # room for a duplicate post, were there one
            keys = [m["event"]["config_key"] for m in fake.messages()]
            assert Counter(keys) == Counter(f"app.k{i}" for i in range(25))
            statuses = {(await svc.get_deliveries(e))[0]["status"] for e in ids}
            assert statuses == {"delivered"}
            assert "running batch" in worker.log()
        finally:
            worker.stop()


async def wait_until(check: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
