"""The real ``apgcfg`` command against a real Redis and real workers: status, diff, rollback
and replay as an operator runs them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from config_core import ConfigService
from tests.fakes.discord import FakeDiscord
from tests.integration.conftest import FINISHED, all_in, wait_for_deliveries
from tests.integration.workerproc import ROOT, WorkerProcess

APGCFG = str(Path(sys.executable).parent / "apgcfg")


def apgcfg(service: ConfigService, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``apgcfg`` console script against ``service``'s namespace."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    command = [APGCFG, *args, "--redis-url", service.redis_url, "--tenant", service.tenant,
               "--environment", service.environment]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=90, check=False)


def as_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


async def wait_status(service: ConfigService, ready: Any, attempts: int = 15) -> dict[str, Any]:
    """Run ``apgcfg status --json`` until ``ready(status)``; fail with the last one."""
    status: dict[str, Any] = {}
    for _ in range(attempts):
        status = as_json(apgcfg(service, "status", "--json", "--timeout-s", "1"))
        if ready(status):
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"status never ready: {status}")


async def test_status__high_only_worker__medium_backlog_counted_worker_and_relay_seen(
        lonely_service: ConfigService, discord_fake: FakeDiscord, tmp_path: Path) -> None:
    # Given a worker that consumes the high queue alone (as compose.yaml's worker-high does)
    svc = lonely_service
    await svc.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    worker = WorkerProcess(svc.redis_url, tmp_path, queues="high", prefix="highonly")
    try:
        worker.wait_ready()
        # When three changes routed on medium (the default) are relayed
        for i in range(3):
            await svc.set_config(f"app.k{i}", i)
        status = await wait_status(svc, lambda s: s["queues"]["medium"] == 4 and s["workers"])
        # Then they wait in the medium queue, nothing in high or low, the outbox is drained
        assert status["queues"]["high"] == status["queues"]["low"] == 0
        assert status["outbox"] == 0 and status["open_deliveries"] >= 3
        # And the worker is seen with the queue it consumes, its relay alive
        assert [w["queues"] for w in status["workers"]] == [["high"]]
        assert status["workers"][0]["name"].startswith("highonly-")
        assert any(r["alive"] for r in status["relays"])
        # And the human view says the same
        text = apgcfg(svc, "status").stdout
        assert "high 0  medium 4  low 0" in text and "highonly-" in text  # 3 + the config
    finally:
        worker.stop()


async def test_diff_rollback__through_a_worker__rollback_delivered_as_a_change(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    # Given Discord configured and two versions of a key, each delivered
    await service.set_config("integrations.discord", {"webhook_url": discord_fake.add_webhook()})
    for host in ("old-db.internal", "new-db.internal"):
        result = await service.set_config("app.database.host", host)
        await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    # When diffed and rolled back to version 1 with the real command
    diff = as_json(apgcfg(service, "diff", "app.database.host", "--from", "1", "--json"))
    rollback = as_json(apgcfg(service, "rollback", "app.database.host", "--to", "1",
                              "--by", "ops@company.com", "--json"))
    # Then the diff shows the change, and the rollback is version 3 with version 1's value
    assert diff["changes"] == [{"path": "", "change": "changed", "from": "old-db.internal",
                                "to": "new-db.internal"}]
    assert (rollback["version"], rollback["status"]) == (3, "applied")
    assert await service.get_config("app.database.host") == "old-db.internal"
    # And its event is delivered to Discord like any change
    rows = await wait_for_deliveries(service, rollback["event_id"], all_in("delivered"))
    assert [r["connector"] for r in rows] == ["discord"]
    assert any("old-db.internal" in json.dumps(m) for m in discord_fake.messages())
    # And version 1 and the rollback are the same value
    same = as_json(apgcfg(service, "diff", "app.database.host", "--from", "1", "--to", "3",
                          "--json"))
    assert same["same"] is True and same["changes"] == []


async def test_replay__by_connector_and_window__dead_deliveries_delivered_with_progress(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    # Given Discord's webhook deleted, so that four changes go dead
    url = discord_fake.add_webhook()
    configured = await service.set_config("integrations.discord", {"webhook_url": url})
    await wait_for_deliveries(service, configured.event_id, FINISHED)
    discord_fake.delete_webhook(url)
    events = []
    for i in range(4):
        result = await service.set_config(f"app.flag{i}", True)
        await wait_for_deliveries(service, result.event_id, all_in("dead"))
        events.append(result.event_id)
    dead_table = apgcfg(service, "dead").stdout
    assert dead_table.startswith("EVENT_ID") and all(e in dead_table for e in events)
    # When the webhook is back and the last ten minutes of Discord's dead deliveries replayed
    discord_fake.add_webhook(*url.rsplit("/", 2)[1:])
    done = apgcfg(service, "replay", "--connector", "discord", "--since", "10m", "--progress",
                  "--json")
    # Then all four were requested, with a progress bar on stderr that reached 4/4
    result = as_json(done)
    assert result["requested"] == 4
    assert sorted(d["event_id"] for d in result["deliveries"]) == sorted(events)
    assert "replay [" in done.stderr and "4/4" in done.stderr
    # And each is delivered, and none is dead any more
    for event_id in events:
        rows = await wait_for_deliveries(service, event_id, FINISHED)
        assert [r["status"] for r in rows] == ["delivered"]
    assert as_json(apgcfg(service, "dead", "--json")) == []
    # And a window that ended before they died replays nothing
    until = str(time.time() - 3600)
    assert as_json(apgcfg(service, "replay", "--until", until, "--json"))["requested"] == 0


async def test_exit_codes__real_command__not_found_3_bad_input_2_unreachable_1(
        service: ConfigService) -> None:
    assert apgcfg(service, "get", "app.never.set").returncode == 3
    assert apgcfg(service, "set", "bad key", "1").returncode == 2
    assert apgcfg(service, "diff", "app.x", "--from", "x").returncode == 2  # argparse
    env = {**os.environ}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    down = subprocess.run([APGCFG, "list", "--redis-url", "redis://127.0.0.1:1/0"], env=env,
                          capture_output=True, text=True, timeout=90, check=False)
    assert down.returncode == 1 and down.stderr.count("\n") == 1
