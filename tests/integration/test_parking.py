"""A wait longer than a Celery countdown may be is parked in Redis, then published when due."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from config_core import ConfigService
from config_core.state.parking import PARKED_KEY
from tests.conftest import redis_url
from tests.fakes.discord import FakeDiscord
from tests.integration.conftest import (
    FAST_RECOVERY,
    RECOVERY_DB,
    all_in,
    wait_for_deliveries,
)
from tests.integration.workerproc import WorkerProcess

pytestmark = pytest.mark.integration


async def test_retry_after_longer_than_countdown_limit__parked_then_delivered_when_due(
        lonely_service: ConfigService, discord_fake: FakeDiscord, tmp_path: Path) -> None:
    # Given a worker whose visibility timeout is 10 s (so countdowns stop at 5 s)
    svc = lonely_service
    url = discord_fake.add_webhook()
    await svc.set_config_local_only("integrations.discord", {"webhook_url": url})
    worker = WorkerProcess(redis_url(RECOVERY_DB), tmp_path, extra_env=FAST_RECOVERY)
    try:
        worker.wait_ready()
        # When Discord answers 429 with Retry-After: 8
        discord_fake.fail_next(429, webhook_url=url, method="POST", retry_after_s=8)
        result = await svc.set_config("app.x", 1)
        # Then the delivery is parked (not held as a countdown) ...
        retrying = await wait_for_deliveries(svc, result.event_id, all_in("retrying"))
        assert retrying[0]["next_attempt_at"] - retrying[0]["updated_at"] >= 8
        raw = redis.Redis.from_url(redis_url(RECOVERY_DB), decode_responses=True)
        parked = [json.loads(m) for m in raw.zrange(PARKED_KEY, 0, -1)]
        assert [p["args"][1:] for p in parked] == [[result.event_id, "discord"]]
        # ... and delivered once due, no sooner than Retry-After
        records = await wait_for_deliveries(svc, result.event_id, all_in("delivered"), 40)
        assert records[0]["attempts"] == 2
        posts = [r.received_at for r in discord_fake.requests if r.method == "POST"]
        assert posts[1] - posts[0] >= 8
        assert raw.zcard(PARKED_KEY) == 0
    finally:
        worker.stop()
