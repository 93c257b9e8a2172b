"""Async Redis access for the service: the atomic write and the reads around it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from config_core import settings
from config_core.errors import AccessDenied, IntegrationError
from config_core.events import Change
from config_core.layout import DETAIL_SUFFIX, NAMESPACES_KEY, Namespace
from config_core.store_lua import WRITE_SCRIPT


def ledger_rows(stored: dict[str, str]) -> list[dict[str, Any]]:
    """The ledger rows of one event's hash, each with its later details merged in."""
    rows = []
    for name, text in stored.items():
        if name.endswith(DETAIL_SUFFIX):
            continue
        row = json.loads(text)
        row["detail"] = {**row.get("detail", {}),
                         **json.loads(stored.get(name + DETAIL_SUFFIX, "{}"))}
        rows.append(row)
    return sorted(rows, key=lambda row: row["connector"])


@dataclass(frozen=True)
class Write:
    """Everything the write script needs for one change."""

    op: str
    storage_key: str
    value_json: str
    masked_json: str
    change: Change
    masked_event_json: str
    emit: bool
    schemas_version: int = 0
    expected_version: int | None = None
    old_masked_json: str = ""
    registry: tuple[str, str] | None = None

    def args(self, ns: Namespace) -> list[str | int]:
        """The write script's arguments (the optional tail only when it is needed)."""
        change = self.change
        args: list[str | int] = [
            ns.prefix, self.op, self.storage_key, self.value_json,
            "" if self.masked_json == self.value_json else self.masked_json,
            change.event_head(self.masked_event_json) if self.emit else "",
            "" if self.op == "event" else
            change.history_head(masked_value_json=self.masked_json, local_only=not self.emit),
            self.schemas_version, change.changed_by or ""]
        if self.expected_version is not None or self.old_masked_json or self.registry:
            args += ["" if self.expected_version is None else self.expected_version,
                     self.old_masked_json, *(self.registry or ("", ""))]
        return args


def event_only(change: Change, masked_value_json: str) -> Write:
    """A write that records only an event (config.error, deployment.finished, ...)."""
    return Write("event", change.key, "null", masked_value_json, change, masked_value_json,
                 emit=True)


def write_sync(client: Any, ns: Namespace, write: Write) -> int:
    """Apply ``write`` from synchronous code (workers); same script, same refusals."""
    reply = client.register_script(WRITE_SCRIPT)(keys=[], args=write.args(ns))
    return version_from(reply, ns, write.change.key)


def version_from(reply: list[Any], ns: Namespace, key: str) -> int:
    """The new version from the script's reply, or the exception its refusal means."""
    status = reply[0]
    if status == "ok":
        return int(reply[1])
    if status == "conflict":
        raise Conflict(key)
    if status == "missing":
        raise Missing(key)
    if status == "schemas":
        raise SchemasChanged(int(reply[1]))
    if status == "denied":
        raise AccessDenied(key, role=reply[1] or None, needed=reply[2])
    if status == "backlog":
        raise IntegrationError(
            f"change to {key!r} was not applied: the outbox holds {reply[1]} undelivered "
            f"events (integrations.max_backlog is {reply[2]}); are the workers running?"
        )
    raise IntegrationError(
        f"change to {key!r} was not applied: outbox {ns.outbox!r} is a {reply[1]}, not a stream"
    )


class Conflict(Exception):
    """The key's version moved between a read and a conditional write."""


class Missing(Exception):
    """Delete of a key that has no value."""


class SchemasChanged(Exception):
    """``integrations.schemas`` changed since the value was checked; check again."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


class Store:
    """One tenant-environment's data in Redis."""

    def __init__(self, url: str, namespace: Namespace) -> None:
        self.url = url
        self.ns = namespace
        # decode_responses=True: every reply is str, which redis-py's stubs cannot express.
        self.redis: Any = aioredis.from_url(settings.client_url(url), decode_responses=True)
        self._write = self.redis.register_script(WRITE_SCRIPT)

    async def write(self, w: Write) -> int:
        """Apply one change atomically; return the new version."""
        try:
            reply = await self._write(keys=[], args=w.args(self.ns))
        except RedisError as exc:
            raise IntegrationError(
                f"change to {w.change.key!r} was not applied: Redis refused the write ({exc})"
            ) from exc
        return version_from(reply, self.ns, w.change.key)

    async def read(self, storage_key: str) -> tuple[str | None, int]:
        """The stored JSON and version of ``storage_key`` (None, version when unset)."""
        value, version = await self.redis.hmget(self.ns.value(storage_key), "value", "version")
        return value, int(version or 0)

    async def read_masked(self, storage_key: str) -> str | None:
        return await self.redis.hget(self.ns.value(storage_key), "masked")

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        if not prefix:
            return await self.redis.zrange(self.ns.index, 0, -1)
        return await self.redis.zrangebylex(self.ns.index, f"[{prefix}", f"[{prefix}\xff")

    async def read_many(self, keys: list[str]) -> list[str | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(self.ns.value(key), "value")
            return await pipe.execute()

    async def history(self, key: str, limit: int) -> list[dict[str, Any]]:
        """History entries, newest first, each with the notes added to its version."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(self.ns.history(key), 0, limit - 1)
            pipe.hgetall(self.ns.notes(key))
            entries, notes = await pipe.execute()
        found = [json.loads(item) for item in entries]
        for entry in found:
            entry["notes"] = json.loads(notes.get(str(entry["version"]), "[]"))
        return found

    async def deliveries(self, event_id: str) -> list[dict[str, Any]]:
        return ledger_rows(await self.redis.hgetall(self.ns.deliveries(event_id)))

    async def dead(self, limit: int) -> list[tuple[str, str]]:
        members = await self.redis.zrevrange(self.ns.dead, 0, limit - 1)
        pairs = (member.rsplit(":", 1) for member in members)
        return [(event_id, connector) for event_id, connector in pairs]

    async def registered_class(self, name: str) -> str | None:
        return await self.redis.hget(self.ns.connectors, name)

    async def registered(self) -> dict[str, str]:
        return await self.redis.hgetall(self.ns.connectors)

    async def request_replay(self, event_id: str, connector: str | None) -> None:
        """Ask the relay to run a delivery again (through the outbox, like every event)."""
        body = json.dumps({"replay": event_id, "connector": connector})
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.ns.outbox, {"r": body})
            pipe.sadd(NAMESPACES_KEY, self.ns.name)
            await pipe.execute()

    async def close(self) -> None:
        await self.redis.aclose()
