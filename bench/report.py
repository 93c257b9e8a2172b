"""Plain-text tables and the machine-readable summary of one run."""

from __future__ import annotations

import math
import statistics
from typing import Any

from bench import settings
from bench.goals import Goal, at_least, below, goal_line
from bench.latency import LatencyResult
from bench.workerside import FanoutResult, MemoryResult, ThroughputResult
from bench.writes import APPLY, RAW_MULTI, RAW_MULTI_ASYNC, SET_GATHER, SET_SEQ, Throughput

STAGES = (
    ("returned", "set_config returned"),
    ("relayed", "relay created the delivery record"),
    ("received", "webhook POST received (goal)"),
    ("delivered", "ledger says delivered"),
)
"""Latency stages, each measured from just before ``await set_config``."""

PERCENTILES = (50, 90, 99)


def percentile(values: list[float], pct: float) -> float:
    """Linear-interpolated percentile of ``values`` (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


RATIOS = {
    "set_config/apply_async": (SET_SEQ, APPLY),
    "set_config/raw_multi": (SET_SEQ, RAW_MULTI),
    "set_config/raw_multi_async": (SET_SEQ, RAW_MULTI_ASYNC),
    "set_config_gather/apply_async": (SET_GATHER, APPLY),
}
"""Ratios printed, as (numerator, denominator) methods; the first one carries the goal."""


def ratios(results: list[Throughput]) -> dict[str, float]:
    """Each ratio of ``RATIOS`` (NaN when a rate is missing)."""
    rate = {r.name: r.median_rate for r in results}
    return {name: rate[top] / rate[bottom] if rate.get(top) and rate.get(bottom) else math.nan
            for name, (top, bottom) in RATIOS.items()}


def latency_stats(result: LatencyResult) -> dict[str, dict[str, float]]:
    """p50/p90/p99/max in ms per stage."""
    stats = {}
    for stage, _ in STAGES:
        values = result.stage_ms(stage)
        row = {f"p{p}": percentile(values, p) for p in PERCENTILES}
        row["max"] = max(values) if values else math.nan
        row["n"] = len(values)
        stats[stage] = row
    return stats


def _table(header: list[str], rows: list[list[str]], *, left: tuple[int, ...] = (0,)) -> str:
    """Columns padded to their widest cell; those in ``left`` left-aligned, others right."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: list[str]) -> str:
        cells = [cell.ljust(w) if i in left else cell.rjust(w)
                 for i, (cell, w) in enumerate(zip(row, widths, strict=True))]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def facts_text(facts: dict[str, Any]) -> str:
    return "\n".join(f"  {name:<15} {value}" for name, value in facts.items())


def writes_goals(results: list[Throughput]) -> list[Goal]:
    """The writer's goals, from the medians of the interleaved rounds."""
    ratio = ratios(results)
    us = {r.name: 1e6 / r.median_rate if r.median_rate else math.nan for r in results}
    per_call = (f"µs per change (median): set_config {us[SET_SEQ]:.0f}, gathered "
                f"{us[SET_GATHER]:.0f}, apply_async {us[APPLY]:.0f}, raw MULTI async "
                f"{us[RAW_MULTI_ASYNC]:.0f}; `python -m bench.diagnose` splits a set_config")
    return [
        at_least("writer: set_config / raw redis.asyncio MULTI",
                 ratio["set_config/raw_multi_async"], settings.GOAL_RAW_ASYNC_RATIO,
                 limit=per_call),
        at_least("writer: set_config gathered / apply_async",
                 ratio["set_config_gather/apply_async"], settings.GOAL_GATHER_RATIO,
                 limit=per_call),
        at_least("writer: set_config / apply_async", ratio["set_config/apply_async"],
                 settings.GOAL_WRITE_RATIO, limit=per_call),
    ]


