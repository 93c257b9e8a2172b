"""Flower, started for real against a real worker, shows what became of each delivery.

A delivered change is SUCCESS, one waiting to be retried is RETRY with its reason, a dead one
is FAILURE with ``DeliveryDead`` and its reason; no secret shows; the API refuses callers
without credentials. The test also screenshots Flower's task list in headless Chromium
(``APGCFG_UPDATE_SCREENSHOT=1``, ``make screenshot``, writes it to docs/flower-tasks.png).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from config_core import ConfigService
from tests.conftest import redis_url
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.integration.spare_redis import free_port
from tests.integration.workerproc import ROOT, WorkerProcess
from workers.settings import FLOWER_TASKS_COLUMNS

FLOWER_DB = 11
"""A database of this test's own: Flower lists every task its workers ran."""

USER, PASSWORD = "operator", "flower-test-pw"

READY_TIMEOUT_S = 45.0
STATES_TIMEOUT_S = 60.0

SCREENSHOT = ROOT / "docs" / "flower-tasks.png"
"""Written only with APGCFG_UPDATE_SCREENSHOT=1 (``make screenshot``)."""

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars", "--window-size=1700,760",
                  "--virtual-time-budget=8000"]


class FlowerProcess:
    """``celery -A workers flower`` on 127.0.0.1 with basic auth, logging to a file."""

    def __init__(self, broker: str, log_dir: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "flower.log"
        env = {**os.environ, "CONFIG_REDIS_URL": broker, "PYTHONPATH": str(ROOT)}
        env.pop("CELERY_TASK_ALWAYS_EAGER", None)
        command = [sys.executable, "-m", "celery", "-A", "workers", "flower",
                   "--address=127.0.0.1", f"--port={self.port}",
                   f"--basic-auth={USER}:{PASSWORD}",
                   f"--tasks-columns={FLOWER_TASKS_COLUMNS}"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> FlowerProcess:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited: {self.log_path.read_text()}")
            try:
                if requests.get(f"{self.base_url}/healthcheck", timeout=2).text == "OK":
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"flower not ready: {self.log_path.read_text()}")

    def tasks(self) -> dict[str, dict[str, Any]]:
        reply = requests.get(f"{self.base_url}/api/tasks", auth=(USER, PASSWORD), timeout=5)
        reply.raise_for_status()
        return reply.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def flower_stack(tmp_path: Path, redis_server: str) -> Iterator[tuple[str, FlowerProcess]]:
    """An empty database, Flower watching it, then a worker with task events on."""
    url = redis_url(FLOWER_DB)
    redis.Redis.from_url(url).flushdb()
    flower = FlowerProcess(url, tmp_path).wait_ready()
    worker = WorkerProcess(url, tmp_path, prefix="flower",
                           extra_env={"APGCFG_TASK_EVENTS": "1"}).wait_ready()
    try:
        yield url, flower
    finally:
        worker.stop()
        flower.stop()


def task_of(tasks: dict[str, dict[str, Any]], event_id: str, name: str) -> dict[str, Any] | None:
    return next((t for t in tasks.values() if t.get("name") == name
                 and event_id in str(t.get("args"))), None)


async def wait_for_states(flower: FlowerProcess, wanted: dict[tuple[str, str], str],
                          ) -> dict[str, dict[str, Any]]:
    """Poll ``/api/tasks`` until each (event_id, task name) has its state."""
    deadline = time.monotonic() + STATES_TIMEOUT_S
    tasks: dict[str, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        tasks = flower.tasks()
        seen = {key: (task_of(tasks, *key) or {}).get("state") for key in wanted}
        if seen == wanted:
            return tasks
        await asyncio.sleep(0.3)
    raise AssertionError(f"flower states not reached in {STATES_TIMEOUT_S}s: want {wanted}, "
                         f"tasks {tasks}")


def screenshot(url: str, path: Path) -> None:
    """``url`` rendered by headless Chromium into the PNG ``path``."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed; .ci/run installs it (apt-get install chromium)"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--screenshot={path}", url], check=True,
                   capture_output=True, timeout=90)


async def test_flower__success_retry_dead_deliveries__shows_each_state_truthfully(
        flower_stack: tuple[str, FlowerProcess], tenant: str, tmp_path: Path) -> None:
    url, flower = flower_stack
    writers = [ConfigService(redis_url=url, environment=env, tenant=tenant)
               for env in ("production", "staging", "development")]
    ok, retried, dead = writers
    try:
        with FakeSlack() as slack, FakeDiscord() as discord:
            # Given Slack that delivers, Slack that asks us to come back in 5 minutes, and a
            # Discord webhook that was deleted
            slack_ok, slack_busy = slack.add_webhook(), slack.add_webhook()
            gone = discord.add_webhook()
            discord.delete_webhook(gone)
            slack.fail_next(429, times=100, webhook_url=slack_busy, retry_after_s=300)
            await ok.set_config("integrations.slack", {"webhook_url": slack_ok})
            await retried.set_config("integrations.slack", {"webhook_url": slack_busy})
            await dead.set_config("integrations.discord", {"webhook_url": gone})
            # When one change is written in each
            delivered = (await ok.set_config("app.feature.flag", True)).event_id
            waiting = (await retried.set_config("app.database.host", "db-2")).event_id
            died = (await dead.set_config("app.cache.ttl", 60)).event_id
            # Then Flower, asked with credentials, tells each outcome
            tasks = await wait_for_states(flower, {
                (delivered, "workers.deliver.slack"): "SUCCESS",
                (waiting, "workers.deliver.slack"): "RETRY",
                (died, "workers.deliver.discord"): "FAILURE"})
            page = tmp_path / "flower-tasks.png"
            screenshot(f"http://{USER}:{PASSWORD}@127.0.0.1:{flower.port}/tasks", page)
    finally:
        for writer in writers:
            await writer.close()
    success = task_of(tasks, delivered, "workers.deliver.slack")
    retry = task_of(tasks, waiting, "workers.deliver.slack")
    failure = task_of(tasks, died, "workers.deliver.discord")
    assert success and retry and failure
    assert success["result"] == "'delivered'"
    assert "DeliveryRetrying" in retry["exception"] and "429" in retry["exception"]
    assert "DeliveryDead" in failure["exception"] and "Unknown Webhook" in failure["exception"]
    # No webhook secret anywhere Flower shows (arguments, results, exceptions, tracebacks)
    shown = str(flower.tasks())
    for secret_url in (slack_ok, slack_busy, gone):
        assert secret_url.rsplit("/", 1)[-1] not in shown
    # And the task list shows why, in an Exception column beside the state
    page_html = requests.get(flower.base_url + "/tasks", auth=(USER, PASSWORD), timeout=5).text
    assert ">Exception<" in page_html and ">State<" in page_html, page_html[:2000]
    # Without credentials, the API and the pages are refused
    for path in ("/api/tasks", "/api/workers", "/tasks"):
        assert requests.get(flower.base_url + path, timeout=5).status_code == 401
    assert requests.get(flower.base_url + "/api/tasks", auth=(USER, "wrong"),
                        timeout=5).status_code == 401
    # And the screenshot of the task list is a PNG
    assert page.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and page.stat().st_size > 10_000
    if os.environ.get("APGCFG_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(page, SCREENSHOT)
