"""Splunk HEC throughput: batched (batch_size 100) against one request per event, one run.

Both modes go through the same real worker and loopback HEC fake; each uses its own
namespace. Events/s is measured from the first set_config to the last event indexed.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path

from bench import settings
from bench.goals import Goal, at_least, goal_line
from config_core.service import ConfigService
from tests.fakes.splunk import FakeSplunk
from tests.integration.workerproc import WorkerProcess

TRIGGERS = {"bench": {"patterns": ["bench.*"], "connectors": ["splunk"], "urgency": "low"}}


@dataclass
class SplunkRun:
    """One mode's figures."""

    mode: str
    batch_size: int
    events: int
    requests: int
    seconds: float
    indexed: int

    @property
    def events_per_s(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0


async def measure_splunk(url: str, batched: int, unbatched: int, log_dir: Path
                         ) -> list[SplunkRun]:
    """Run both modes side by side on one worker; always stop the worker and the fake."""
    worker = WorkerProcess(url, log_dir, concurrency=settings.WORKER_CONCURRENCY,
                           prefix="bench-splunk")
    try:
        with FakeSplunk() as fake:
            await asyncio.to_thread(worker.wait_ready)
            return [await _run(url, fake, "batched", 100, batched),
                    await _run(url, fake, "one request per event", 1, unbatched)]
    finally:
        worker.stop()


async def _run(url: str, fake: FakeSplunk, mode: str, batch_size: int, events: int
               ) -> SplunkRun:
    svc = ConfigService(redis_url=url, environment="bench", tenant=f"splunk{batch_size}")
    try:
        await svc.set_config("integrations.notifications", {"triggers": TRIGGERS})
        await svc.set_config("integrations.splunk",
                             fake.config(batch_size=batch_size, flush_interval=1))
        fake.reset()
        started = time.monotonic()
        for i in range(events):
            await svc.set_config(f"bench.k{i}", i)
        indexed = await _wait_indexed(fake, events)
        return SplunkRun(mode, batch_size, events, len(fake.event_posts()),
                         time.monotonic() - started, indexed)
    finally:
        await svc.close()


async def _wait_indexed(fake: FakeSplunk, events: int) -> int:
    deadline = time.monotonic() + settings.SPLUNK_TIMEOUT_S
    while time.monotonic() < deadline and len(fake.messages()) < events:
        await asyncio.sleep(0.01)
    return len(fake.messages())


def splunk_text(runs: list[SplunkRun]) -> str:
    """The Splunk table and the batched/unbatched ratio."""
    lines = [f"{'mode':<24} {'batch':>5} {'events':>7} {'indexed':>7} {'requests':>8} "
             f"{'seconds':>7} {'events/s':>9}", "-" * 74]
    for run in runs:
        lines.append(f"{run.mode:<24} {run.batch_size:>5} {run.events:>7} {run.indexed:>7} "
                     f"{run.requests:>8} {run.seconds:>7.2f} {run.events_per_s:>9,.0f}")
    lines.append("")
    lines.extend(goal_line(g) for g in splunk_goals(runs))
    return "\n".join(lines)


def splunk_goals(runs: list[SplunkRun]) -> list[Goal]:
    batched, single = runs
    ratio = batched.events_per_s / single.events_per_s if single.events_per_s else 0.0
    return [at_least("Splunk: batched / one request per event", ratio,
                     settings.GOAL_SPLUNK_RATIO, digits=1)]