def writes_text(results: list[Throughput]) -> str:
    rows = [[r.name, str(r.done), f"{r.seconds:.2f}", f"{r.rate:,.0f}", f"{r.median_rate:,.0f}",
             "; ".join([*r.notes, *(["stopped at time budget"] if r.stopped_early else [])])]
            for r in results]
    table = _table(["method", "changes", "seconds", "changes/s", "median/s", "notes"], rows,
                   left=(0, 5))
    lines = [table, "", "  ratios of the median rates of the rounds:"]
    for name, value in ratios(results).items():
        lines.append(f"  {name:<30} {value:5.2f}x")
    lines.append("")
    lines.extend(goal_line(goal) for goal in writes_goals(results))
    return "\n".join(lines)


def latency_goals(result: LatencyResult) -> list[Goal]:
    p99 = latency_stats(result)["received"]["p99"]
    goal = below("idle latency: webhook p99 (ms)", p99, settings.GOAL_P99_MS,
                 limit=f"{result.lost} samples lost" if result.lost else "")
    if result.lost:
        goal = Goal(goal.figure, goal.shown, goal.goal, False, f"{result.lost} samples lost")
    return [goal]


def latency_text(result: LatencyResult) -> str:
    stats = latency_stats(result)
    rows = [[label, str(int(stats[stage]["n"])),
             *(f"{stats[stage][f'p{p}']:.1f}" for p in PERCENTILES), f"{stats[stage]['max']:.1f}"]
            for stage, label in STAGES]
    table = _table(["ms from set_config to ...", "n", "p50", "p90", "p99", "max"], rows)
    tail = (f"\n  {len(result.samples)} samples after {result.warmup} warm-up, "
            f"{result.lost} lost{' (stopped at time budget)' if result.stopped_early else ''}\n")
    return table + tail + "\n".join(goal_line(g) for g in latency_goals(result))


def _num(value: float) -> float | None:
    """``value`` rounded for JSON; None for NaN (no samples), which JSON cannot carry."""
    return None if math.isnan(value) else round(value, 3)


def summary(facts: dict[str, Any], writes: list[Throughput], writes_n: int,
            latency: LatencyResult | None, goals: list[Goal]) -> dict[str, Any]:
    """Everything measured, as JSON-ready data."""
    ratio = ratios(writes)
    data: dict[str, Any] = {
        "facts": facts,
        "writes_requested": writes_n,
        "writes": [{"method": r.name, "changes": r.done, "seconds": round(r.seconds, 4),
                    "changes_per_s": round(r.rate, 1), "median_per_s": round(r.median_rate, 1),
                    "stopped_early": r.stopped_early, "notes": r.notes}
                   for r in writes],
        "ratios": {name: _num(value) for name, value in ratio.items()},
        "goals": [{"figure": g.figure, "value": g.shown, "goal": g.goal, "met": g.met,
                   "limit": g.limit} for g in goals],
    }
    if latency is not None:
        stats = latency_stats(latency)
        data["latency_ms"] = {stage: {k: _num(v) for k, v in row.items()}
                              for stage, row in stats.items()}
        data["latency_stopped_early"] = latency.stopped_early
        data["latency_samples"] = len(latency.samples)
        data["latency_lost"] = latency.lost
    return data


# the worker side --------------------------------------------------------------------------------

def throughput_goals(result: ThroughputResult) -> list[Goal]:
    delivery = statistics.median(r.cpu_ms_per_item for r in result.deliveries)
    noop = statistics.median(r.cpu_ms_per_item for r in result.noop)
    incomplete = [r for r in [*result.deliveries, *result.noop] if not r.complete]
    limit = (f"the worker used {delivery:.2f} ms of CPU per delivery (relay, task, POST, ledger) "
             f"against {noop:.2f} ms per no-op task; on 2 shared cores the rate follows the CPU "
             "per item")
    if incomplete:
        limit = f"{len(incomplete)} runs did not finish in time; " + limit
    goal = at_least("worker: deliveries/s / no-op tasks/s", result.ratio,
                    settings.GOAL_THROUGHPUT_RATIO, limit=limit)
    if incomplete:
        goal = Goal(goal.figure, goal.shown, goal.goal, False, limit)
    return [goal]


