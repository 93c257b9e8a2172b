"""Prometheus metrics: what the workers counted in Redis, rendered for a scrape.

Workers are separate processes, so nothing is counted in this process: each scrape reads the
counters the ledger keeps (``config_core.state.counters``), the outbox backlog, the dead
letters and the relays' reports, and turns them into metric families with a custom collector.
``prometheus_client`` writes the exposition format. Served by the HTTP API at ``/metrics`` and
by ``apgcfg run`` (``metrics_server``); docs/metrics.md lists every metric.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from config_core.state import counters, metrics, relays
from config_core.state.keys import Namespace
from config_core.state.metrics import NamespaceMetrics

NS_LABELS = ["tenant", "environment"]
CONNECTOR_LABELS = [*NS_LABELS, "connector"]
RELAY_LABELS = ["relay", "host"]

UNKNOWN = "unknown"
"""``reason`` of a failure whose kind was not recorded."""


def families(found: Iterable[NamespaceMetrics], relay_reports: list[dict[str, Any]],
             now: float) -> list[Metric]:
    """Every metric family, from what was read (pure: no Redis)."""
    found = list(found)
    return [*_delivery_families(found), _latency_family(found), *_backlog_families(found),
            *_relay_families(relay_reports, now)]


def _delivery_families(found: list[NamespaceMetrics]) -> list[Metric]:
    deliveries = CounterMetricFamily(
        "apgcfg_deliveries", "Deliveries that ended, by connector and outcome "
        "(delivered, skipped, dead); a replayed delivery counts again when it ends.",
        labels=[*CONNECTOR_LABELS, "outcome"])
    retries = CounterMetricFamily(
        "apgcfg_delivery_retries", "Failed attempts that were scheduled to run again "
        "(including waits for a connector's open circuit breaker), by why they failed.",
        labels=[*CONNECTOR_LABELS, "reason"])
    dead = CounterMetricFamily(
        "apgcfg_dead_letters", "Deliveries that went dead (gave up, or refused by the vendor), "
        "by why the last attempt failed.", labels=[*CONNECTOR_LABELS, "reason"])
    for ns in found:
        names = [ns.ns.tenant, ns.ns.environment]
        ended: dict[tuple[str, str], int] = {}
        for (connector, status, kind), count in sorted(ns.outcomes.items()):
            if status in counters.FINAL_OUTCOMES:
                ended[(connector, status)] = ended.get((connector, status), 0) + count
            if status == counters.RETRYING:
                retries.add_metric([*names, connector, kind or UNKNOWN], count)
            if status == "dead":
                dead.add_metric([*names, connector, kind or UNKNOWN], count)
        for (connector, status), count in sorted(ended.items()):
            deliveries.add_metric([*names, connector, status], count)
    return [deliveries, retries, dead]


def _latency_family(found: list[NamespaceMetrics]) -> Metric:
    latency = HistogramMetricFamily(
        "apgcfg_delivery_latency_seconds", "Time from a delivery being routed by the relay to "
        "the vendor accepting it, for delivered deliveries.", labels=CONNECTOR_LABELS)
    for ns in found:
        for connector, histogram in ns.latency.items():
            latency.add_metric([ns.ns.tenant, ns.ns.environment, connector],
                               histogram.buckets, histogram.sum_s)
    return latency


def _backlog_families(found: list[NamespaceMetrics]) -> list[Metric]:
    backlog = GaugeMetricFamily(
        "apgcfg_outbox_backlog", "Events in the namespace's outbox streams not yet dispatched "
        "by a relay.", labels=NS_LABELS)
    waiting = GaugeMetricFamily(
        "apgcfg_dead_letters_waiting", "Dead deliveries not replayed yet, by connector.",
        labels=CONNECTOR_LABELS)
    readable = GaugeMetricFamily(
        "apgcfg_namespace_readable", "0 when a key of the namespace holds the wrong type, so "
        "its figures could not be read (they are left out), else 1.", labels=NS_LABELS)
    for ns in found:
        readable.add_metric([ns.ns.tenant, ns.ns.environment], 1 if ns.readable else 0)
        if not ns.readable:
            continue
        backlog.add_metric([ns.ns.tenant, ns.ns.environment], ns.backlog)
        for connector, count in sorted(ns.dead_letters.items()):
            waiting.add_metric([ns.ns.tenant, ns.ns.environment, connector], count)
    return [backlog, waiting, readable]


def _relay_families(reports: list[dict[str, Any]], now: float) -> list[Metric]:
    up = GaugeMetricFamily(
        "apgcfg_relay_up", f"1 when the relay reported within {relays.STALE_AFTER_S:.0f} s, "
        "else 0.", labels=RELAY_LABELS)
    age = GaugeMetricFamily(
        "apgcfg_relay_last_report_age_seconds", "Seconds since the relay's last report.",
        labels=RELAY_LABELS)
    for report in reports:
        labels = [str(report.get("consumer", "")), str(report.get("host", ""))]
        up.add_metric(labels, 1 if report["alive"] else 0)
        age.add_metric(labels, max(0.0, now - float(report.get("at") or 0)))
    alive = GaugeMetricFamily("apgcfg_relays_alive", "Relays that reported recently.",
                              value=sum(1 for r in reports if r["alive"]))
    return [up, age, alive]


class RedisCollector(Collector):
    """Reads everything at scrape time (sync client with ``decode_responses=True``): every
    namespace, or only ``namespace`` when given; the relays either way."""

    def __init__(self, client: Any, namespace: Namespace | None = None) -> None:
        self.client = client
        self.namespace = namespace

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        if self.namespace is None:
            found = metrics.read_all(self.client)
        else:
            found = [metrics.read_readable(self.client, self.namespace)]
        reports = relays.reports(self.client.hgetall(relays.RELAYS_KEY), now)
        yield from families(found, reports, now)


def render(client: Any, namespace: Namespace | None = None) -> bytes:
    """The exposition text of a scrape now, of every namespace or only ``namespace`` (raises
    ``RedisError`` when Redis is down)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RedisCollector(client, namespace))
    return generate_latest(registry)


def token_matches(header: str | None, token: str) -> bool:
    """True for ``Authorization: Bearer <token>`` (compared in constant time)."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())
