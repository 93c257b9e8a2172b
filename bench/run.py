"""``python -m bench.run``: write throughput and delivery latency, side by side in one run.

Uses a dedicated Redis database (``redis://127.0.0.1:6379/11``, or ``APGCFG_BENCH_REDIS``),
which it FLUSHDBs at the start and between the two phases.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import redis

from bench import backlog, report, settings
from bench.facts import machine_facts
from bench.latency import LatencyResult, measure_latency
from bench.splunk import measure_splunk, splunk_text
from bench.writes import Throughput, measure_writes
from config_core.errors import ApgConfigError
from config_core.settings import client_url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--writes", type=_positive_int, metavar="N",
                        help=f"changes per write method (default {settings.WRITES})")
    parser.add_argument("--latency-samples", type=_positive_int, metavar="M",
                        help=f"changes timed end to end (default {settings.LATENCY_SAMPLES})")
    parser.add_argument("--backlog-samples", type=_positive_int, metavar="K",
                        help="high changes timed idle and under backlog, per deployment "
                             f"(default {backlog.BACKLOG_SAMPLES})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: N={settings.QUICK_WRITES}, "
                             f"M={settings.QUICK_LATENCY_SAMPLES}")
    parser.add_argument("--json", action="store_true",
                        help="also print the results as one JSON document")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _flush(url: str) -> None:
    client = redis.Redis.from_url(client_url(url))
    try:
        client.flushdb()
    finally:
        client.close()


async def _measure(url: str, writes: int, samples: int, log_dir: Path,
                   splunk_counts: tuple[int, int], backlog_samples: int,
                   ) -> tuple[list[Throughput], LatencyResult, list[backlog.BacklogRun]]:
    print(f"\n== 1. write throughput: {writes} changes per method, no worker running ==",
          flush=True)
    throughput = await measure_writes(url, writes)
    print(report.writes_text(throughput), flush=True)
    _flush(url)  # the unconsumed outbox must not reach the worker started next
    print(f"\n== 2. latency: {samples} changes one at a time through a real worker "
          f"(-c {settings.WORKER_CONCURRENCY}) to a loopback Discord ==", flush=True)
    latency = await measure_latency(url, samples, log_dir)
    print(report.latency_text(latency), flush=True)
    _flush(url)
    batched, unbatched = splunk_counts
    print(f"\n== 3. Splunk HEC: {batched} changes batched by 100, {unbatched} sent one "
          "request each, through a real worker ==", flush=True)
    runs = await measure_splunk(url, batched, unbatched, log_dir)
    print(splunk_text(runs), flush=True)
    print(f"\n== 4. latency under backlog: a high change while {backlog.BACKLOG_LOW_EVENTS:,} "
          f"low events wait, {backlog_samples} samples idle and as many under backlog ==",
          flush=True)
    backlog_runs = await backlog.measure_backlog(url, backlog_samples, log_dir)
    print(backlog.backlog_text(backlog_runs), flush=True)
    return throughput, latency, backlog_runs


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    writes = args.writes or (settings.QUICK_WRITES if args.quick else settings.WRITES)
    samples = args.latency_samples or (
        settings.QUICK_LATENCY_SAMPLES if args.quick else settings.LATENCY_SAMPLES)
    os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)  # deliveries must go through the worker
    url = settings.redis_url()
    try:
        _flush(url)
        facts = machine_facts(url)
        print("== machine ==\n" + report.facts_text(facts), flush=True)
        with tempfile.TemporaryDirectory(prefix="apgcfg-bench-") as log_dir:
            splunk_counts = ((1000, 200) if args.quick else
                             (settings.SPLUNK_BATCHED_EVENTS, settings.SPLUNK_UNBATCHED_EVENTS))
            backlog_samples = args.backlog_samples or (
                backlog.QUICK_BACKLOG_SAMPLES if args.quick else backlog.BACKLOG_SAMPLES)
            throughput, latency, backlog_runs = asyncio.run(_measure(
                url, writes, samples, Path(log_dir), splunk_counts, backlog_samples))
    except (RuntimeError, redis.RedisError, ApgConfigError) as exc:
        print(f"\nbench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    load_1m, load_5m, _ = os.getloadavg()
    print(f"\n  load average at the end: {load_1m:.2f} / {load_5m:.2f} (1 / 5 min); "
          f"{facts['cpu_count']} CPUs")
    if args.json:
        data = report.summary(facts, throughput, writes, latency)
        data["latency_under_backlog"] = backlog.backlog_summary(backlog_runs)
        print("\n" + json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
