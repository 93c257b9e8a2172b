"""The fault suite's stack: a Redis of its own, real workers, Discord and Slack fakes, a writer,
and the count of what became of every (event, connector), made at the fakes.

Every scenario writes changes to two connectors, injects one fault, waits (bounded) until every
delivery is over, and counts: delivered exactly once, dead with a reason, lost (not over in
time, or delivered without reaching the vendor), duplicated (a vendor got it twice), and
secrets seen anywhere they must not be.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery

from config_core import ConfigService, IntegrationError
from config_core.state import ledger
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from tests.integration.spare_redis import SpareRedis
from tests.integration.workerproc import WorkerProcess

SECRET_VALUE = "hunter2-fault-suite-password"
"""Written under secret keys; must never leave the service unmasked."""

FAST = {"APGCFG_VISIBILITY_TIMEOUT_S": "10", "APGCFG_RELAY_CLAIM_IDLE_MS": "2000",
        "APGCFG_TASK_TIME_LIMIT_S": "8", "APGCFG_HTTP_TIMEOUT_S": "2,3",
        "APGCFG_RECONCILE_AFTER_S": "5"}
"""Worker settings that make recovery take seconds."""

KEY_RE = re.compile(r"fault\.k\d{5}(?:\.password)?")
CONNECTORS = ("discord", "slack")
WRITERS = 20
"""Changes written at once."""


@dataclass
class Counts:
    """What became of one scenario's deliveries."""

    scenario: str
    changes: int = 0
    deliveries: int = 0
    delivered: int = 0
    dead: int = 0
    lost: int = 0
    duplicates: int = 0
    secrets: list[str] = field(default_factory=list)
    seconds: float = 0.0
    dead_reasons: Counter[str] = field(default_factory=Counter)
    figures: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    logs: list[str] = field(default_factory=list)
    """The workers' log files (kept in the scenario's directory)."""

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicates == 0 and not self.secrets


