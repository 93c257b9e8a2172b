"""The Celery baseline of the worker side: a no-op task on a worker with the same settings.

``celery -A bench.noop worker`` reads ``workers.settings`` (the same broker transport options,
acks late, prefetch 1, task events on) and runs the no-op task with the options of a delivery
task (acks late, the same time limits). The task only counts itself, so the benchmark can tell
when the last one ran: one pipelined round trip (INCR, first and last time).
"""

from __future__ import annotations

import time
from typing import Any

import redis
from celery import Celery

from config_core.settings import client_url, redis_url
from workers.delivery import SOFT_TIME_LIMIT_S, TIME_LIMIT_S

TASK = "bench.noop"
QUEUE = "medium"
"""Where the no-op tasks wait: a queue the benchmark worker consumes, as deliveries do."""

COUNT_KEY, FIRST_KEY, LAST_KEY = "bench:noop:count", "bench:noop:first", "bench:noop:last"

app = Celery("bench-noop", set_as_current=False)
app.config_from_object("workers.settings")

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(client_url(redis_url()))
    return _client


@app.task(name=TASK, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=SOFT_TIME_LIMIT_S, time_limit=TIME_LIMIT_S)
def noop() -> None:
    """Nothing but counting: how many ran, when the first and the last ran."""
    now = time.time()
    pipe = _redis().pipeline(transaction=False)
    pipe.incr(COUNT_KEY)
    pipe.set(FIRST_KEY, now, nx=True)
    pipe.set(LAST_KEY, now)
    pipe.execute()


class NoopPublisher:
    """Publishes no-op tasks to the benchmark's broker (JSON, like the service's tasks)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.app = Celery("bench-noop-publisher", broker=url, set_as_current=False)
        self.app.conf.update(task_serializer="json", accept_content=["json"],
                             task_ignore_result=True, broker_connection_retry_on_startup=True)

    def publish(self, count: int) -> None:
        with self.app.producer_or_acquire() as producer:
            for _ in range(count):
                self.app.send_task(TASK, queue=QUEUE, producer=producer)

    def progress(self) -> tuple[int, float | None, float | None]:
        """(tasks run, epoch of the first, epoch of the last)."""
        client = redis.Redis.from_url(client_url(self.url))
        try:
            count, first, last = client.mget(COUNT_KEY, FIRST_KEY, LAST_KEY)
        finally:
            client.close()
        return int(count or 0), _float(first), _float(last)

    def reset(self) -> None:
        client = redis.Redis.from_url(client_url(self.url))
        try:
            client.delete(COUNT_KEY, FIRST_KEY, LAST_KEY)
        finally:
            client.close()

    def close(self) -> None:
        self.app.close()


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None
