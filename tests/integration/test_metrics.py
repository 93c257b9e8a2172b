"""``/metrics`` for real: a worker started by ``apgcfg run`` delivers a success, a retry and a
dead delivery to a loopback Discord fake; the API and ``apgcfg run``'s own server both show it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from config_core import ConfigService
from tests.conftest import redis_url
from tests.fakes.discord import FakeDiscord
from tests.integration.apiserver import ApiServer
from tests.integration.conftest import all_in, settle, wait_for_deliveries
from tests.integration.polling import until
from tests.integration.test_run_supervisor import Output, force_stop, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
METRICS_DB = 11
"""Database of this test's stack, emptied before and after."""

TOKEN = "metrics-test-token"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def metrics_db(redis_server: str) -> Iterator[str]:
    url = redis_url(METRICS_DB)
    redis.Redis.from_url(url, socket_timeout=5).flushdb()
    yield url
    redis.Redis.from_url(url, socket_timeout=5).flushdb()


@pytest.fixture
def stack(metrics_db: str, tmp_path: Path) -> Iterator[tuple[str, Output]]:
    """``apgcfg run`` without beat and Flower: a worker, and metrics on a free port."""
    port = free_port()
    env = {**os.environ, "CONFIG_REDIS_URL": metrics_db, "APGCFG_METRICS_PORT": str(port),
           "APGCFG_METRICS_TOKEN": TOKEN, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    for name in ("CELERY_TASK_ALWAYS_EAGER", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-m", "apgcfg.cli", "run", "--no-beat",
                             "--no-flower", "--concurrency", "1"], cwd=tmp_path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    output = Output(proc)
    pgids: set[int] = set()
    try:
        output.wait_for("apgcfg run: ready", 60)
        assert f"apgcfg run: metrics http://127.0.0.1:{port}/metrics" in output.text(), \
            output.text()
        pgids = {int(pid) for pid in re.findall(r"\(pid (\d+)\)", output.text())}
        yield f"http://127.0.0.1:{port}/metrics", output
    finally:
        force_stop(proc, pgids, (str(tmp_path),))


@pytest.fixture
def api(metrics_db: str, tenant: str, tmp_path: Path) -> Iterator[ApiServer]:
    server = ApiServer(metrics_db, tenant, tmp_path).wait_ready()
    yield server
    server.stop()


@pytest.fixture
async def writer(metrics_db: str, tenant: str) -> AsyncIterator[ConfigService]:
    svc = ConfigService(redis_url=metrics_db, environment="production", tenant=tenant)
    yield svc
    await svc.close()


def scrape(url: str, token: str) -> Samples:
    reply = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.headers["Content-Type"].startswith("text/plain; version=")
    found = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def figure(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_success_retry_dead__scraped_from_api_and_run__counters_moved(
        stack: tuple[str, Output], api: ApiServer, writer: ConfigService, tenant: str,
        discord_fake: FakeDiscord) -> None:
    run_url, output = stack
    read_key = api.new_key("read")
    url = discord_fake.add_webhook()
    await settle(writer, "integrations.discord", {"webhook_url": url})
    where = {"tenant": tenant, "environment": "production", "connector": "discord"}
    before = scrape(f"{api.url}/metrics", read_key)

    # Given a success, a 429 that is retried, and a webhook the vendor deleted
    ok = await writer.set_config("app.ok", 1)
    await wait_for_deliveries(writer, ok.event_id, all_in("delivered"))
    discord_fake.fail_next(429, webhook_url=url, method="POST", retry_after_s=1)
    retried = await writer.set_config("app.retried", 2)
    await wait_for_deliveries(writer, retried.event_id, all_in("delivered"), 60)
    discord_fake.delete_webhook(url)
    dead = await writer.set_config("app.dead", 3)
    await wait_for_deliveries(writer, dead.event_id, all_in("dead"))

    # When /metrics is asked without a key, with a wrong one, then with an API key
    assert requests.get(f"{api.url}/metrics", timeout=10).status_code == 401
    assert requests.get(f"{api.url}/metrics", timeout=10,
                        headers={"Authorization": "Bearer apg_x_y"}).status_code == 401
    after = scrape(f"{api.url}/metrics", read_key)

    # Then the counters moved by exactly what happened
    def moved(name: str, **labels: str) -> float:
        return figure(after, name, **labels) - figure(before, name, **labels)

    assert moved("apgcfg_deliveries_total", **where, outcome="delivered") == 2
    assert moved("apgcfg_deliveries_total", **where, outcome="dead") == 1
    assert moved("apgcfg_delivery_retries_total", **where, reason="rate_limited") == 1
    assert moved("apgcfg_dead_letters_total", **where, reason="rejected") == 1
    assert figure(after, "apgcfg_dead_letters_waiting", **where) == 1
    assert moved("apgcfg_delivery_latency_seconds_count", **where) == 2
    assert moved("apgcfg_delivery_latency_seconds_sum", **where) >= 1.0  # the retry waited 1 s
    assert figure(after, "apgcfg_outbox_backlog", tenant=tenant, environment="production") == 0
    assert figure(after, "apgcfg_relays_alive") >= 1

    # And apgcfg run's own server refuses without its token and shows the same figures
    assert "apgcfg run: stopped" not in output.text(), output.text()
    assert requests.get(run_url, timeout=10).status_code == 401
    assert requests.get(run_url, timeout=10,
                        headers={"Authorization": f"Bearer {read_key}"}).status_code == 401
    from_run = scrape(run_url, TOKEN)
    for name, labels in [("apgcfg_deliveries_total", {**where, "outcome": "delivered"}),
                         ("apgcfg_delivery_retries_total", {**where, "reason": "rate_limited"}),
                         ("apgcfg_dead_letters_waiting", where)]:
        assert figure(from_run, name, **labels) == figure(after, name, **labels)
    assert TOKEN not in output.text()
    assert url.rsplit("/", 1)[1] not in str(after)


async def test_outbox_waiting__no_relay_reads_it__backlog_counts_it(
        metrics_db: str, api: ApiServer, writer: ConfigService, tenant: str) -> None:
    # Given changes written while no worker runs
    for n in range(4):
        await writer.set_config(f"app.k{n}", n)
    # When scraped, then they are the namespace's backlog, and no relay is alive
    samples = until("a scrape", lambda: scrape(f"{api.url}/metrics", api.new_key("read")), 10)
    assert figure(samples, "apgcfg_outbox_backlog", tenant=tenant,
                  environment="production") == 4
    assert figure(samples, "apgcfg_relays_alive") == 0


async def test_api_scrape__another_tenant_has_an_outbox__only_the_api_namespace_shown(
        metrics_db: str, api: ApiServer, writer: ConfigService, tenant: str) -> None:
    # Given changes waiting in this tenant's outbox and in another tenant's, no worker running
    other_tenant = f"{tenant}other"
    other = ConfigService(redis_url=metrics_db, environment="production", tenant=other_tenant)
    try:
        await other.set_config("app.k", 1)
        await writer.set_config("app.k", 1)
    finally:
        await other.close()
    # When an API key of this namespace scrapes the API's /metrics
    samples = until("a scrape", lambda: scrape(f"{api.url}/metrics", api.new_key("read")), 10)
    # Then it sees its own namespace's figures and the relays, never another tenant's
    shown = {dict(labels).get("tenant") for _, labels in samples} - {None}
    assert shown == {tenant}, shown
    assert figure(samples, "apgcfg_outbox_backlog", tenant=tenant, environment="production") == 1
    assert ("apgcfg_relays_alive", ()) in samples


def start_metrics_command(metrics_db: str, tmp_path: Path, port: int,
                          token: str | None) -> subprocess.Popen[str]:
    env = {**os.environ, "CONFIG_REDIS_URL": metrics_db, "PYTHONPATH": str(ROOT),
           "PYTHONUNBUFFERED": "1"}
    env.pop("APGCFG_METRICS_TOKEN", None)
    if token is not None:
        env["APGCFG_METRICS_TOKEN"] = token
    return subprocess.Popen([sys.executable, "-m", "apgcfg.cli", "metrics", "--port", str(port)],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


async def test_metrics_command__two_tenants__operator_sees_both_then_sigterm_stops(
        metrics_db: str, tmp_path: Path, tenant: str) -> None:
    # Given changes waiting in two tenants' outboxes, and `apgcfg metrics` with its token
    for name in (tenant, f"{tenant}other"):
        svc = ConfigService(redis_url=metrics_db, environment="production", tenant=name)
        await svc.set_config("app.k", 1)
        await svc.close()
    port = free_port()
    proc = start_metrics_command(metrics_db, tmp_path, port, TOKEN)
    output = Output(proc)
    try:
        output.wait_for(f"apgcfg metrics: serving http://127.0.0.1:{port}/metrics", 30)
        url = f"http://127.0.0.1:{port}/metrics"
        # When scraped without the token, then with it
        assert requests.get(url, timeout=10).status_code == 401
        samples = scrape(url, TOKEN)
        # Then both tenants' backlogs show (the operator's view)
        for name in (tenant, f"{tenant}other"):
            assert figure(samples, "apgcfg_outbox_backlog", tenant=name,
                          environment="production") == 1, name
        # And SIGTERM stops it cleanly, saying so
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        output.wait_for("apgcfg metrics: stopped", 5)
        assert TOKEN not in output.text()
    finally:
        force_stop(proc, set(), (str(tmp_path),))


def test_metrics_command__no_token__refused_naming_the_variable(
        metrics_db: str, tmp_path: Path) -> None:
    proc = start_metrics_command(metrics_db, tmp_path, free_port(), None)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "APGCFG_METRICS_TOKEN" in out