def throughput_text(result: ThroughputResult) -> str:
    rows = []
    for i, (delivery, noop) in enumerate(zip(result.deliveries, result.noop, strict=True), 1):
        rows.append([f"run {i}", f"{delivery.items}/{delivery.expected}", f"{delivery.per_s:,.0f}",
                     f"{delivery.cpu_ms_per_item:.2f}", f"{noop.items}/{noop.expected}",
                     f"{noop.per_s:,.0f}", f"{noop.cpu_ms_per_item:.2f}",
                     f"{delivery.per_s / noop.per_s if noop.per_s else 0:.2f}x"])
    rows.append(["median", "", f"{result.delivery_median:,.0f}", "", "",
                 f"{result.noop_median:,.0f}", "", f"{result.ratio:.2f}x"])
    table = _table(["", "deliveries", "/s", "cpu ms", "no-op tasks", "/s", "cpu ms", "ratio"],
                   rows)
    return table + "\n\n" + "\n".join(goal_line(g) for g in throughput_goals(result))


def memory_goals(result: MemoryResult) -> list[Goal]:
    complete = result.burst is not None and result.burst.complete and len(result.marks) == 2
    first = result.marks[0][0] if result.marks else 0
    last = result.marks[-1][0] if result.marks else 0
    goal = below(f"memory: worker RSS growth {first:,} -> {last:,}", result.growth * 100,
                 settings.GOAL_MEMORY_GROWTH * 100, unit="%",
                 limit="" if complete else "the burst did not reach every mark in time")
    if not complete:
        goal = Goal(goal.figure, goal.shown, goal.goal, False, goal.limit or "incomplete")
    return [goal]


def memory_text(result: MemoryResult) -> str:
    lines = [f"  RSS after {mark:>6,} deliveries: {rss / 1024:7.1f} MiB"
             for mark, rss in result.marks]
    if result.burst is not None:
        lines.append(f"  burst: {result.burst.items}/{result.burst.expected} delivered, "
                     f"{result.burst.per_s:,.0f}/s")
    return "\n".join([*lines, "", *(goal_line(g) for g in memory_goals(result))])


def fanout_goals(result: FanoutResult, noop_per_s: float) -> list[Goal]:
    ratio = result.median / noop_per_s if noop_per_s else float("nan")
    cpu = (statistics.median(r.cpu_s * 1000 / r.events for r in result.runs)
           if result.runs else float("nan"))
    incomplete = [r for r in result.runs if not r.complete]
    limit = (f"the worker used {cpu:.2f} ms of CPU per change (three deliveries); a no-op task "
             f"rate of {noop_per_s:,.0f}/s leaves {1000 / noop_per_s if noop_per_s else 0:.2f} "
             "ms per task")
    if incomplete:
        limit = f"{len(incomplete)} runs not fully delivered in time; " + limit
    goal = at_least("fan-out: changes/s / no-op tasks/s", ratio, settings.GOAL_FANOUT_RATIO,
                    limit=limit)
    if incomplete:
        goal = Goal(goal.figure, goal.shown, goal.goal, False, limit)
    return [goal]


def fanout_text(result: FanoutResult, noop_per_s: float) -> str:
    rows = [[f"run {i}", str(r.events), f"{r.delivered_rows}/{r.events * 3}", f"{r.seconds:.2f}",
             f"{r.events_per_s:,.0f}", f"{r.cpu_s * 1000 / r.events:.2f}",
             " ".join(f"{k}={v}" for k, v in r.requests.items())]
            for i, r in enumerate(result.runs, 1)]
    table = _table(["", "changes", "delivered", "seconds", "changes/s", "cpu ms", "requests"],
                   rows, left=(0, 6))
    return (table + f"\n\n  median {result.median:,.0f} changes/s against "
            f"{noop_per_s:,.0f} no-op tasks/s (median of the throughput phase)\n"
            + "\n".join(goal_line(g) for g in fanout_goals(result, noop_per_s)))
