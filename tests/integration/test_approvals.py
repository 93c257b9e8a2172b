"""Approvals with a real worker: requests announced to Slack, expired by the relay's sweep."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
import redis

from config_core import ConfigService
from config_core.state import approvals
from tests.fakes.slack import FakeSlack
from tests.integration.conftest import FINISHED, settle, wait_for_deliveries

pytestmark = pytest.mark.integration

DBA = "dba-team@company.com"


async def test_approval__nobody_decides__requested_on_slack_then_expired_by_sweep(
        service: ConfigService, integration_redis: str, slack_fake: FakeSlack) -> None:
    # Given Slack routed database keys by a trigger, and a rule with a two-second timeout
    await settle(service, "integrations.slack", {"webhook_url": slack_fake.add_webhook()})
    await settle(service, "integrations.notifications", {"triggers": {"db": {
        "patterns": ["*.database.*"], "connectors": ["slack"], "urgency": "high"}}})
    await service.set_config("integrations.approvals", {"required_approvals": {"*.database.*": {
        "approvers": [DBA], "min_approvals": 1, "timeout": 2}}, "approval_methods": ["slack"]})
    slack_fake.reset()
    # When a database key is changed and nobody reads or decides the request
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="migration")
    assert result.status == "pending_approval" and result.request_id
    # Then approval.requested is delivered to Slack on the high queue
    [record] = await wait_for_deliveries(service, result.event_id or "", FINISHED)
    assert (record["connector"], record["status"], record["urgency"]) == (
        "slack", "delivered", "high")
    assert "Approval Requested" in json.dumps(slack_fake.requests[0].json)
    # And the worker's sweep expires it (read straight from Redis: no eager expiry)
    raw = redis.Redis.from_url(integration_redis, decode_responses=True)
    key = approvals.request_key(service.namespace, result.request_id)
    deadline = time.monotonic() + 20
    while raw.hget(key, "status") == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert raw.hget(key, "status") == "expired"
    decided_id = raw.hget(key, "decided_event_id") or ""
    [decided] = await wait_for_deliveries(service, decided_id, FINISHED)
    assert decided["status"] == "delivered" and len(slack_fake.requests) == 2
    assert await service.get_config("app.database.host", None) is None
    raw.close()
