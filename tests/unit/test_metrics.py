"""Metrics: the ledger counts outcomes in Redis as it records them; a scrape renders them."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import redis
from prometheus_client.core import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from apgcfg import supervisor
from apgcfg.metrics import families, render, token_matches
from apgcfg.metrics_server import DEFAULT_PORT, MetricsOptions
from config_core.errors import ConfigError
from config_core.state import counters, events, ledger, metrics
from config_core.state.keys import Namespace
from config_core.state.ledger import LedgerRow, Status
from config_core.state.metrics import Latency, NamespaceMetrics
from connectors.errors import (
    AuthError,
    Misconfigured,
    RateLimited,
    Rejected,
    TransportError,
    Unavailable,
    kind_of,
)
from tests.conftest import UNIT_DB, redis_url


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text: (name, sorted labels) → value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def labels(**given: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(given.items()))


class _Fixed(Collector):
    def __init__(self, built: list[Any]) -> None:
        self.built = built

    def collect(self) -> Any:
        return iter(self.built)


def exposition(built: list[Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(built))
    return generate_latest(registry).decode()


def finish(client: redis.Redis, ns: Namespace, event_id: str, status: Status,
           created_s_ago: float = 0.0, kind: str | None = "unavailable") -> bool:
    row = LedgerRow.new("slack", "medium")
    row.created_at -= created_s_ago
    failed = status in (Status.RETRYING, Status.DEAD)
    return ledger.finish(client, ns, event_id, row.mark(
        status, "503 from vendor" if failed else None, kind=kind if failed else None))


# counting, in the ledger's script --------------------------------------------------------------

def test_finish__retry_retry_delivered_then_delivered_again__two_retries_one_delivery(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given a delivery that failed twice, then went out 0.3 s after it was routed
    ns = Namespace(tenant, "production")
    finish(raw_redis, ns, "e1", Status.RETRYING)
    finish(raw_redis, ns, "e1", Status.RETRYING, kind="rate_limited")
    finish(raw_redis, ns, "e1", Status.DELIVERED, created_s_ago=0.3)
    # When the same outcome is recorded again (a redelivered task), and a late failure too
    finish(raw_redis, ns, "e1", Status.DELIVERED, created_s_ago=0.3)
    assert finish(raw_redis, ns, "e1", Status.DEAD) is False
    # Then two retries and one delivery are counted, nothing dead, one latency sample
    found = metrics.read(raw_redis, ns)
    assert found.outcomes == {("slack", "retrying", "unavailable"): 1,
                              ("slack", "retrying", "rate_limited"): 1,
                              ("slack", "delivered", ""): 1}
    histogram = found.latency["slack"]
    assert histogram.count == 1 and 0.3 <= histogram.sum_s < 5
    assert dict(histogram.buckets)["0.25"] == 0 and dict(histogram.buckets)["0.5"] == 1
    assert histogram.buckets[-1] == ("+Inf", 1)


def test_finish__dead_then_replayed_and_dead_again__counted_twice_listed_once(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given a delivery that went dead
    ns = Namespace(tenant, "production")
    finish(raw_redis, ns, "e2", Status.DEAD)
    # When it is replayed and goes dead again
    row = ledger.load(raw_redis, ns, "e2", "slack")
    assert row is not None
    ledger.reset(raw_redis, ns, "e2", row)
    finish(raw_redis, ns, "e2", Status.DEAD, kind="auth")
    finish(raw_redis, ns, "e3", Status.SKIPPED)
    # Then it died twice, and one dead letter waits
    found = metrics.read(raw_redis, ns)
    assert found.outcomes == {("slack", "dead", "unavailable"): 1, ("slack", "dead", "auth"): 1,
                              ("slack", "skipped", ""): 1}
    assert found.dead_letters == {"slack": 1}
    assert found.latency == {}


def test_read__outbox_entries_waiting__backlog_sums_every_outbox_stream(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given three entries in the namespace's outbox streams
    ns = Namespace(tenant, "production")
    for stream in events.outbox_keys(ns).values():
        for n in range(3):
            raw_redis.xadd(stream, {"e": str(n)})
    # When the metrics are read, then they are the backlog
    assert metrics.read(raw_redis, ns).backlog == 3 * len(events.outbox_keys(ns))


@pytest.mark.parametrize(("latency_s", "bound"), [
    (0.0, "0.05"), (0.05, "0.05"), (0.051, "0.1"), (3599.0, "3600.0"), (3601.0, "+Inf")])
def test_bucket__latency__smallest_bound_not_below_it(latency_s: float, bound: str) -> None:
    assert counters.bucket(latency_s) == bound


def test_latency_args__not_delivered_or_unknown_start__no_sample() -> None:
    assert counters.latency_args(0.0, time.time()) == ("", "0")
    assert counters.latency_args(time.time(), None) == ("", "0")


# rendering ----------------------------------------------------------------------------------

def test_families__counted_figures__exposition_with_every_metric_and_label() -> None:
    # Given figures of one namespace and two relays, one of them silent for a minute
    ns = Namespace("company", "production")
    cumulative = [(b, 1) for b in map(repr, counters.LATENCY_BUCKETS_S)] + [("+Inf", 2)]
    found = NamespaceMetrics(
        ns, outcomes={("slack", "delivered", ""): 5, ("slack", "retrying", "rate_limited"): 3,
                      ("slack", "retrying", ""): 1, ("discord", "dead", "auth"): 1,
                      ("discord", "dead", "rejected"): 1, ("discord", "pending", ""): 9},
        latency={"slack": Latency(cumulative, 4000.5, 2)}, backlog=7,
        dead_letters={"discord": 1})
    now = 1_000_000.0
    reports = [{"consumer": "r1", "host": "h", "at": now - 1, "alive": True},
               {"consumer": "r2", "host": "h", "at": now - 60, "alive": False}]
    # When rendered
    text = exposition(families([found], reports, now))
    got = samples(text)
    # Then each figure is a sample with its labels
    where = {"tenant": "company", "environment": "production"}
    assert got[("apgcfg_deliveries_total", labels(**where, connector="slack",
                                                   outcome="delivered"))] == 5
    assert got[("apgcfg_deliveries_total", labels(**where, connector="discord",
                                                   outcome="dead"))] == 2
    assert got[("apgcfg_delivery_retries_total", labels(**where, connector="slack",
                                                         reason="rate_limited"))] == 3
    assert got[("apgcfg_delivery_retries_total", labels(**where, connector="slack",
                                                         reason="unknown"))] == 1
    assert got[("apgcfg_dead_letters_total", labels(**where, connector="discord",
                                                     reason="auth"))] == 1
    assert got[("apgcfg_dead_letters_total", labels(**where, connector="discord",
                                                     reason="rejected"))] == 1
    assert got[("apgcfg_dead_letters_waiting", labels(**where, connector="discord"))] == 1
    assert got[("apgcfg_outbox_backlog", labels(**where))] == 7
    latency = labels(**where, connector="slack")
    assert got[("apgcfg_delivery_latency_seconds_count", latency)] == 2
    assert got[("apgcfg_delivery_latency_seconds_sum", latency)] == 4000.5
    assert got[("apgcfg_delivery_latency_seconds_bucket", labels(**where, connector="slack",
                                                                 le="+Inf"))] == 2
    assert got[("apgcfg_relay_up", labels(relay="r1", host="h"))] == 1
    assert got[("apgcfg_relay_up", labels(relay="r2", host="h"))] == 0
    assert got[("apgcfg_relay_last_report_age_seconds", labels(relay="r2", host="h"))] == 60
    assert got[("apgcfg_relays_alive", ())] == 1
    # And a status that is not an outcome (pending) is not shown as one
    assert "pending" not in text


def test_render__empty_redis_namespace__families_present_without_samples(
        raw_redis: redis.Redis) -> None:
    # Given the unit database (whatever namespaces other tests left), when it is scraped
    text = render(raw_redis).decode()
    # Then it parses, and every family is declared
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"apgcfg_deliveries", "apgcfg_delivery_retries", "apgcfg_dead_letters",
            "apgcfg_delivery_latency_seconds", "apgcfg_outbox_backlog", "apgcfg_relay_up",
            "apgcfg_relays_alive"} <= names


# the token and the options -------------------------------------------------------------------

@pytest.mark.parametrize(("header", "ok"), [
    ("Bearer s3cret", True), ("bearer s3cret", True), ("Bearer wrong", False),
    ("Basic s3cret", False), ("", False), (None, False), ("Bearer ", False)])
def test_token_matches__authorization_header__only_the_bearer_token(header: str | None,
                                                                     ok: bool) -> None:
    assert token_matches(header, "s3cret") is ok


def test_metrics_options__unset__loopback_default_port_generated_token() -> None:
    options = MetricsOptions.from_env({})
    assert (options.host, options.port) == ("127.0.0.1", DEFAULT_PORT)
    assert options.token_generated and len(options.token) >= 24


def test_metrics_options__bad_port__error_names_the_variable() -> None:
    with pytest.raises(ValueError, match="APGCFG_METRICS_PORT"):
        MetricsOptions.from_env({"APGCFG_METRICS_PORT": "nine"})
    with pytest.raises(ValueError, match="APGCFG_METRICS_PORT"):
        MetricsOptions.from_env({"APGCFG_METRICS_PORT": "70000"})


def test_start_metrics__port_taken__stack_runs_on_without_metrics_and_says_so(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Given a loopback port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When apgcfg run's metrics server is started there
        server = supervisor.start_metrics({"APGCFG_METRICS_PORT": str(port)},
                                          redis_url(UNIT_DB))
    # Then there is none, and the output says why
    assert server is None
    assert f"metrics not served: 127.0.0.1:{port}" in capsys.readouterr().out


@pytest.mark.parametrize(("exc", "kind"), [
    (RateLimited("429", retry_after_s=1), "rate_limited"), (Unavailable("503"), "unavailable"),
    (TransportError("timeout"), "transport"), (AuthError("401"), "auth"),
    (Rejected("404"), "rejected"), (Misconfigured("no url"), "config"),
    (ConfigError("bad"), "config"), (RuntimeError("custom"), "error")])
def test_kind_of__connector_failure__one_word_reason(exc: Exception, kind: str) -> None:
    assert kind_of(exc) == kind


def test_read_all__outbox_key_of_wrong_type__namespace_unreadable_others_shown(
        raw_redis: redis.Redis, tenant: str) -> None:
    # Given one namespace whose outbox key holds a string, and a sound one
    broken, sound = Namespace(tenant, "broken"), Namespace(tenant, "sound")
    for ns in (broken, sound):
        raw_redis.sadd("apgcfg:namespaces", ns.name)
    raw_redis.set(events.outbox_key(broken), "not a stream")
    finish(raw_redis, sound, "e9", Status.DEAD)
    # When scraped
    got = samples(render(raw_redis).decode())
    # Then the broken one says so, and the sound one's figures are there
    assert got[("apgcfg_namespace_readable", labels(tenant=tenant, environment="broken"))] == 0
    assert got[("apgcfg_namespace_readable", labels(tenant=tenant, environment="sound"))] == 1
    assert got[("apgcfg_dead_letters_waiting", labels(tenant=tenant, environment="sound",
                                                       connector="slack"))] == 1
