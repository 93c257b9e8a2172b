"""Approval workflows: change requests, decisions, conflicts and expiry, on a real Redis."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis

from config_core import ApprovalDenied, ConfigError, ConfigService
from config_core.state import approvals
from config_core.state.events import outbox_key

PLATFORM, DBA, SECURITY = ("platform-team@company.com", "dba-team@company.com",
                           "security-team@company.com")
GUIDE = {
    "required_approvals": {
        "*.database.*": {"approvers": [PLATFORM, DBA], "min_approvals": 2, "timeout": 3600},
        "*.security.*": {"approvers": [SECURITY], "min_approvals": 1, "timeout": 1800},
    },
    "approval_methods": ["email", "slack", "jira"],
}


def outbox_events(raw: redis.Redis, service: ConfigService) -> list[dict[str, Any]]:
    return [json.loads(fields["e"]) for _, fields in raw.xrange(outbox_key(service.namespace))
            if "e" in fields]


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """No inline relay: events stay in the outbox, to be looked at."""
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")


async def configured(service: ConfigService, settings: dict[str, Any] | None = None) -> None:
    await service.set_config("app.database.host", "localhost", changed_by="admin@company.com")
    await service.set_config("integrations.approvals", settings or GUIDE)


async def request_change(service: ConfigService) -> str:
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    assert result.request_id
    return result.request_id


async def test_set_config__guide_settings__accepted_bad_field_named(
        service: ConfigService) -> None:
    # Given the guide's approval settings (and an extra setting) / When set / Then stored
    await service.set_config("integrations.approvals", {**GUIDE, "notes": "kept"})
    assert (await service.get_config("integrations.approvals"))["approval_methods"][0] == "email"
    # And a rule asking more approvals than approvers is refused, naming the field
    bad = {"required_approvals": {"*.db.*": {"approvers": [DBA], "min_approvals": 2,
                                             "timeout": 60}}}
    with pytest.raises(ConfigError, match=r"required_approvals\.\*\.db\.\*\.min_approvals"):
        await service.set_config("integrations.approvals", bad)


async def test_set_config__key_needs_approval__pending_nothing_applied(
        service: ConfigService) -> None:
    # Given the guide's settings and a database key at version 1
    await configured(service)
    # When the key is changed
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")
    # Then a request is pending and the value, version and history are as before
    assert (result.status, result.key, result.version) == (
        "pending_approval", "app.database.host", None)
    assert result.request_id and result.event_id
    assert await service.get_entry("app.database.host") == {
        "key": "app.database.host", "value": "localhost", "version": 1}
    assert len(await service.history("app.database.host")) == 1
    request = await service.approval(result.request_id)
    assert (request["status"], request["base_version"], request["requested_by"]) == (
        "pending", 1, "admin@company.com")
    assert request["approvers"] == [PLATFORM, DBA] and request["min_approvals"] == 2
    # And a key no pattern matches is applied as before
    assert (await service.set_config("app.cache.ttl", 60)).status == "applied"


async def test_set_config__secret_key_needs_approval__requested_event_in_outbox_masked(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a rule on security keys
    await service.set_config("integrations.approvals", GUIDE)
    # When a secret security key is changed
    result = await service.set_config("app.security.api_token", "s3cret-token",
                                      changed_by="dev@company.com")
    # Then approval.requested is in the outbox, its value masked, with who may approve
    [event] = [e for e in outbox_events(raw_redis, service) if e["type"] == "approval.requested"]
    assert event["event_id"] == result.event_id and event["key"] == "app.security.api_token"
    assert "s3cret-token" not in json.dumps(event)
    metadata = event["metadata"]
    assert (metadata["request_id"], metadata["approvers"], metadata["min_approvals"]) == (
        result.request_id, [SECURITY], 1)
    assert metadata["methods"] == ["email", "slack", "jira"] and metadata["expires_at"]
    assert "s3cret-token" not in json.dumps(await service.approval(result.request_id or ""))


async def test_approve__by_requester_or_stranger__refused(service: ConfigService) -> None:
    # Given a pending request by an approver
    await configured(service)
    result = await service.set_config("app.database.host", "x", changed_by=PLATFORM)
    # When its requester or a non-approver approves / Then refused, nothing recorded
    with pytest.raises(ApprovalDenied, match="may not decide"):
        await service.approve(result.request_id or "", approver=PLATFORM)
    with pytest.raises(ApprovalDenied, match="not an approver"):
        await service.approve(result.request_id or "", approver="intern@company.com")
    assert (await service.approval(result.request_id or ""))["decisions"] == []


async def test_approve__same_approver_twice__counted_once(service: ConfigService) -> None:
    # Given a request needing two approvals
    await configured(service)
    request_id = await request_change(service)
    # When one approver approves twice
    await service.approve(request_id, approver=DBA)
    request = await service.approve(request_id, approver=DBA.upper())
    # Then one decision, still pending, nothing applied
    assert request["status"] == "pending" and len(request["decisions"]) == 1
    assert await service.get_config("app.database.host") == "localhost"


async def test_approve__min_approvals_reached__applied_with_changed_event_and_history(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a pending request
    await configured(service)
    request_id = await request_change(service)
    # When both approvers approve
    await service.approve(request_id, approver=DBA)
    request = await service.approve(request_id, approver=PLATFORM)
    # Then the change is applied as the requester's, version 2
    assert (request["status"], request["applied_version"]) == ("approved", 2)
    assert await service.get_config("app.database.host") == "prod-db.internal"
    newest = (await service.history("app.database.host"))[0]
    assert (newest["version"], newest["changed_by"], newest["reason"]) == (
        2, "admin@company.com", "database migration")
    # And config.changed then approval.decided are in the outbox
    events = outbox_events(raw_redis, service)
    changed = [e for e in events if e["type"] == "config.changed" and e["version"] == 2]
    [decided] = [e for e in events if e["type"] == "approval.decided"]
    assert changed[0]["event_id"] == newest["event_id"]
    assert changed[0]["metadata"]["approved_by"] == [DBA, PLATFORM]
    assert (decided["metadata"]["decision"], decided["metadata"]["approved_by"]) == (
        "approved", [DBA, PLATFORM])
    # And the decision names the approval methods, so it reaches them like the request did
    assert decided["metadata"]["methods"] == ["email", "slack", "jira"]
    assert request["decided_event_id"] == decided["event_id"]


async def test_reject__by_approver__rejected_nothing_applied(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a pending request with one approval
    await configured(service)
    request_id = await request_change(service)
    await service.approve(request_id, approver=DBA)
    # When the other approver rejects
    request = await service.reject(request_id, approver=PLATFORM, reason="not this week")
    # Then rejected, value unchanged, approval.decided says so, and no more decisions
    assert request["status"] == "rejected"
    assert await service.get_entry("app.database.host") == {
        "key": "app.database.host", "value": "localhost", "version": 1}
    [decided] = [e for e in outbox_events(raw_redis, service) if e["type"] == "approval.decided"]
    assert (decided["metadata"]["decision"], decided["reason"]) == ("rejected", "not this week")
    with pytest.raises(ConfigError, match="is rejected"):
        await service.approve(request_id, approver=PLATFORM)


async def test_approve__key_changed_meanwhile__conflicted_nothing_overwritten(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a pending request on version 1, then the key changed (rule removed and restored)
    await configured(service)
    request_id = await request_change(service)
    await service.set_config("integrations.approvals", {"required_approvals": {}})
    await service.set_config("app.database.host", "hotfix-db", changed_by="oncall@company.com")
    await service.set_config("integrations.approvals", GUIDE)
    # When both approve
    await service.approve(request_id, approver=DBA)
    request = await service.approve(request_id, approver=PLATFORM)
    # Then conflicted, the later value stands, approval.decided says conflicted
    assert request["status"] == "conflicted" and request["applied_version"] is None
    assert await service.get_entry("app.database.host") == {
        "key": "app.database.host", "value": "hotfix-db", "version": 2}
    [decided] = [e for e in outbox_events(raw_redis, service) if e["type"] == "approval.decided"]
    assert decided["metadata"]["decision"] == "conflicted" and "version 1" in decided["reason"]


async def test_sweep__request_timed_out__expired_once_with_event(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a request with a one-second timeout
    await configured(service, {"required_approvals": {"*.database.*": {
        "approvers": [DBA], "min_approvals": 1, "timeout": 1}}})
    request_id = await request_change(service)
    assert approvals.expire_due(raw_redis, service.namespace) == 0
    # When its time is up and the relay's sweep function runs (twice)
    time.sleep(1.1)
    expired = [approvals.expire_due(raw_redis, service.namespace) for _ in range(2)]
    # Then it expired once, with one approval.decided, and takes no more decisions
    assert expired == [1, 0]
    assert (await service.approval(request_id))["status"] == "expired"
    decided = [e for e in outbox_events(raw_redis, service) if e["type"] == "approval.decided"]
    assert [e["metadata"]["decision"] for e in decided] == ["expired"]
    with pytest.raises(ConfigError, match="is expired"):
        await service.approve(request_id, approver=DBA)
    assert await service.get_config("app.database.host") == "localhost"
    assert raw_redis.zcard(approvals.expiry_key(service.namespace)) == 0


async def test_approvals__read_after_timeout__expired_without_sweep(
        service: ConfigService) -> None:
    # Given a request whose time is up and no sweep
    await configured(service, {"required_approvals": {"*.database.*": {
        "approvers": [DBA], "min_approvals": 1, "timeout": 1}}})
    request_id = await request_change(service)
    await asyncio.sleep(1.1)
    # When requests are listed / Then it is expired
    listed = await service.approvals(status="expired")
    assert [r["request_id"] for r in listed] == [request_id]
    assert await service.approvals(status="pending") == []


async def test_approve__two_approvers_at_once__applied_once(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a request needing two approvals, repeated over several requests
    await configured(service)
    for _ in range(5):
        request_id = await request_change(service)
        before = (await service.get_entry("app.database.host"))["version"]
        # When both approvers approve at the same moment
        await asyncio.gather(service.approve(request_id, approver=DBA),
                             service.approve(request_id, approver=PLATFORM))
        # Then it is applied once: one new version
        request = await service.approval(request_id)
        assert (request["status"], request["applied_version"]) == ("approved", before + 1)
        assert (await service.get_entry("app.database.host"))["version"] == before + 1
        await service.set_config("integrations.approvals", {"required_approvals": {}})
        await service.set_config("app.database.host", "localhost")
        await service.set_config("integrations.approvals", GUIDE)
    decided = [e for e in outbox_events(raw_redis, service) if e["type"] == "approval.decided"]
    assert len(decided) == 5


async def test_set_config_local_only__key_needs_approval__pending_then_applied_silently(
        service: ConfigService) -> None:
    # Given a security rule / When a local-only write is made
    await service.set_config("integrations.approvals", GUIDE)
    result = await service.set_config_local_only("app.security.level", "high",
                                                 changed_by="dev@company.com")
    # Then it waits for approval too, and once approved it is recorded as local only
    assert result.status == "pending_approval"
    await service.approve(result.request_id or "", approver=SECURITY)
    [entry] = await service.history("app.security.level")
    assert entry["local_only"] is True and entry["event_id"] is None


async def test_set_config__same_idempotency_key__one_request(service: ConfigService) -> None:
    await configured(service)
    first, second = [await service.set_config("app.database.host", "x", idempotency_key="k-1")
                     for _ in range(2)]
    assert first == second and len(await service.approvals()) == 1


async def test_approve__caller_metadata__kept_on_the_applied_change(
        service: ConfigService, raw_redis: redis.Redis, quiet: None) -> None:
    # Given a request made with metadata
    await service.set_config("integrations.approvals", GUIDE)
    result = await service.set_config("app.security.level", "high", changed_by="dev@x.com",
                                      metadata={"ticket": "OPS-1"})
    # When approved / Then the requested and the applied events both carry it
    await service.approve(result.request_id or "", approver=SECURITY)
    by_type = {e["type"]: e for e in outbox_events(raw_redis, service)}
    assert by_type["approval.requested"]["metadata"]["ticket"] == "OPS-1"
    assert by_type["config.changed"]["metadata"]["ticket"] == "OPS-1"


async def test_set_config__rules_added_by_another_writer__next_change_waits_for_approval(
        service: ConfigService) -> None:
    # Given a writer that has written a database key (and so read the rules: none)
    await service.set_config("app.database.host", "localhost", changed_by="admin@company.com")
    # When another writer of the same namespace adds the guide's approval rules
    async with ConfigService(redis_url=service.redis_url, environment=service.environment,
                             tenant=service.tenant) as other:
        await other.set_config("integrations.approvals", GUIDE)
    # Then the first writer's next change to the key waits for approval, nothing applied
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com")
    assert result.status == "pending_approval" and result.request_id
    assert await service.get_config("app.database.host") == "localhost"


async def test_set_config__rules_removed_by_another_writer__next_change_applied(
        service: ConfigService) -> None:
    # Given a writer that has seen the guide's approval rules
    await configured(service)
    # When another writer removes them
    async with ConfigService(redis_url=service.redis_url, environment=service.environment,
                             tenant=service.tenant) as other:
        await other.set_config("integrations.approvals", {"required_approvals": {}})
    # Then the first writer's next change to a covered key is applied at once
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com")
    assert result.status == "applied" and result.version == 2
