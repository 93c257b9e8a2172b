"""The worker side: throughput against Celery's own, memory under a burst, fan-out.

Every measurement fills its queue first, with no worker running, then starts one real
``celery -A ... worker`` and times it from the first item it finished to the last, on the
worker's side (task, fake or ledger timestamps): the writer's speed and the worker's start-up
are not in the figures.

- throughput: changes routed to a loopback Discord webhook (relay, delivery task, POST, ledger)
  against no-op tasks on a worker with the same settings (``bench.noop``), alternated;
- memory: the worker's RSS (main process and pool children) when a burst's deliveries pass the
  halfway mark and the end;
- fan-out: changes routed to Splunk, New Relic and a Slack digest, until the ledger says every
  one of them delivered.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import settings
from bench.noop import NoopPublisher
from config_core.service import ConfigService
from config_core.settings import client_url
from config_core.state import ledger
from config_core.state.keys import Namespace
from tests.fakes.discord import FakeDiscord
from tests.fakes.new_relic import FakeNewRelic
from tests.fakes.slack import FakeSlack
from tests.fakes.splunk import FakeSplunk
from tests.integration.workerproc import WorkerProcess

POLL_S = 0.05
"""How often progress is read while a worker runs."""

DIGEST_COUNT = re.compile(r"(\d+) Configuration Changes")


@dataclass
class Rate:
    """``items`` finished in ``seconds`` (first to last finished)."""

    items: int
    seconds: float
    expected: int
    cpu_s: float = 0.0
    """CPU seconds the worker (main process and pool) used while it worked through them."""

    @property
    def cpu_ms_per_item(self) -> float:
        return self.cpu_s * 1000 / self.items if self.items else float("nan")

    @property
    def per_s(self) -> float:
        return (self.items - 1) / self.seconds if self.seconds > 0 and self.items > 1 else 0.0

    @property
    def complete(self) -> bool:
        return self.items >= self.expected


@dataclass
class ThroughputResult:
    """Alternated runs: deliveries to a webhook and no-op tasks, same worker settings."""

    deliveries: list[Rate] = field(default_factory=list)
    noop: list[Rate] = field(default_factory=list)

    @property
    def delivery_median(self) -> float:
        return statistics.median(r.per_s for r in self.deliveries) if self.deliveries else 0.0

    @property
    def noop_median(self) -> float:
        return statistics.median(r.per_s for r in self.noop) if self.noop else 0.0

    @property
    def ratio(self) -> float:
        return self.delivery_median / self.noop_median if self.noop_median else 0.0


@dataclass
class MemoryResult:
    """RSS (KiB) of the worker (main process + pool children) at each mark of a burst."""

    marks: list[tuple[int, int]] = field(default_factory=list)
    burst: Rate | None = None

    @property
    def growth(self) -> float:
        """Relative RSS growth from the first mark to the last (NaN when a mark is missing)."""
        if len(self.marks) < 2 or not self.marks[0][1]:
            return float("nan")
        return (self.marks[-1][1] - self.marks[0][1]) / self.marks[0][1]


@dataclass
class FanoutRun:
    """One fan-out run: ``events`` changes, each to three connectors."""

    events: int
    delivered_rows: int
    seconds: float
    requests: dict[str, int]
    cpu_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def complete(self) -> bool:
        return self.delivered_rows >= self.events * len(FANOUT_CONNECTORS)


@dataclass
class FanoutResult:
    runs: list[FanoutRun] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(r.events_per_s for r in self.runs) if self.runs else 0.0


FANOUT_CONNECTORS = ("splunk", "newrelic", "slack")


# helpers ---------------------------------------------------------------------------------------

def flush(url: str) -> None:
    client = redis.Redis.from_url(client_url(url))
    try:
        client.flushdb()
    finally:
        client.close()


def cpu_s(worker: WorkerProcess) -> float:
    """CPU seconds (user + system) used so far by the worker's main process and pool."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in [worker.proc.pid, *worker.pool_pids()]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def rss_kib(worker: WorkerProcess) -> int:
    """Resident memory of the worker's main process and its pool children, KiB."""
    total = 0
    for pid in [worker.proc.pid, *worker.pool_pids()]:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), "VmRSS: 0 kB")
        total += int(line.split()[1])
    return total