class Stack:
    """One scenario's processes; ``async with Stack(...) as stack``."""

    def __init__(self, workdir: Path, *, worker_env: dict[str, str] | None = None,
                 redis_args: tuple[str, ...] = (), separate_broker: bool = False,
                 slack_url: str | None = None, discord_delay_s: float = 0.0) -> None:
        self.workdir = workdir
        self.redis = SpareRedis(*redis_args)
        self.broker = SpareRedis() if separate_broker else None
        self.worker_env = dict(worker_env or {})
        self.discord = FakeDiscord(delay_s=discord_delay_s)
        self.slack = FakeSlack()
        self.slack_url = slack_url
        self.workers: list[WorkerProcess] = []
        self.task_args: list[str] = []
        self._capture_stop = threading.Event()
        self.service: ConfigService | None = None
        self.secrets: list[str] = [SECRET_VALUE]

    @property
    def url(self) -> str:
        return self.redis.url

    @property
    def broker_url(self) -> str:
        return self.broker.url if self.broker else self.redis.url

    async def __aenter__(self) -> Stack:
        self.redis.start()
        if self.broker:
            self.broker.start()
        self.discord.start()
        self.slack.start()
        threading.Thread(target=self._capture_task_args, daemon=True).start()
        self._wait_capturing()
        self.service = ConfigService(redis_url=self.url, environment="faults", tenant="suite")
        await self._configure()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._capture_stop.set()
        for worker in self.workers:
            worker.stop()
        if self.service:
            await self.service.close()
        self.discord.stop()
        self.slack.stop()
        if self.broker:
            self.broker.stop()
        self.redis.stop()

    async def _configure(self) -> None:
        discord_url = self.discord.add_webhook()
        slack_url = self.slack_url or self.slack.add_webhook()
        self.secrets += [discord_url.rsplit("/", 1)[1], slack_url.rsplit("/", 1)[1]]
        svc = self.svc
        await svc.set_config("integrations.notifications", {"triggers": {
            "all": {"patterns": ["fault.*"], "connectors": list(CONNECTORS), "urgency": "medium"},
            "probe": {"patterns": ["probe.*"], "connectors": ["discord"], "urgency": "medium"}}})
        await svc.set_config("integrations.discord", {"webhook_url": discord_url})
        await svc.set_config("integrations.slack", {"webhook_url": slack_url})

    @property
    def svc(self) -> ConfigService:
        assert self.service is not None
        return self.service

    def start_worker(self, **env: str) -> WorkerProcess:
        extra = {**FAST, **self.worker_env, **env}
        if self.broker:
            extra |= {"CELERY_BROKER_URL": self.broker.url,
                      "CELERY_RESULT_BACKEND": self.broker.url}
        worker = WorkerProcess(self.url, self.workdir, extra_env=extra, concurrency=4,
                               prefix="fault")
        self.workers.append(worker)
        return worker.wait_ready()

    # writing ------------------------------------------------------------------------------

    async def burst(self, count: int, start: int = 0) -> dict[str, str]:
        """Write ``count`` changes (every 20th under a secret key); event id → key."""
        written: dict[str, str] = {}
        for first in range(start, start + count, WRITERS):
            keys = [_key(i) for i in range(first, min(first + WRITERS, start + count))]
            ids = await asyncio.gather(*(self.write(key) for key in keys))
            written.update(zip(ids, keys, strict=True))
        return written

    async def write(self, key: str) -> str:
        """One change, retried with its idempotency key while Redis is unreachable."""
        value = SECRET_VALUE if key.endswith(".password") else {"n": key[-5:]}
        deadline = time.monotonic() + 60
        while True:
            try:
                result = await self.svc.set_config(key, value, changed_by="faults@suite",
                                                   idempotency_key=f"w-{key}")
                return str(result.event_id)
            except IntegrationError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def probe(self, count: int, interval_s: float) -> list[float]:
        """Milliseconds from ``set_config`` to Discord for changes routed to Discord alone,
        written one at a time while the scenario runs."""
        took = []
        for i in range(count):
            key = f"probe.k{i:03d}"
            started = time.monotonic()
            await self.svc.set_config(key, i)
            while key not in _discord_keys(self.discord):
                if time.monotonic() - started > 120:
                    raise AssertionError(f"probe {key} not delivered in 120 s")
                await asyncio.sleep(0.005)
            took.append((time.monotonic() - started) * 1000)
            await asyncio.sleep(interval_s)
        return took

    # waiting and counting -------------------------------------------------------------------

    def delivered_count(self) -> int:
        """Messages the fakes accepted so far."""
        return len(self.discord.messages()) + len(self.slack.messages())

    async def wait_delivered(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.delivered_count() < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.delivered_count()} messages in {timeout_s}s")
            await asyncio.sleep(0.05)

    def rows(self, written: dict[str, str]) -> dict[tuple[str, str], dict[str, Any]]:
        """Ledger rows by (event id, connector)."""
        client = redis.Redis.from_url(self.url, decode_responses=True)
        try:
            pipe = client.pipeline(transaction=False)
            for event_id in written:
                pipe.hgetall(ledger.rows_key(self.svc.namespace, event_id))
            stored = pipe.execute()
        finally:
            client.close()
        return {(event_id, row["connector"]): row
                for event_id, hashed in zip(written, stored, strict=True)
                for row in ledger.public_rows(hashed)}

    async def settle(self, written: dict[str, str], timeout_s: float
                     ) -> dict[tuple[str, str], dict[str, Any]]:
        """Wait until every delivery is over (or the time is up); the rows then."""
        deadline = time.monotonic() + timeout_s
        while True:
            rows = self.rows(written)
            over = [r for r in rows.values() if r["status"] in ("delivered", "dead", "skipped")]
            if len(over) == len(written) * len(CONNECTORS):
                return rows
            if time.monotonic() > deadline:
                self.dump_stacks()
                return rows
            await asyncio.sleep(0.5)

    def dump_stacks(self) -> None:
        """Ask each live worker to log every thread's stack (Celery's SIGUSR1 handler)."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGUSR1)
        time.sleep(1)

    def count(self, scenario: str, written: dict[str, str], rows: dict[Any, dict[str, Any]],
              seconds: float) -> Counts:
        """What became of every (event, connector), counted at the fakes."""
        sent = {"discord": _discord_keys(self.discord), "slack": _slack_keys(self.slack)}
        counts = Counts(scenario, changes=len(written), deliveries=len(written) * 2,
                        seconds=round(seconds, 1))
        for event_id, key in written.items():
            for connector in CONNECTORS:
                _tally(counts, rows.get((event_id, connector)), sent[connector][key])
        counts.secrets = self.scan(rows)
        counts.figures["task args scanned"] = len(self.task_args)
        counts.logs = [str(worker.log_path) for worker in self.workers]
        return counts

    # secrets ---------------------------------------------------------------------------------

    def scan(self, rows: dict[Any, dict[str, Any]]) -> list[str]:
        """Where a secret showed up: vendor requests, worker logs, ledger rows, task args."""
        places = {
            "vendor request": [r.body.decode(errors="replace") + json.dumps(r.headers)
                               for fake in (self.discord, self.slack) for r in fake.requests],
            "worker log": [worker.log() for worker in self.workers],
            "ledger row": [json.dumps(row) for row in rows.values()],
            "task argument": list(self.task_args),
        }
        return sorted({f"{secret[:6]}… in a {place}" for place, texts in places.items()
                       for text in texts for secret in self.secrets if secret in text})

    def _wait_capturing(self, timeout_s: float = 15.0) -> None:
        """Block until the event receiver is subscribed: events published before that are gone,
        and the scan would miss the tasks they describe."""
        client = redis.Redis.from_url(self.broker_url)
        deadline = time.monotonic() + timeout_s
        try:
            while client.pubsub_numpat() + len(client.pubsub_channels()) == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"task event receiver not subscribed in {timeout_s} s")
                time.sleep(0.05)
        finally:
            client.close()

    def _capture_task_args(self) -> None:
        """Record every task's arguments as Flower sees them (task-received events)."""
        app = Celery(broker=self.broker_url, set_as_current=False)
        while not self._capture_stop.is_set():
            try:
                with app.connection() as conn:
                    receiver = app.events.Receiver(conn, handlers={
                        "task-received": lambda e: self.task_args.append(
                            f"{e.get('args')} {e.get('kwargs')}")})
                    for _ in receiver.itercapture(limit=None, timeout=1, wakeup=False):
                        if self._capture_stop.is_set():
                            return
            except Exception:  # noqa: BLE001 - the broker is down in some scenarios
                self._capture_stop.wait(0.5)


def _key(index: int) -> str:
    key = f"fault.k{index:05d}"
    return f"{key}.password" if index % 20 == 19 else key


def _tally(counts: Counts, row: dict[str, Any] | None, sent: int) -> None:
    if sent > 1:
        counts.duplicates += 1
    if row is None or row["status"] not in ("delivered", "dead"):
        counts.lost += 1
    elif row["status"] == "delivered":
        counts.delivered += 1
        counts.lost += sent == 0
    elif row["last_error"]:
        counts.dead += 1
        counts.dead_reasons[_reason(row["last_error"])] += 1
    else:
        counts.lost += 1  # dead without a reason counts as lost


def _reason(error: str) -> str:
    return error.split(":")[0][:60]


def _discord_keys(fake: FakeDiscord) -> Counter[str]:
    return Counter(f["value"] for m in fake.messages() for f in m["embeds"][0]["fields"]
                   if f["name"] == "Key")


def _slack_keys(fake: FakeSlack) -> Counter[str]:
    return Counter(match for m in fake.messages()
                   for match in set(KEY_RE.findall(str(m.get("text", "")))))
