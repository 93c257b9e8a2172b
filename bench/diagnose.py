"""``python -m bench.diagnose``: where one sequential ``set_config`` spends its time.

Each line is microseconds per call, averaged over ``--calls`` calls on the bench database
(FLUSHDB'd first). To isolate the service's own Python, one measurement replaces the store's
script call by a stub in this process only; the arguments it captured, one set per call (each
with its own key and idempotency key, so the script does a whole write, never the early answer
of a repeated one), are then sent with plain EVALSHA through ``redis.asyncio`` and through the
sync client. ``--profile`` adds a cProfile of
the stubbed path (the service's Python without any Redis I/O).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio as aioredis

from bench import settings
from config_core.service import ConfigService
from config_core.settings import client_url
from config_core.state.values import WRITE_SCRIPT

CALLS = 3000
PROFILE_LINES = 15


async def _per_call_us(calls: int, step: Callable[[int], Awaitable[Any]]) -> float:
    began = time.perf_counter()
    for i in range(calls):
        await step(i)
    return (time.perf_counter() - began) / calls * 1e6


def _evalsha_server_us(client: redis.Redis) -> tuple[int, int]:
    stats: Any = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


class _Captured:
    """Stands in for the store's registered script: records each call's arguments, writes
    nothing."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    async def __call__(self, args: list[Any]) -> list[Any]:
        self.calls.append([0, *args])
        return ["ok", 1]


async def decompose(url: str, calls: int, profile: bool) -> list[tuple[str, float]]:
    sync = redis.Redis.from_url(client_url(url), decode_responses=True)
    asyn = aioredis.Redis.from_url(client_url(url), decode_responses=True)
    svc = ConfigService(redis_url=url, environment="diagnose", tenant=settings.TENANT)
    await svc.set_config_local_only("integrations.max_backlog", settings.BACKLOG_LIMIT)
    rows: list[tuple[str, float]] = []
    try:
        await _per_call_us(50, lambda i: svc.set_config(f"warm.k{i}", f"value-{i}"))
        before = _evalsha_server_us(sync)
        rows.append(("set_config, full", await _per_call_us(
            calls, lambda i: svc.set_config(f"full.k{i}", f"value-{i}"))))
        after = _evalsha_server_us(sync)
        rows.append(("  of which Redis runs the Lua script (server side)",
                     (after[1] - before[1]) / max(1, after[0] - before[0])))
        real, captured = svc.store._run_write, _Captured()
        svc.store._run_write = captured
        stubbed = await _per_call_us(calls, lambda i: svc.set_config(f"stub.k{i}", f"v{i}"))
        rows.append(("set_config, script call stubbed (service Python only)", stubbed))
        if profile:
            await _print_profile(svc, calls)
        svc.store._run_write = real
        rows.extend(await _client_rows(sync, asyn, captured, calls))
    finally:
        sync.close()
        await asyn.aclose()
        await svc.close()
    return rows


async def _client_rows(sync: redis.Redis, asyn: aioredis.Redis, captured: _Captured,
                       calls: int) -> list[tuple[str, float]]:
    sha = str(sync.script_load(WRITE_SCRIPT))
    replayed = captured.calls[:calls]
    packer = asyn.connection_pool.make_connection()
    began = time.perf_counter()
    for call in replayed:
        packer.pack_command("EVALSHA", sha, *call)
    pack_us = (time.perf_counter() - began) / len(replayed) * 1e6
    half = len(replayed) // 2

    async def sync_eval(i: int) -> None:
        sync.evalsha(sha, *replayed[half + i])

    async def sync_ping(_: int) -> None:
        sync.ping()

    before = _evalsha_server_us(sync)
    async_us = await _per_call_us(half, lambda i: asyn.evalsha(sha, *replayed[i]))
    after = _evalsha_server_us(sync)
    return [
        (f"EVALSHA, the captured {2 + len(replayed[0])} arguments, redis.asyncio", async_us),
        ("  of which Redis runs the Lua script (server side)",
         (after[1] - before[1]) / max(1, after[0] - before[0])),
        ("  of which redis.asyncio packs the command (pure Python)", pack_us),
        ("EVALSHA, the captured arguments, sync redis-py",
         await _per_call_us(len(replayed) - half, sync_eval)),
        ("PING, redis.asyncio (client round-trip floor)",
         await _per_call_us(calls, lambda _: asyn.ping())),
        ("PING, sync redis-py", await _per_call_us(calls, sync_ping)),
    ]


async def _print_profile(svc: ConfigService, calls: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(calls):
        await svc.set_config(f"prof.k{i}", f"value-{i}")
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(PROFILE_LINES)
    print(out.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diagnose", description=__doc__)
    parser.add_argument("--calls", type=int, default=CALLS, help=f"default {CALLS}")
    parser.add_argument("--profile", action="store_true", help="cProfile the stubbed path")
    args = parser.parse_args(argv)
    url = settings.redis_url()
    redis.Redis.from_url(client_url(url)).flushdb()
    rows = asyncio.run(decompose(url, max(1, args.calls), args.profile))
    width = max(len(name) for name, _ in rows)
    print(f"{'per sequential call':<{width}}  µs")
    for name, value in rows:
        print(f"{name:<{width}}  {value:6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
