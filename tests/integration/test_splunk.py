"""Splunk HEC through a real worker: buffered, flushed as chords, HEC's answers ridden out."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from config_core import ConfigService
from tests.fakes.splunk import FakeSplunk, split_envelopes

pytestmark = pytest.mark.integration


@pytest.fixture
def splunk_fake() -> Iterator[FakeSplunk]:
    with FakeSplunk() as fake:
        yield fake


async def configure(service: ConfigService, fake: FakeSplunk, **overrides: Any) -> None:
    """Route app.* changes (only: no config event lands in the buffer) to Splunk."""
    await service.set_config("integrations.notifications", {"triggers": {
        "logs": {"patterns": ["app.*"], "connectors": ["splunk"], "urgency": "low"}}})
    await service.set_config("integrations.splunk", fake.config(**overrides))


async def change(service: ConfigService, count: int, prefix: str = "app.k") -> list[str]:
    return [(await service.set_config(f"{prefix}{i}", i)).event_id for i in range(count)]


async def wait_ledger(service: ConfigService, ids: list[str], timeout_s: float = 30.0,
                      ) -> list[dict[str, Any]]:
    """Each event's Splunk record once every one is delivered or dead."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = [(await service.get_deliveries(e) or [{"status": "none"}])[0] for e in ids]
        if all(r["status"] in ("delivered", "dead") for r in records):
            return records
        if time.monotonic() > deadline:
            pending = Counter(r["status"] for r in records)
            raise AssertionError(f"splunk deliveries not finished in {timeout_s}s: {pending}")
        await asyncio.sleep(0.1)


def sizes(fake: FakeSplunk) -> list[int]:
    """Envelopes per event POST, in order."""
    return [len(split_envelopes(p.body)) for p in fake.event_posts()]


async def test_thousand_changes__batch_size_100__ten_requests_each_change_indexed_once(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given Splunk at batch_size 100 (and an interval that will not fire during the test)
    await configure(service, splunk_fake, batch_size=100, flush_interval=120)
    # When 1,000 keys change
    ids = await change(service, 1000)
    # Then the fake indexes every change exactly once, in at most ten HEC requests
    splunk_fake.wait_for_messages(1000, timeout_s=45)
    records = await wait_ledger(service, ids)
    assert Counter(splunk_fake.indexed_keys()) == Counter(f"app.k{i}" for i in range(1000))
    assert sizes(splunk_fake) == [100] * 10
    assert {(r["status"], r["attempts"]) for r in records} == {("delivered", 1)}


async def test_ten_thousand_changes__batch_size_100__at_most_100_requests_each_once(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given Splunk at batch_size 100
    await configure(service, splunk_fake, batch_size=100, flush_interval=120)
    # When 10,000 keys change
    ids = await change(service, 10_000)
    # Then at most 100 HEC requests carry them, every change indexed exactly once
    splunk_fake.wait_for_messages(10_000, timeout_s=120)
    records = await wait_ledger(service, ids, timeout_s=60)
    assert Counter(splunk_fake.indexed_keys()) == Counter(f"app.k{i}" for i in range(10_000))
    assert len(splunk_fake.event_posts()) <= 100
    assert {r["status"] for r in records} == {"delivered"}


async def test_few_changes__fewer_than_batch_size__flushed_after_flush_interval(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given a flush interval of 2 s and a batch size of 100
    await configure(service, splunk_fake, batch_size=100, flush_interval=2)
    # When three keys change
    started = time.time()
    ids = await change(service, 3)
    # Then they are held, then sent together, one request, about 2 s after the first
    splunk_fake.wait_for_messages(3, timeout_s=10)
    assert sizes(splunk_fake) == [3]
    waited_s = splunk_fake.event_posts()[0].received_at - started
    assert 1.9 <= waited_s <= 8
    assert {r["status"] for r in await wait_ledger(service, ids)} == {"delivered"}


async def test_hec_busy_storm__next_5_requests_503__ridden_out_nothing_lost_or_doubled(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given HEC answers the next five requests "Server is busy" (503 code 9)
    await configure(service, splunk_fake, batch_size=10, flush_interval=120)
    splunk_fake.storm(5)
    # When 30 keys change (three batches)
    ids = await change(service, 30)
    # Then the batches are retried until HEC takes them: each change indexed once
    records = await wait_ledger(service, ids, timeout_s=45)
    assert {r["status"] for r in records} == {"delivered"}
    assert Counter(splunk_fake.indexed_keys()) == Counter(f"app.k{i}" for i in range(30))
    answers = [status for method, status, _ in splunk_fake._answers if method == "POST"]
    assert answers.count(503) == 5 and answers.count(200) == 3
    assert max(r["attempts"] for r in records) >= 2


async def test_partial_failure__hec_code_6_for_one_event__it_is_dead_later_ones_resent_once(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given HEC refuses the envelope of app.k2 (code 6, invalid-event-number 2)
    await configure(service, splunk_fake, batch_size=5, flush_interval=120)
    splunk_fake.refuse_events(lambda envelope: envelope["event"]["config_key"] == "app.k2")
    # When five keys change (one batch)
    ids = await change(service, 5)
    records = await wait_ledger(service, ids)
    # Then app.k2 is dead with HEC's text; the others are indexed exactly once
    assert [r["status"] for r in records] == ["delivered", "delivered", "dead", "delivered",
                                              "delivered"]
    assert "Invalid data format" in records[2]["last_error"]
    assert "code 6" in records[2]["last_error"]
    assert splunk_fake.indexed_keys() == ["app.k0", "app.k1", "app.k3", "app.k4"]
    assert sizes(splunk_fake) == [5, 2]


async def test_invalid_token__hec_code_4__whole_batch_dead_at_once_without_the_token(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given a token HEC does not know
    await configure(service, splunk_fake, batch_size=3, flush_interval=120,
                    hec_token="00000000-0000-0000-0000-00000000dead")
    # When three keys change
    records = await wait_ledger(service, await change(service, 3))
    # Then all three are dead after one attempt, with HEC's text and no token
    assert {(r["status"], r["attempts"]) for r in records} == {("dead", 1)}
    assert all("Invalid token" in r["last_error"] for r in records)
    assert all("0000-00000000dead" not in r["last_error"] for r in records)
    assert len(splunk_fake.event_posts()) == 1 and splunk_fake.messages() == []


async def test_rate_limited__429_retry_after_2__batch_resent_no_sooner(
        service: ConfigService, splunk_fake: FakeSplunk) -> None:
    # Given HEC answers the next request 429 with Retry-After: 2
    await configure(service, splunk_fake, batch_size=3, flush_interval=120)
    splunk_fake.fail_next(429, method="POST", retry_after_s=2)
    # When three keys change
    records = await wait_ledger(service, await change(service, 3))
    # Then the batch is delivered on its second attempt, at least 2 s after the first
    assert {(r["status"], r["attempts"]) for r in records} == {("delivered", 2)}
    first, second = splunk_fake.event_posts()
    assert second.received_at - first.received_at >= 2.0
    assert sorted(splunk_fake.indexed_keys()) == ["app.k0", "app.k1", "app.k2"]
