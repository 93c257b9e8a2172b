"""Async Redis access for the service: the atomic write and the reads around it.

The keys and scripts belong to the modules of ``config_core.state``; this class only issues
their commands from async code.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config_core import settings
from config_core.errors import IntegrationError
from config_core.state import approvals, events, ledger, relays, values
from config_core.state.keys import Namespace
from config_core.state.values import WRITE_SCRIPT, Applied, Write, applied_from, parse_done


class Store:
    """One tenant-environment's data in Redis."""

    def __init__(self, url: str, namespace: Namespace) -> None:
        self.url = url
        self.ns = namespace
        # decode_responses=True: every reply is str, which redis-py's stubs cannot express.
        self.redis: Any = aioredis.from_url(settings.client_url(url), decode_responses=True)
        self._write = self.redis.register_script(WRITE_SCRIPT)
        self._approval_scripts = {
            "create": self.redis.register_script(approvals.CREATE_SCRIPT),
            "decide": self.redis.register_script(approvals.DECIDE_SCRIPT)}

    async def write(self, w: Write) -> Applied:
        """Apply one change atomically.

        The client sends the script again when a connection drops; the change's idempotency key
        makes that safe (a second run applies nothing). Should Redis stop answering for good,
        the idempotency key tells whether the change was applied before it did.
        """
        try:
            reply = await self._run_write(w.args(self.ns))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            return await self._settle(w, exc)
        except RedisError as exc:
            raise IntegrationError(
                f"change to {w.change.key!r} was not applied: Redis refused the write ({exc})"
            ) from exc
        return applied_from(reply, self.ns, w)

    async def _run_write(self, args: list[Any]) -> Any:
        """EVALSHA of the write script (loaded again after a Redis restart or SCRIPT FLUSH).

        A plain EVALSHA rather than redis-py's ``Script`` call, which checks its client's type
        and copies the arguments on every call: a set_config is one round trip, and this is
        its hot path."""
        try:
            return await self.redis.evalsha(self._write.sha, 0, *args)
        except NoScriptError:
            await self.redis.script_load(WRITE_SCRIPT)
            return await self.redis.evalsha(self._write.sha, 0, *args)

    async def _settle(self, w: Write, exc: RedisError) -> Applied:
        """After a lost connection: the write's outcome, or the error that says it."""
        key, idempotency_key = w.change.key, w.change.idempotency_key
        try:
            done = await self.redis.get(values.written_key(self.ns, idempotency_key))
        except RedisError:
            raise IntegrationError(
                f"outcome of the change to {key!r} is unknown: Redis stopped answering ({exc}); "
                f"call again with idempotency_key={idempotency_key!r} to apply it exactly once"
            ) from exc
        if done:
            return parse_done(done)
        raise IntegrationError(
            f"change to {key!r} was not applied: Redis dropped the connection ({exc})") from exc

    async def read(self, storage_key: str, field: str = "value") -> tuple[str | None, int]:
        """The stored JSON (``field``: value, or masked) and version of ``storage_key``
        (None, version when unset)."""
        value, version = await self.redis.hmget(values.value_key(self.ns, storage_key), field,
                                                 "version")
        return value, int(version or 0)

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        if not prefix:
            return await self.redis.zrange(values.index_key(self.ns), 0, -1)
        return await self.redis.zrangebylex(values.index_key(self.ns), f"[{prefix}",
                                           f"[{prefix}\xff")

    async def read_many(self, keys: list[str], field: str = "value") -> list[str | None]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(values.value_key(self.ns, key), field)
            return await pipe.execute()

    async def history(self, key: str, limit: int) -> list[dict[str, Any]]:
        """History entries, newest first, each with the notes added to its version."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lrange(values.history_key(self.ns, key), 0, limit - 1)
            pipe.hgetall(values.notes_key(self.ns, key))
            entries, notes = await pipe.execute()
        found = [json.loads(item) for item in entries]
        for entry in found:
            entry["notes"] = json.loads(notes.get(str(entry["version"]), "[]"))
        return found

    async def deliveries(self, event_id: str) -> list[dict[str, Any]]:
        return ledger.public_rows(await self.redis.hgetall(ledger.rows_key(self.ns, event_id)))

    async def dead(self, limit: int) -> list[tuple[str, str]]:
        members = await self.redis.zrevrange(ledger.dead_key(self.ns), 0, limit - 1)
        pairs = (member.rsplit(":", 1) for member in members)
        return [(event_id, connector) for event_id, connector in pairs]

    async def registered_class(self, name: str) -> str | None:
        return await self.redis.hget(values.registry_key(self.ns), name)

    async def registered(self) -> dict[str, str]:
        return await self.redis.hgetall(values.registry_key(self.ns))

    async def request_replay(self, event_id: str, connector: str | None) -> None:
        """Ask the relay to run a delivery again (through the outbox, like every event)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(events.outbox_key(self.ns), events.replay_request(event_id, connector))
            events.register(pipe, self.ns)
            await pipe.execute()

    async def status(self) -> dict[str, Any]:
        """Relays seen, this namespace's outbox backlog and dead deliveries."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(relays.RELAYS_KEY)
            pipe.zcard(ledger.dead_key(self.ns))
            pipe.zcard(ledger.due_key(self.ns))
            for stream in events.outbox_keys(self.ns).values():
                pipe.xlen(stream)
            stored, dead, open_, *lengths = await pipe.execute()
        by_urgency = dict(zip(events.outbox_keys(self.ns), lengths, strict=True))
        return {"namespace": self.ns.name, "relays": relays.reports(stored),
                "outbox": sum(by_urgency.values()), "outbox_by_urgency": by_urgency,
                "dead": dead, "open_deliveries": open_}

    async def approval_script(self, name: str, args: list[str]) -> list[Any]:
        """Run ``approvals``' create or decide script; its reply as is."""
        try:
            return await self._approval_scripts[name](keys=[], args=args)
        except RedisError as exc:
            raise IntegrationError(f"change request not recorded: Redis refused it ({exc})"
                                   ) from exc

    async def approval(self, request_id: str) -> dict[str, str]:
        """A change request's stored fields (empty when there is none)."""
        return await self.redis.hgetall(approvals.request_key(self.ns, request_id))

    async def approval_ids(self, limit: int) -> list[str]:
        """Change request ids, newest first."""
        return await self.redis.zrevrange(approvals.index_key(self.ns), 0, limit - 1)

    async def approvals_due(self, at: float) -> list[str]:
        """Ids of pending change requests whose time is up at ``at``."""
        return await self.redis.zrangebyscore(approvals.expiry_key(self.ns), "-inf", at)

    async def close(self) -> None:
        await self.redis.aclose()
