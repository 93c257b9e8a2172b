"""Reading the delivery metrics back for the ``/metrics`` endpoints, one namespace at a time:
the counters and latency histogram (``counters``), the outbox backlog (every outbox stream of
the namespace, summed) and the dead letters by connector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ResponseError

from config_core.state import counters, events, ledger
from config_core.state.keys import Namespace

SCAN_COUNT = 1000
"""Members asked for per ZSCAN round when the dead letters are counted by connector."""


@dataclass
class Latency:
    """One connector's latency histogram: cumulative ``(bound, count)`` pairs, ``+Inf`` last."""

    buckets: list[tuple[str, int]]
    sum_s: float
    count: int


@dataclass
class NamespaceMetrics:
    """What the metrics endpoints show about one tenant's environment."""

    ns: Namespace
    outcomes: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(connector, status, error kind) → count; status ``retrying`` counts retries; the kind
    is "" for delivered and skipped."""
    latency: dict[str, Latency] = field(default_factory=dict)
    backlog: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    """connector → deliveries dead now (not replayed since)."""
    readable: bool = True
    """False when one of the namespace's keys holds something else than expected."""


def read(client: Any, ns: Namespace) -> NamespaceMetrics:
    """One namespace's figures (sync client with ``decode_responses=True``)."""
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(counters.outcomes_key(ns))
    pipe.hgetall(counters.latency_key(ns))
    for stream in events.outbox_keys(ns).values():
        pipe.xlen(stream)
    outcomes, latency, *lengths = pipe.execute()
    return NamespaceMetrics(ns, parse_outcomes(outcomes), parse_latency(latency),
                            sum(int(n) for n in lengths), dead_letters(client, ns))


def read_all(client: Any) -> list[NamespaceMetrics]:
    """Every namespace that has an outbox, sorted by name; one whose keys cannot be read
    (a key of the wrong type) is shown as not ``readable`` rather than failing the scrape."""
    return [read_readable(client, ns) for ns in events.namespaces(client)]


def read_readable(client: Any, ns: Namespace) -> NamespaceMetrics:
    """One namespace's figures; not ``readable`` when a key of it holds the wrong type."""
    try:
        return read(client, ns)
    except ResponseError:
        return NamespaceMetrics(ns, readable=False)


def dead_letters(client: Any, ns: Namespace) -> dict[str, int]:
    """Deliveries dead now, by connector (members of the dead set are ``event_id:connector``)."""
    found: dict[str, int] = {}
    for member, _ in client.zscan_iter(ledger.dead_key(ns), count=SCAN_COUNT):
        connector = member.partition(":")[2]
        found[connector] = found.get(connector, 0) + 1
    return found


def parse_outcomes(stored: dict[str, str]) -> dict[tuple[str, str, str], int]:
    counted = {}
    for name, value in stored.items():
        connector, status, kind = name.rsplit("|", 2)
        counted[(connector, status, kind)] = int(value)
    return counted


def parse_latency(stored: dict[str, str]) -> dict[str, Latency]:
    """The stored per-bucket counts as cumulative histograms, by connector."""
    per: dict[str, dict[str, str]] = {}
    for name, value in stored.items():
        connector, _, part = name.rpartition("|")
        per.setdefault(connector, {})[part] = value
    histograms = {}
    for connector, parts in sorted(per.items()):
        running, buckets = 0, []
        for bound in [*map(repr, counters.LATENCY_BUCKETS_S), counters.INF]:
            running += int(parts.get(bound, 0))
            buckets.append((bound, running))
        histograms[connector] = Latency(buckets, float(parts.get("sum", 0)),
                                        int(parts.get("count", 0)))
    return histograms
