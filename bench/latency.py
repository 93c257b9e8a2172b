"""End-to-end latency: set_config → outbox → relay → high queue → real worker → webhook.

One change at a time, with the worker idle at each start. Each sample records, on the shared
wall clock (``time.time()``), when set_config was called and returned, when the relay created
the delivery record, when the loopback Discord received the POST, and when the ledger said
delivered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import settings
from bench.probe import SignallingDiscord
from config_core.service import ConfigService
from tests.integration.workerproc import WorkerProcess

LEDGER_POLL_S = 0.002
"""How often the ledger is read after the webhook call arrived."""

TRIGGERS = {"bench": {"patterns": ["bench.*"], "connectors": ["discord"], "urgency": "high"}}
"""``integrations.notifications``: every ``bench.*`` key goes to Discord on the high queue."""


@dataclass
class Sample:
    """One change's timeline (epoch seconds); None where it never happened in time."""

    key: str
    started: float
    returned: float
    relayed: float | None = None
    received: float | None = None
    delivered: float | None = None


@dataclass
class LatencyResult:
    """Every timed sample, and whether the phase hit its time budget."""

    samples: list[Sample] = field(default_factory=list)
    warmup: int = 0
    stopped_early: bool = False

    def stage_ms(self, stage: str) -> list[float]:
        """Milliseconds from the set_config call to ``stage`` for the samples that reached it."""
        found = [getattr(s, stage) for s in self.samples]
        return [(t - s.started) * 1000 for s, t in zip(self.samples, found, strict=True)
                if t is not None]

    @property
    def lost(self) -> int:
        """Samples whose webhook call never arrived within ``SAMPLE_TIMEOUT_S``."""
        return sum(1 for s in self.samples if s.received is None)


class _Probe:
    def __init__(self, svc: ConfigService, fake: SignallingDiscord, worker: WorkerProcess):
        self.svc, self.fake, self.worker = svc, fake, worker

    async def sample(self, key: str, value: Any) -> Sample:
        if self.worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.worker.proc.returncode}")
        arrival = self.fake.expect(key)
        started = time.time()
        result = await self.svc.set_config(key, value)
        sample = Sample(key, started, time.time())
        deadline = started + settings.SAMPLE_TIMEOUT_S
        try:
            sample.received = await asyncio.wait_for(arrival, settings.SAMPLE_TIMEOUT_S)
        except TimeoutError:
            return sample
        record = await self._delivered(str(result.event_id), deadline)
        if record is not None:
            sample.relayed, sample.delivered = record["created_at"], record["delivered_at"]
        return sample

    async def _delivered(self, event_id: str, deadline: float) -> dict[str, Any] | None:
        while time.time() < deadline:
            for record in await self.svc.get_deliveries(event_id):
                if record["connector"] == "discord" and record["status"] == "delivered":
                    return record
            await asyncio.sleep(LEDGER_POLL_S)
        return None


async def _configure(svc: ConfigService, fake: SignallingDiscord) -> None:
    await svc.set_config("integrations.discord", {"webhook_url": fake.add_webhook()})
    await svc.set_config("integrations.notifications", {"triggers": TRIGGERS})


async def _run_samples(probe: _Probe, count: int) -> LatencyResult:
    result = LatencyResult()
    for i in range(settings.LATENCY_WARMUP):
        await probe.sample(f"bench.warmup.k{i}", i)
        await asyncio.sleep(settings.LATENCY_PAUSE_S)
    result.warmup = settings.LATENCY_WARMUP
    budget_end = time.monotonic() + settings.LATENCY_BUDGET_S
    for i in range(count):
        if time.monotonic() >= budget_end:
            result.stopped_early = True
            break
        result.samples.append(await probe.sample(f"bench.latency.k{i}", i))
        await asyncio.sleep(settings.LATENCY_PAUSE_S)
    return result


async def measure_latency(url: str, samples: int, log_dir: Path) -> LatencyResult:
    """Start a worker and the fake, configure routing, then time ``samples`` changes."""
    fake = SignallingDiscord()
    worker = WorkerProcess(url, log_dir, concurrency=settings.WORKER_CONCURRENCY, prefix="bench")
    try:
        fake.start()
        await asyncio.to_thread(worker.wait_ready)
        async with ConfigService(redis_url=url, environment=settings.LATENCY_ENVIRONMENT,
                                 tenant=settings.TENANT) as svc:
            await _configure(svc, fake)
            return await _run_samples(_Probe(svc, fake, worker), samples)
    finally:
        worker.stop()
        fake.stop()