async def _prefill(svc: ConfigService, count: int, prefix: str) -> list[str]:
    """Write ``count`` changes, 50 at a time, with no worker running; their event ids."""
    await svc.set_config_local_only("integrations.max_backlog", settings.BACKLOG_LIMIT)
    ids: list[str] = []
    for start in range(0, count, settings.GATHER_CHUNK):
        results = await asyncio.gather(*(svc.set_config(f"{prefix}.k{i}", i) for i in
                                         range(start, min(start + settings.GATHER_CHUNK, count))))
        ids.extend(str(r.event_id) for r in results)
    return ids


async def _run_worker(url: str, log_dir: Path, prefix: str, done: Callable[[], Awaitable[bool]],
                      *, app: str = "workers", on_poll: Callable[[WorkerProcess], None]
                      | None = None) -> float:
    """Start a worker, poll ``done`` until true or the time budget ends; stop the worker.
    Returns the CPU seconds the worker used after it was ready."""
    worker = WorkerProcess(url, log_dir, concurrency=settings.WORKER_CONCURRENCY, prefix=prefix,
                           app=app)
    try:
        await asyncio.to_thread(worker.wait_ready)
        ready_cpu = cpu_s(worker)
        deadline = time.monotonic() + settings.WORKER_PHASE_BUDGET_S
        while time.monotonic() < deadline:
            if worker.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.proc.returncode}:\n"
                                   f"{worker.log()[-3000:]}")
            if on_poll is not None:
                on_poll(worker)
            if await done():
                break
            await asyncio.sleep(POLL_S)
        return cpu_s(worker) - ready_cpu
    finally:
        await asyncio.to_thread(worker.stop)


def _posts(fake: Any) -> list[Any]:
    return [r for r in fake.requests if r.method == "POST"]


# throughput ------------------------------------------------------------------------------------

async def noop_run(url: str, count: int, log_dir: Path) -> Rate:
    """``count`` no-op tasks queued, then run by a worker with the delivery worker's settings."""
    flush(url)
    publisher = NoopPublisher(url)
    try:
        await asyncio.to_thread(publisher.publish, count)

        async def done() -> bool:
            return (await asyncio.to_thread(publisher.progress))[0] >= count

        used = await _run_worker(url, log_dir, "bench-noop", done, app="bench.noop")
        ran, first, last = publisher.progress()
    finally:
        publisher.close()
    return Rate(ran, (last - first) if first and last else 0.0, count, used)


async def delivery_run(url: str, count: int, log_dir: Path, fake: FakeDiscord,
                       on_poll: Callable[[WorkerProcess, int], None] | None = None) -> Rate:
    """``count`` changes routed to a loopback Discord webhook, then delivered by a worker."""
    flush(url)
    fake.reset()
    async with ConfigService(redis_url=url, environment=settings.THROUGHPUT_ENVIRONMENT,
                             tenant=settings.TENANT) as svc:
        await svc.set_config("integrations.discord", {"webhook_url": fake.add_webhook()})
        await svc.set_config("integrations.notifications", {"triggers": {"bench": {
            "patterns": ["bench.*"], "connectors": ["discord"], "urgency": "medium"}}})
        await _prefill(svc, count, "bench.throughput")

    seen = [0]

    def poll(worker: WorkerProcess) -> None:
        seen[0] = len(_posts(fake))
        if on_poll is not None:
            on_poll(worker, seen[0])

    async def done() -> bool:
        return seen[0] >= count

    used = await _run_worker(url, log_dir, "bench-throughput", done, on_poll=poll)
    received = sorted(r.received_at for r in _posts(fake))
    return Rate(len(received), received[-1] - received[0] if received else 0.0, count, used)


async def measure_throughput(url: str, count: int, runs: int, log_dir: Path
                             ) -> ThroughputResult:
    """``runs`` delivery runs and ``runs`` no-op runs, alternated."""
    result = ThroughputResult()
    with FakeDiscord() as fake:
        for _ in range(runs):
            result.deliveries.append(await delivery_run(url, count, log_dir, fake))
            result.noop.append(await noop_run(url, count, log_dir))
    return result


