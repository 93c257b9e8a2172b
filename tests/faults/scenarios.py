"""The fault scenarios: each writes a burst of changes to Discord and Slack, injects one fault
on real processes, and counts what became of every delivery (see ``harness``)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis

from config_core.state.events import outbox_key
from tests.fakes.blackhole import BlackHole
from tests.faults.harness import Counts, Stack

Scenario = Callable[[Path, int], Awaitable[Counts]]

SETTLE_S = 240.0
"""Longest a scenario waits for its deliveries to end after the fault."""


async def _run(name: str, stack: Stack, changes: int,
               fault: Callable[[Stack], Awaitable[str]]) -> Counts:
    """Start a worker, write the burst while ``fault`` runs, settle, count."""
    async with stack:
        stack.start_worker()
        started = time.monotonic()
        burst = asyncio.create_task(stack.burst(changes))
        note = await fault(stack)
        written = await burst
        rows = await stack.settle(written, SETTLE_S)
        counts = stack.count(name, written, rows, time.monotonic() - started)
        counts.note = note
        discord_latency(counts, rows)
        return counts


async def _when_delivered(stack: Stack, share: float, changes: int) -> None:
    await stack.wait_delivered(int(changes * 2 * share), timeout_s=120)


PROBES = 20
"""Changes to Discord alone written one at a time during a burst, to measure its latency."""


def _probe_figures(counts: Counts, took: list[float]) -> None:
    took = sorted(took)
    counts.figures["probe p50 ms"] = round(statistics.median(took), 1)
    counts.figures["probe max ms"] = round(took[-1], 1)


async def baseline(workdir: Path, changes: int) -> Counts:
    """No fault: the figures the others are compared with (probe latency during the burst)."""
    took: list[float] = []

    async def fault(stack: Stack) -> str:
        took.extend(await stack.probe(PROBES, 0.25))
        return f"no fault; {PROBES} probe changes to Discord alone during the burst"

    counts = await _run("no fault (baseline)", Stack(workdir), changes, fault)
    _probe_figures(counts, took)
    return counts


async def worker_sigkill(workdir: Path, changes: int) -> Counts:
    """The whole worker (main process, relay, pool) is SIGKILLed mid-burst; another starts."""

    async def fault(stack: Stack) -> str:
        await _when_delivered(stack, 0.2, changes)
        stack.workers[0].kill()
        stack.start_worker()
        return "worker SIGKILLed at 20% delivered; a new worker started"

    return await _run("worker SIGKILL", Stack(workdir, discord_delay_s=0.002), changes, fault)


async def pool_child_sigkill(workdir: Path, changes: int) -> Counts:
    """Every pool process is SIGKILLed mid-request; the worker replaces them."""

    async def fault(stack: Stack) -> str:
        await _when_delivered(stack, 0.2, changes)
        for pid in stack.workers[0].pool_pids():
            os.kill(pid, signal.SIGKILL)
        return "all 4 pool processes SIGKILLed at 20% delivered"

    return await _run("pool process SIGKILL", Stack(workdir, discord_delay_s=0.02), changes,
                      fault)


async def broker_outage(workdir: Path, changes: int) -> Counts:
    """The broker (a Redis of its own, no persistence) is down for 10 s mid-burst."""

    async def fault(stack: Stack) -> str:
        await _when_delivered(stack, 0.2, changes)
        assert stack.broker is not None
        stack.broker.stop()
        await asyncio.sleep(10)
        stack.broker.start()
        return "broker stopped 10 s at 20% delivered, restarted empty"

    return await _run("broker outage 10 s", Stack(workdir, separate_broker=True), changes,
                      fault)


async def redis_restart(workdir: Path, changes: int) -> Counts:
    """The one Redis (state and broker, AOF on) restarts mid-burst; writers retry."""
    aof = ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(workdir))

    async def fault(stack: Stack) -> str:
        await _when_delivered(stack, 0.2, changes)
        stack.redis.stop()
        await asyncio.sleep(2)
        stack.redis.start()
        return "Redis (AOF, fsync always) stopped at 20% delivered, back after 2 s"

    return await _run("Redis restart with AOF", Stack(workdir, redis_args=aof), changes, fault)


async def outbox_deleted(workdir: Path, changes: int) -> Counts:
    """An outbox stream and its group vanish (as after a restart that lost them)."""

    async def fault(stack: Stack) -> str:
        await _when_delivered(stack, 0.2, changes)
        client = redis.Redis.from_url(stack.url, decode_responses=True)
        deadline = time.monotonic() + 60
        while client.xlen(outbox_key(stack.svc.namespace)) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # a moment the relay has dispatched all it read
        client.delete(outbox_key(stack.svc.namespace))
        client.close()
        return "the outbox stream (and its group) deleted when drained, mid-burst"

    return await _run("outbox stream deleted", Stack(workdir), changes, fault)


async def vendor_503(workdir: Path, changes: int) -> Counts:
    """Slack answers 503 to everything for 60 s."""

    async def fault(stack: Stack) -> str:
        stack.slack.fail_next(503, times=10**9, retry_after_s=0)
        await asyncio.sleep(60)
        stack.slack.clear_failures()
        return "Slack answered 503 for 60 s from the start"

    env = {"APGCFG_BREAKER_COOLDOWN_S": "10"}
    return await _run("vendor 503 for 60 s", Stack(workdir, worker_env=env), changes, fault)


async def rate_limit_storm(workdir: Path, changes: int) -> Counts:
    """Discord answers 429 (Retry-After 1 s) to a quarter of the burst's requests in a row."""
    storm = max(10, changes // 4)

    async def fault(stack: Stack) -> str:
        stack.discord.fail_next(429, times=storm, retry_after_s=1)
        return f"Discord answered 429, Retry-After 1 s, to the first {storm} requests"

    return await _run("429 storm", Stack(workdir), changes, fault)


async def vendor_never_answers(workdir: Path, changes: int) -> Counts:
    """Slack accepts connections and never answers; Discord's latency is measured (probes
    during the burst, as in the baseline)."""
    took: list[float] = []
    with BlackHole() as hole:
        env = {"APGCFG_BREAKER_COOLDOWN_S": "10"}
        url = f"{hole.base_url}/services/T0/B0/{secrets.token_hex(12)}"
        stack = Stack(workdir, worker_env=env, slack_url=url)

        async def fault(stack: Stack) -> str:
            await stack.svc.set_config("integrations.retries",
                                       {"connectors": {"slack": {"window_s": 60}}})
            took.extend(await stack.probe(PROBES, 0.25))
            return ("Slack never answers (read timeout 3 s; its retry window set to 60 s); "
                    f"{PROBES} probe changes to Discord alone during the burst")

        counts = await _run("vendor never answers", stack, changes, fault)
        counts.figures["slack connections"] = hole.connections
    _probe_figures(counts, took)
    return counts


def discord_latency(counts: Counts, rows: dict[Any, dict[str, Any]]) -> None:
    """p50 / p99 of Discord's routed-to-delivered time, in ms."""
    took = sorted((r["delivered_at"] - r["created_at"]) * 1000 for (_, c), r in rows.items()
                  if c == "discord" and r.get("delivered_at"))
    if took:
        counts.figures["discord p50 ms"] = round(statistics.median(took), 1)
        counts.figures["discord p99 ms"] = round(took[int(len(took) * 0.99) - 1], 1)


ALL: dict[str, Scenario] = {
    "baseline": baseline,
    "worker_sigkill": worker_sigkill,
    "pool_child_sigkill": pool_child_sigkill,
    "broker_outage": broker_outage,
    "redis_restart": redis_restart,
    "outbox_deleted": outbox_deleted,
    "vendor_503": vendor_503,
    "rate_limit_storm": rate_limit_storm,
    "vendor_never_answers": vendor_never_answers,
}
"""Every scenario by name, in the order ``make faults`` runs them."""

QUICK = ("outbox_deleted", "rate_limit_storm", "pool_child_sigkill")
"""Scenarios that take seconds with a small burst: they run in ``make test`` too."""
