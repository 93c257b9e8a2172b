"""The two baselines set_config is compared with: a bare Celery publish and a raw transaction."""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis
import redis.asyncio as aioredis
from celery import Celery

from config_core.settings import client_url

APPLY_QUEUE = "bench.apply"
"""Queue the bare Celery task is published to; nobody consumes it, it is purged afterwards."""

RAW_PREFIX = "bench:raw:"
"""Keys written by the raw MULTI/EXEC baseline."""


def _noop(key: str, value: Any) -> None:
    """The trivial task: never run, only published."""


class BareCelery:
    """A separate Celery app on the bench database: JSON, no result backend, one trivial task."""

    def __init__(self, url: str) -> None:
        self.app = Celery("bench-bare", broker=url, set_as_current=False)
        self.app.conf.update(task_serializer="json", accept_content=["json"],
                             task_ignore_result=True, task_default_queue=APPLY_QUEUE,
                             broker_connection_retry_on_startup=True)
        self.task = self.app.task(name="bench.noop")(_noop)

    def publish(self, keys: list[str]) -> None:
        for key in keys:
            self.task.apply_async(args=[key, f"value-{key}"])

    def close(self) -> int:
        """Purge what was published; return how many messages the queue held."""
        with self.app.connection_for_write() as conn:
            purged = int(conn.default_channel.queue_purge(APPLY_QUEUE) or 0)
        self.app.close()
        return purged


def _raw_documents(key: str) -> tuple[str, str, str]:
    """Value, history entry and event JSON of one change, as small as the service's."""
    value = json.dumps(f"value-{key}")
    event_id = uuid.uuid4().hex
    history = json.dumps({"op": "set", "key": key, "value": value, "event_id": event_id})
    event = json.dumps({"event_id": event_id, "type": "config.changed", "key": key,
                        "new_value": value, "version": 1})
    return value, history, event


def _queue_change(pipe: Any, key: str) -> None:
    value, history, event = _raw_documents(key)
    pipe.hset(f"{RAW_PREFIX}cfg:{key}", mapping={"value": value, "version": 1})
    pipe.lpush(f"{RAW_PREFIX}history:{key}", history)
    pipe.xadd(f"{RAW_PREFIX}outbox", {"e": event})


class RawMulti:
    """Per change one MULTI/EXEC: HSET value+version, LPUSH history, XADD event (sync client)."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(client_url(url), decode_responses=True)

    def write(self, keys: list[str]) -> None:
        for key in keys:
            pipe = self.client.pipeline(transaction=True)
            _queue_change(pipe, key)
            pipe.execute()

    def close(self) -> None:
        self.client.close()


class RawMultiAsync:
    """The same transaction through ``redis.asyncio``, the client ``set_config`` uses."""

    def __init__(self, url: str) -> None:
        self.client = aioredis.Redis.from_url(client_url(url), decode_responses=True)

    async def write(self, keys: list[str]) -> None:
        for key in keys:
            async with self.client.pipeline(transaction=True) as pipe:
                _queue_change(pipe, key)
                await pipe.execute()

    async def close(self) -> None:
        await self.client.aclose()
