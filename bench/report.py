"""Plain-text tables and the machine-readable summary of one run."""

from __future__ import annotations

import math
from typing import Any

from bench import settings
from bench.latency import LatencyResult
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
    rate = {r.name: r.rate for r in results}
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


def writes_text(results: list[Throughput]) -> str:
    rows = [[r.name, str(r.done), f"{r.seconds:.2f}", f"{r.rate:,.0f}",
             "; ".join([*r.notes, *(["stopped at time budget"] if r.stopped_early else [])])]
            for r in results]
    table = _table(["method", "changes", "seconds", "changes/s", "notes"], rows, left=(0, 4))
    lines = [table, ""]
    for name, value in ratios(results).items():
        goal = ""
        if name == "set_config/apply_async":
            met = value >= settings.GOAL_WRITE_RATIO
            goal = f"   goal >= {settings.GOAL_WRITE_RATIO:g}x: {'MET' if met else 'NOT MET'}"
        lines.append(f"  {name:<30} {value:5.2f}x{goal}")
    return "\n".join(lines)


def latency_text(result: LatencyResult) -> str:
    stats = latency_stats(result)
    rows = [[label, str(int(stats[stage]["n"])),
             *(f"{stats[stage][f'p{p}']:.1f}" for p in PERCENTILES), f"{stats[stage]['max']:.1f}"]
            for stage, label in STAGES]
    table = _table(["ms from set_config to ...", "n", "p50", "p90", "p99", "max"], rows)
    p99 = stats["received"]["p99"]
    met = p99 < settings.GOAL_P99_MS and result.lost == 0
    tail = (f"\n  {len(result.samples)} samples after {result.warmup} warm-up, "
            f"{result.lost} lost{' (stopped at time budget)' if result.stopped_early else ''}"
            f"\n  webhook p99 {p99:.1f} ms   goal < {settings.GOAL_P99_MS:g} ms: "
            f"{'MET' if met else 'NOT MET'}")
    return table + tail


def _num(value: float) -> float | None:
    """``value`` rounded for JSON; None for NaN (no samples), which JSON cannot carry."""
    return None if math.isnan(value) else round(value, 3)


def summary(facts: dict[str, Any], writes: list[Throughput], writes_n: int,
            latency: LatencyResult | None) -> dict[str, Any]:
    """Everything measured, as JSON-ready data."""
    ratio = ratios(writes)
    data: dict[str, Any] = {
        "facts": facts,
        "writes_requested": writes_n,
        "writes": [{"method": r.name, "changes": r.done, "seconds": round(r.seconds, 4),
                    "changes_per_s": round(r.rate, 1), "stopped_early": r.stopped_early,
                    "notes": r.notes}
                   for r in writes],
        "ratios": {name: _num(value) for name, value in ratio.items()},
        "goal_write_ratio_met": ratio["set_config/apply_async"] >= settings.GOAL_WRITE_RATIO,
    }
    if latency is not None:
        stats = latency_stats(latency)
        data["latency_ms"] = {stage: {k: _num(v) for k, v in row.items()}
                              for stage, row in stats.items()}
        data["latency_stopped_early"] = latency.stopped_early
        data["latency_samples"] = len(latency.samples)
        data["latency_lost"] = latency.lost
        data["goal_p99_met"] = stats["received"]["p99"] < settings.GOAL_P99_MS \
            and latency.lost == 0
    return data
