"""Latency under backlog: a high change while 10,000 low events wait, against the same
deployment idle.

For each deployment (the recommended one: a worker and relay for ``high`` alone plus one for
``medium,low``; and a single worker for every queue), real workers deliver to a loopback
Discord: ``bench.high.*`` keys on the high queue, ``bench.low.*`` on the low one. First
``--backlog-samples`` high changes one at a time with nothing else waiting (the idle figure),
then as many again while low changes wait, topped up before each sample so that at least
``BACKLOG_LOW_EVENTS`` are undelivered (in the low outbox stream or queued as low tasks).
Goal: p99 under backlog at most ``GOAL_BACKLOG_FACTOR`` times the idle p99.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import settings
from bench.goals import Goal, goal_line
from bench.latency import _Probe
from bench.probe import SignallingDiscord
from bench.report import percentile
from bench.workerside import flush
from config_core.service import ConfigService
from config_core.settings import client_url
from config_core.state import events
from tests.integration.workerproc import WorkerProcess

BACKLOG_LOW_EVENTS = 10_000
"""Low events kept waiting while each high change is timed."""

BACKLOG_SAMPLES, QUICK_BACKLOG_SAMPLES = 100, 30
QUICK_BACKLOG_LOW_EVENTS = 2_000
"""High changes timed per deployment and condition (``--backlog-samples``; ``--quick``)."""

GOAL_BACKLOG_FACTOR = 2.0
"""Goal: p99 of a high change under backlog at most this many times the idle p99."""

TOP_UP_CHUNK = settings.GATHER_CHUNK
"""Concurrent ``set_config`` calls when topping the low backlog up (within the pool)."""

BULK_NICE = 10
"""CPU niceness of the ``medium,low`` worker in the recommended deployment: on one host, the
bulk worker yields the CPU to the high one (docs/operations.md)."""

DEPLOYMENTS: dict[str, list[tuple[str, str, int, int]]] = {
    "recommended": [("high", "high", 1, 0),
                    ("medium,low", "medium,low", settings.WORKER_CONCURRENCY, BULK_NICE)],
    "single worker": [("high,medium,low", "", settings.WORKER_CONCURRENCY, 0)],
}
"""Workers per deployment: (queues, APGCFG_RELAY_URGENCIES, concurrency, niceness)."""

TRIGGERS = {
    "urgent": {"patterns": ["bench.high.*"], "connectors": ["discord"], "urgency": "high"},
    "bulk": {"patterns": ["bench.low.*"], "connectors": ["discord"], "urgency": "low"},
}


@dataclass
class BacklogRun:
    """One deployment's idle and under-backlog samples (ms to the webhook; None = lost)."""

    deployment: str
    idle_ms: list[float | None] = field(default_factory=list)
    backlog_ms: list[float | None] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    """Low events undelivered when each backlog sample started."""

    def stats(self, which: str) -> dict[str, float]:
        values = [v for v in getattr(self, f"{which}_ms") if v is not None]
        return {"p50": percentile(values, 50), "p99": percentile(values, 99), "n": len(values),
                "lost": len(getattr(self, f"{which}_ms")) - len(values)}

    @property
    def factor(self) -> float:
        idle = self.stats("idle")["p99"]
        return self.stats("backlog")["p99"] / idle if idle else math.nan

    @property
    def met(self) -> bool:
        lost = self.stats("idle")["lost"] + self.stats("backlog")["lost"]
        return lost == 0 and self.factor <= GOAL_BACKLOG_FACTOR


async def measure_backlog(url: str, samples: int, log_dir: Path,
                          low_events: int = BACKLOG_LOW_EVENTS) -> list[BacklogRun]:
    """Both deployments, one after the other, each on an emptied database, with
    ``low_events`` low events kept waiting."""
    runs = []
    for deployment, workers in DEPLOYMENTS.items():
        flush(url)
        runs.append(await _run(url, deployment, workers, samples, log_dir, low_events))
    flush(url)
    return runs


async def _run(url: str, deployment: str, spec: list[tuple[str, str, int, int]],
               samples: int, log_dir: Path, low_events: int) -> BacklogRun:
    fake = SignallingDiscord()
    workers = [WorkerProcess(url, log_dir, concurrency=c, prefix="bench-backlog", queues=q,
                             extra_env={"APGCFG_RELAY_URGENCIES": u} if u else None)
               for q, u, c, _ in spec]
    raw = redis.Redis.from_url(client_url(url))
    try:
        fake.start()
        for worker, (*_, nice) in zip(workers, spec, strict=True):
            await asyncio.to_thread(worker.wait_ready)
            if nice:  # the whole group: main process and pool children
                os.setpriority(os.PRIO_PGRP, worker.proc.pid, nice)
        async with ConfigService(redis_url=url, environment="backlog",
                                 tenant=settings.TENANT) as svc:
            await svc.set_config("integrations.discord", {"webhook_url": fake.add_webhook()})
            await svc.set_config("integrations.notifications", {"triggers": TRIGGERS})
            await svc.set_config("integrations.max_backlog", settings.BACKLOG_LIMIT)
            return await _samples(deployment, _Probe(svc, fake, workers[0]), raw, samples,
                                  low_events)
    finally:
        for worker in workers:
            worker.stop()
        fake.stop()
        raw.close()


