"""Approvals through the CLI (``apgcfg approvals``) and the HTTP API (``/v1/approvals``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from apgcfg.api import create_app
from apgcfg.cli import main
from config_core import ConfigService
from config_core.state import apikeys
from tests.conftest import UNIT_DB, redis_url
from tests.unit.test_approvals import DBA, GUIDE, PLATFORM, SECURITY


def cli(tenant: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main([*args, "--json", "--redis-url", redis_url(UNIT_DB), "--tenant", tenant,
                 "--environment", "production"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_cli_approvals__list_show_approve_reject__json_out(
        eager: None, tenant: str, redis_server: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given the guide's settings and two requests made with `apgcfg set`
    assert cli(tenant, capsys, "set", "integrations.approvals", json.dumps(GUIDE))[0] == 0
    first = cli(tenant, capsys, "set", "app.security.level", "high", "--by", "dev@x.com")[1]
    second = cli(tenant, capsys, "set", "app.database.host", "db2", "--by", "dev@x.com")[1]
    assert first["status"] == "pending_approval" and first["request_id"]
    # When they are listed, shown, approved and rejected
    listed = cli(tenant, capsys, "approvals", "list", "--status", "pending")[1]
    shown = cli(tenant, capsys, "approvals", "show", first["request_id"])[1]
    approved = cli(tenant, capsys, "approvals", "approve", first["request_id"], "--by",
                   SECURITY)[1]
    rejected = cli(tenant, capsys, "approvals", "reject", second["request_id"], "--by", DBA,
                   "--reason", "no")[1]
    # Then each prints the request as JSON
    assert {r["request_id"] for r in listed} == {first["request_id"], second["request_id"]}
    assert shown["key"] == "app.security.level" and shown["status"] == "pending"
    assert approved["status"] == "approved" and rejected["status"] == "rejected"
    assert cli(tenant, capsys, "get", "app.security.level")[1] == "high"
    # And a refusal is one line on stderr, exit 2 (refused input)
    code, _, err = cli(tenant, capsys, "approvals", "approve", second["request_id"], "--by",
                       "intern@x.com")
    assert code == 2 and err.count("\n") == 1
    assert cli(tenant, capsys, "approvals", "approve", second["request_id"])[0] == 2


@pytest.fixture
async def http(service: ConfigService) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API in this process, serving ``service``."""
    app = create_app(service)
    app.state.service = service
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def bearer(service: ConfigService, role: str, owner: str | None) -> dict[str, str]:
    key, _ = await apikeys.create(service.store.redis, service.namespace, role, "t", owner)
    return {"Authorization": f"Bearer {key}"}


async def test_api_approvals__put_then_decide__202_403_and_applied(
        service: ConfigService, http: httpx.AsyncClient) -> None:
    # Given the guide's settings and keys for a writer, an ownerless key and both approvers
    await service.set_config("integrations.approvals", GUIDE)
    writer = await bearer(service, "write", "dev@company.com")
    ownerless, stranger = await bearer(service, "write", None), await bearer(
        service, "read", "intern@company.com")
    dba, platform = await bearer(service, "read", DBA), await bearer(service, "read", PLATFORM)
    # When a database key is put / Then 202 with the request
    put = await http.put("/v1/configs/app.database.host", headers=writer,
                         json={"value": "prod-db", "reason": "migration"})
    assert put.status_code == 202 and put.json()["status"] == "pending_approval"
    request_id = put.json()["request_id"]
    path = f"/v1/approvals/{request_id}"
    # And keys without an owner, or whose owner is no approver, may not decide
    assert (await http.post(f"{path}/approve", headers=ownerless)).status_code == 403
    assert (await http.post(f"{path}/approve", headers=stranger)).status_code == 403
    assert (await http.post(f"{path}/approve", headers=writer)).status_code == 403
    # And both approvers' keys apply it
    assert (await http.post(f"{path}/approve", headers=dba)).json()["status"] == "pending"
    done = await http.post(f"{path}/approve", headers=platform)
    assert done.status_code == 200 and done.json()["status"] == "approved"
    assert await service.get_config("app.database.host") == "prod-db"
    assert (await http.get(path, headers=stranger)).json()["applied_version"] == 1
    listed = await http.get("/v1/approvals", headers=stranger, params={"status": "approved"})
    assert [r["request_id"] for r in listed.json()] == [request_id]
    # And a reject with a reason, an unknown id and a bad status answer as expected
    again = await http.put("/v1/configs/app.database.port", headers=writer, json={"value": 1})
    rejected = await http.post(f"/v1/approvals/{again.json()['request_id']}/reject",
                               headers=dba, json={"reason": "no"})
    assert rejected.json()["decisions"][0]["reason"] == "no"
    assert (await http.get(f"/v1/approvals/{'0' * 32}", headers=dba)).status_code == 404
    assert (await http.get("/v1/approvals", headers=dba,
                           params={"status": "nope"})).status_code == 422
