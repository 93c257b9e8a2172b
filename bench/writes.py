"""Write throughput with no worker running: set_config next to its two baselines.

Every method writes distinct keys with small values. The methods run interleaved in
``ROUNDS`` rounds (a, b, c, d, e, a, b, ...) so that load from other tenants of a shared VM hits
each of them alike; each is timed over batches of ``GATHER_CHUNK`` and stops at its time budget.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench import settings
from bench.baselines import APPLY_QUEUE, BareCelery, RawMulti, RawMultiAsync
from config_core.service import ConfigService

Batch = Callable[[list[str]], Awaitable[None]]

SET_SEQ = "set_config, sequential"
SET_GATHER = f"set_config, gather x{settings.GATHER_CHUNK}"
APPLY = "bare Celery apply_async"
RAW_MULTI = "raw MULTI/EXEC (redis-py)"
RAW_MULTI_ASYNC = "raw MULTI/EXEC (redis.asyncio)"


@dataclass
class Throughput:
    """One write method's result: how many changes in how many seconds."""

    name: str
    done: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    notes: list[str] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)
    """Changes per second of each interleaved round."""

    @property
    def rate(self) -> float:
        """Changes per second over all rounds."""
        return self.done / self.seconds if self.seconds else 0.0

    @property
    def median_rate(self) -> float:
        """Median of the rounds' changes per second (the figure the goals compare)."""
        return statistics.median(self.rounds) if self.rounds else self.rate


@dataclass
class _Method:
    result: Throughput
    batch: Batch
    prefix: str


def _sync(write: Callable[[list[str]], None]) -> Batch:
    async def batch(keys: list[str]) -> None:
        write(keys)
    return batch


def _methods(svc: ConfigService, bare: BareCelery, raw: RawMulti,
             raw_async: RawMultiAsync) -> list[_Method]:
    async def sequential(keys: list[str]) -> None:
        for key in keys:
            await svc.set_config(key, f"value-{key}")

    async def gathered(keys: list[str]) -> None:
        await asyncio.gather(*(svc.set_config(key, f"value-{key}") for key in keys))

    return [_Method(Throughput(SET_SEQ), sequential, "bench.seq"),
            _Method(Throughput(SET_GATHER), gathered, "bench.gather"),
            _Method(Throughput(APPLY), _sync(bare.publish), "bench.apply"),
            _Method(Throughput(RAW_MULTI), _sync(raw.write), "bench.raw"),
            _Method(Throughput(RAW_MULTI_ASYNC), raw_async.write, "bench.rawasync")]


def _chunks(start: int, count: int) -> list[range]:
    stop = start + count
    return [range(i, min(i + settings.GATHER_CHUNK, stop))
            for i in range(start, stop, settings.GATHER_CHUNK)]


async def _timed(method: _Method, indexes: range) -> None:
    result = method.result
    done, seconds = 0, 0.0
    for chunk in _chunks(indexes.start, len(indexes)):
        if result.seconds >= settings.MEASURE_BUDGET_S:
            result.stopped_early = True
            break
        keys = [f"{method.prefix}.k{i}" for i in chunk]
        began = time.perf_counter()
        await method.batch(keys)
        took = time.perf_counter() - began
        result.seconds += took
        result.done += len(keys)
        done, seconds = done + len(keys), seconds + took
    if seconds:
        result.rounds.append(done / seconds)


def _round_sizes(total: int) -> list[int]:
    base, extra = divmod(total, settings.ROUNDS)
    return [base + (1 if i < extra else 0) for i in range(settings.ROUNDS)]


async def measure_writes(url: str, writes: int) -> list[Throughput]:
    """Time ``writes`` changes per method; the outbox grows, as nothing consumes it."""
    svc = ConfigService(redis_url=url, environment=settings.WRITE_ENVIRONMENT,
                        tenant=settings.TENANT)
    await svc.set_config_local_only("integrations.max_backlog", settings.BACKLOG_LIMIT)
    bare, raw, raw_async = BareCelery(url), RawMulti(url), RawMultiAsync(url)
    methods = _methods(svc, bare, raw, raw_async)
    try:
        for method in methods:
            await method.batch([f"{method.prefix}.warmup{i}"
                                for i in range(settings.WARMUP_WRITES)])
        start = 0
        for size in _round_sizes(writes):
            for method in methods:
                await _timed(method, range(start, start + size))
            start += size
    finally:
        purged = bare.close()
        raw.close()
        await raw_async.close()
        await svc.close()
    results = [method.result for method in methods]
    for result in results:
        if result.name == APPLY:
            result.notes.append(f"{purged} messages purged from queue {APPLY_QUEUE!r}")
    return results