async def _samples(deployment: str, probe: _Probe, raw: redis.Redis, samples: int,
                   low_events: int) -> BacklogRun:
    run = BacklogRun(deployment)
    for i in range(settings.LATENCY_WARMUP):
        await probe.sample(f"bench.high.warmup{i}", i)
    for i in range(samples):
        run.idle_ms.append(await _timed(probe, f"bench.high.idle{i}"))
    written = 0
    for i in range(samples):
        written = await _top_up(probe.svc, raw, written, low_events)
        await asyncio.sleep(settings.LATENCY_PAUSE_S)
        run.waiting.append(_waiting(raw, probe.svc))
        run.backlog_ms.append(await _timed(probe, f"bench.high.backlog{i}"))
    return run


async def _timed(probe: _Probe, key: str) -> float | None:
    sample = await probe.sample(key, key)
    await asyncio.sleep(settings.LATENCY_PAUSE_S)
    return None if sample.received is None else (sample.received - sample.started) * 1000


def _waiting(raw: redis.Redis, svc: ConfigService) -> int:
    """Low events not delivered yet: in the low outbox stream, or queued as low tasks."""
    stream: Any = raw.xlen(events.outbox_key(svc.namespace, "low"))
    queued: Any = raw.llen("low")
    return int(stream) + int(queued)


async def _top_up(svc: ConfigService, raw: redis.Redis, written: int, low_events: int) -> int:
    """Write low changes until ``low_events`` wait; return how many were written."""
    while (missing := low_events - _waiting(raw, svc)) > 0:
        chunk = min(missing, TOP_UP_CHUNK)
        await asyncio.gather(*(svc.set_config(f"bench.low.k{written + i}", i)
                               for i in range(chunk)))
        written += chunk
    return written


def backlog_text(runs: list[BacklogRun]) -> str:
    lines = [f"  {'deployment':<14} {'idle p50':>9} {'idle p99':>9} {'backlog p50':>12} "
             f"{'backlog p99':>12} {'ratio':>6}  low waiting (min)  lost"]
    for run in runs:
        idle, busy = run.stats("idle"), run.stats("backlog")
        lines.append(
            f"  {run.deployment:<14} {idle['p50']:9.1f} {idle['p99']:9.1f} {busy['p50']:12.1f} "
            f"{busy['p99']:12.1f} {run.factor:5.2f}x  {min(run.waiting, default=0):>17,}  "
            f"{idle['lost'] + busy['lost']:>4}")
    lines += [goal_line(goal) for goal in backlog_goals(runs)]
    return "\n".join(lines)


def backlog_goals(runs: list[BacklogRun]) -> list[Goal]:
    """One goal per deployment: the high change's p99 under backlog within 2x the idle p99."""
    return [Goal(f"latency under backlog: p99 / idle p99 ({run.deployment})", f"{run.factor:.2f}x",
                 f"<= {GOAL_BACKLOG_FACTOR:g}x", run.met,
                 "" if run.met else BACKLOG_LIMITS.get(run.deployment, LOST_LIMIT))
            for run in runs]


BACKLOG_LIMITS = {
    "single worker": "the high task waits for a pool process busy with a low task, and the "
                     "low work competes for the same CPUs (docs/benchmarks.md)",
}
LOST_LIMIT = "a sample was lost or the run was too noisy: see the table above"


def backlog_summary(runs: list[BacklogRun]) -> dict[str, Any]:
    """JSON-ready figures of every deployment."""
    return {run.deployment: {"idle_ms": run.stats("idle"), "backlog_ms": run.stats("backlog"),
                             "min_low_waiting": min(run.waiting, default=0),
                             "factor": None if math.isnan(run.factor) else round(run.factor, 3),
                             "goal_met": run.met}
            for run in runs}


def main() -> None:
    """``python -m bench.backlog [SAMPLES]``: this section of ``make bench`` alone."""
    os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)
    samples = int(sys.argv[1]) if len(sys.argv) > 1 else BACKLOG_SAMPLES
    url = settings.redis_url()
    with tempfile.TemporaryDirectory(prefix="apgcfg-bench-") as log_dir:
        runs = asyncio.run(measure_backlog(url, samples, Path(log_dir)))
    print(backlog_text(runs))


if __name__ == "__main__":
    main()
