"""``python -m bench.run``: the writer, idle latency, latency under backlog, Splunk batching,
worker throughput, memory and fan-out, side by side in one run, each figure with its goal
(MET / NOT MET).

Uses a dedicated Redis database (``redis://127.0.0.1:6379/11``, or ``APGCFG_BENCH_REDIS``),
which it FLUSHDBs at the start, between phases and before every worker run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis

from bench import backlog, report, settings, workerside
from bench.facts import machine_facts
from bench.goals import Goal, summary_text
from bench.latency import LatencyResult, measure_latency
from bench.splunk import measure_splunk, splunk_goals, splunk_text
from bench.workerside import flush
from bench.writes import Throughput, measure_writes
from config_core.errors import ApgConfigError

LOOPBACK = "127.0.0.0/8,::1/128"
"""Vendor calls are allowed to loopback only in the benchmark: its vendors are loopback fakes."""


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
                        help="smoke run: small sizes in every phase (about a minute)")
    parser.add_argument("--json", action="store_true",
                        help="also print the results as one JSON document")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass
class Sizes:
    """How much each phase does (``--quick``: a smoke run)."""

    writes: int
    samples: int
    splunk: tuple[int, int]
    throughput: int
    throughput_runs: int
    memory_marks: tuple[int, int]
    fanout: int
    fanout_runs: int
    backlog_samples: int
    backlog_low_events: int


def sizes(args: argparse.Namespace) -> Sizes:
    quick = args.quick
    return Sizes(
        writes=args.writes or (settings.QUICK_WRITES if quick else settings.WRITES),
        samples=args.latency_samples or (
            settings.QUICK_LATENCY_SAMPLES if quick else settings.LATENCY_SAMPLES),
        splunk=(1000, 200) if quick else (settings.SPLUNK_BATCHED_EVENTS,
                                          settings.SPLUNK_UNBATCHED_EVENTS),
        throughput=(settings.QUICK_THROUGHPUT_EVENTS if quick else settings.THROUGHPUT_EVENTS),
        throughput_runs=settings.QUICK_THROUGHPUT_RUNS if quick else settings.THROUGHPUT_RUNS,
        memory_marks=settings.QUICK_MEMORY_MARKS if quick else settings.MEMORY_MARKS,
        fanout=settings.QUICK_FANOUT_EVENTS if quick else settings.FANOUT_EVENTS,
        fanout_runs=settings.QUICK_FANOUT_RUNS if quick else settings.FANOUT_RUNS,
        backlog_samples=args.backlog_samples or (
            backlog.QUICK_BACKLOG_SAMPLES if quick else backlog.BACKLOG_SAMPLES),
        backlog_low_events=(backlog.QUICK_BACKLOG_LOW_EVENTS if quick
                            else backlog.BACKLOG_LOW_EVENTS),
    )


@dataclass
class Run:
    """What the phases measured; each phase adds its goals."""

    url: str
    size: Sizes
    log_dir: Path
    goals: list[Goal] = field(default_factory=list)
    writes: list[Throughput] = field(default_factory=list)
    latency: LatencyResult | None = None
    noop_per_s: float = 0.0
    backlog: list[backlog.BacklogRun] = field(default_factory=list)


def _phase(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


async def writer_phase(run: Run) -> None:
    _phase(f"1. write throughput: {run.size.writes} changes per method, no worker running")
    run.writes = await measure_writes(run.url, run.size.writes)
    print(report.writes_text(run.writes), flush=True)
    run.goals += report.writes_goals(run.writes)


async def latency_phase(run: Run) -> None:
    _phase(f"2. idle latency: {run.size.samples} changes one at a time through a real worker "
           f"(-c {settings.WORKER_CONCURRENCY}) to a loopback Discord")
    run.latency = await measure_latency(run.url, run.size.samples, run.log_dir)
    print(report.latency_text(run.latency), flush=True)
    run.goals += report.latency_goals(run.latency)


async def backlog_phase(run: Run) -> None:
    _phase(f"3. latency under backlog: a high change while {run.size.backlog_low_events:,} low "
           f"events wait, {run.size.backlog_samples} samples idle and as many under backlog")
    run.backlog = await backlog.measure_backlog(run.url, run.size.backlog_samples, run.log_dir,
                                                run.size.backlog_low_events)
    print(backlog.backlog_text(run.backlog), flush=True)
    run.goals += backlog.backlog_goals(run.backlog)


async def splunk_phase(run: Run) -> None:
    batched, unbatched = run.size.splunk
    _phase(f"4. Splunk HEC: {batched} changes batched by 100, {unbatched} sent one request "
           "each, through a real worker")
    runs = await measure_splunk(run.url, batched, unbatched, run.log_dir)
    print(splunk_text(runs), flush=True)
    run.goals += splunk_goals(runs)


async def throughput_phase(run: Run) -> None:
    _phase(f"5. worker throughput: {run.size.throughput} deliveries to a loopback webhook "
           f"against {run.size.throughput} Celery no-op tasks, {run.size.throughput_runs} "
           "runs alternated, queued first, same worker settings")
    result = await workerside.measure_throughput(run.url, run.size.throughput,
                                                 run.size.throughput_runs, run.log_dir)
    run.noop_per_s = result.noop_median
    print(report.throughput_text(result), flush=True)
    run.goals += report.throughput_goals(result)


async def memory_phase(run: Run) -> None:
    marks = run.size.memory_marks
    _phase(f"6. memory: worker RSS during a burst of {marks[-1]:,} deliveries")
    result = await workerside.measure_memory(run.url, marks, run.log_dir)
    print(report.memory_text(result), flush=True)
    run.goals += report.memory_goals(result)


async def fanout_phase(run: Run) -> None:
    _phase(f"7. fan-out: {run.size.fanout:,} changes to Splunk + New Relic + a Slack digest "
           f"(batches of {settings.FANOUT_BATCH}), {run.size.fanout_runs} runs, queued first")
    result = await workerside.measure_fanout(run.url, run.size.fanout, run.size.fanout_runs,
                                             run.log_dir)
    print(report.fanout_text(result, run.noop_per_s), flush=True)
    run.goals += report.fanout_goals(result, run.noop_per_s)


PHASES: list[Callable[[Run], Awaitable[None]]] = [
    writer_phase, latency_phase, backlog_phase, splunk_phase, throughput_phase, memory_phase,
    fanout_phase,
]
"""The phases in order; each flushes the bench database before it starts. Latency under a
backlog comes right after the idle latency it is compared with."""


async def _measure(run: Run) -> None:
    for phase in PHASES:
        flush(run.url)  # what one phase left queued must not reach the next one's worker
        await phase(run)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    size = sizes(args)
    os.environ.pop("CELERY_TASK_ALWAYS_EAGER", None)  # deliveries must go through the worker
    os.environ.setdefault("APGCFG_ALLOWED_NETWORKS", LOOPBACK)  # the vendor fakes (and workers)
    url = settings.redis_url()
    try:
        flush(url)
        facts = machine_facts(url)
        print("== machine ==\n" + report.facts_text(facts), flush=True)
        with tempfile.TemporaryDirectory(prefix="apgcfg-bench-") as log_dir:
            run = Run(url, size, Path(log_dir))
            asyncio.run(_measure(run))
    except (RuntimeError, redis.RedisError, ApgConfigError) as exc:
        print(f"\nbench failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    load_1m, load_5m, _ = os.getloadavg()
    print(f"\n== goals ==\n{summary_text(run.goals)}")
    print(f"\n  load average at the end: {load_1m:.2f} / {load_5m:.2f} (1 / 5 min); "
          f"{facts['cpu_count']} CPUs")
    if args.json:
        data = report.summary(facts, run.writes, size.writes, run.latency, run.goals)
        data["latency_under_backlog"] = backlog.backlog_summary(run.backlog)
        print("\n" + json.dumps(data, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