# memory ----------------------------------------------------------------------------------------

async def measure_memory(url: str, marks: tuple[int, int], log_dir: Path) -> MemoryResult:
    """One burst of ``marks[-1]`` deliveries; the worker's RSS as each mark is passed."""
    result = MemoryResult()
    pending = list(marks)

    def poll(worker: WorkerProcess, delivered: int) -> None:
        while pending and delivered >= pending[0]:
            result.marks.append((pending.pop(0), rss_kib(worker)))

    with FakeDiscord() as fake:
        result.burst = await delivery_run(url, marks[-1], log_dir, fake, poll)
    return result


# fan-out ---------------------------------------------------------------------------------------

async def fanout_run(url: str, count: int, log_dir: Path,
                     on_poll: Callable[[WorkerProcess], None] | None = None) -> FanoutRun:
    """``count`` changes to Splunk (HEC batches), New Relic and a Slack digest, all batched by
    ``FANOUT_BATCH``; timed from the relay's first ledger record to the last delivery."""
    flush(url)
    with FakeSplunk() as splunk, FakeNewRelic() as newrelic, FakeSlack() as slack:
        async with ConfigService(redis_url=url, environment=settings.FANOUT_ENVIRONMENT,
                                 tenant=settings.TENANT) as svc:
            await _configure_fanout(svc, splunk, newrelic, slack)
            ids = await _prefill(svc, count, "bench.fanout")
            ns = svc.namespace
            probe = redis.Redis.from_url(client_url(url), decode_responses=True)
            try:
                async def done() -> bool:
                    if (len(splunk.messages()) < count or len(newrelic.messages()) < count
                            or _digested(slack) < count):
                        return False
                    rows = await asyncio.to_thread(_ledger_rows, probe, ns, ids)
                    return sum(r.status == ledger.Status.DELIVERED for r in rows) >= len(rows)

                used = await _run_worker(url, log_dir, "bench-fanout", done, on_poll=on_poll)
                rows = await asyncio.to_thread(_ledger_rows, probe, ns, ids)
            finally:
                probe.close()
        delivered = [r for r in rows if r.status == ledger.Status.DELIVERED]
        started = min((r.created_at for r in rows), default=0.0)
        ended = max((r.delivered_at or 0.0 for r in delivered), default=0.0)
        requests = {"splunk": len(splunk.event_posts()), "newrelic": len(_posts(newrelic)),
                    "slack": len(_posts(slack))}
    return FanoutRun(count, len(delivered), max(0.0, ended - started), requests, used)


async def _configure_fanout(svc: ConfigService, splunk: FakeSplunk, newrelic: FakeNewRelic,
                            slack: FakeSlack) -> None:
    size = settings.FANOUT_BATCH
    await svc.set_config("integrations.batching", {"batch_size": size, "batch_timeout": 1})
    await svc.set_config("integrations.splunk", splunk.config(batch_size=size, flush_interval=1))
    await svc.set_config("integrations.newrelic", {
        "account_id": newrelic.account_id, "api_key": newrelic.api_key,
        "base_url": newrelic.base_url})
    await svc.set_config("integrations.slack", {"webhook_url": slack.add_webhook()})
    await svc.set_config("integrations.notifications", {"triggers": {"bench": {
        "patterns": ["bench.*"], "connectors": list(FANOUT_CONNECTORS), "urgency": "low"}}})


def _digested(slack: FakeSlack) -> int:
    """Changes listed by the Slack digests received so far."""
    total = 0
    for message in slack.messages():
        found = DIGEST_COUNT.search(str(message.get("text", "")))
        total += int(found.group(1)) if found else 1
    return total


def _ledger_rows(client: redis.Redis, ns: Namespace, ids: list[str]) -> list[ledger.LedgerRow]:
    pipe = client.pipeline(transaction=False)
    for event_id in ids:
        pipe.hgetall(ledger.rows_key(ns, event_id))
    return [row for stored in pipe.execute() for row in ledger.rows(stored)]


async def measure_fanout(url: str, count: int, runs: int, log_dir: Path) -> FanoutResult:
    result = FanoutResult()
    for _ in range(runs):
        result.runs.append(await fanout_run(url, count, log_dir))
    return result
