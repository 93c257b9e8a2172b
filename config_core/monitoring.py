"""The service's side of connector health: checks, pause and resume (a ``ConfigService`` mixin).

``check_integration_health`` runs each connector's vendor check and reads its health record,
records the status (a change is an ``integration.unhealthy`` / ``integration.recovered``
event), and resumes a paused connector whose check asks the vendor and passes. Celery beat runs
it every ``APGCFG_HEALTH_CHECK_INTERVAL_S`` for every namespace; ``apgcfg health`` runs it too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from config_core import health, hooks
from config_core.errors import IntegrationError
from config_core.state import directory, events
from config_core.state import health as records
from config_core.state.values import event_only

log = logging.getLogger(__name__)


class HealthMonitoring:
    """Mixed into ``ConfigService`` (which provides ``store``, ``namespace`` and the rest)."""

    store: Any
    namespace: Any
    tenant: str
    environment: str

    async def check_integration_health(self) -> dict[str, dict[str, Any]]:
        """Each configured connector's health: ``status`` (healthy, unhealthy or error),
        ``last_check``, ``error`` when not healthy (secrets masked), the failure streak and
        whether it is paused. A change of status is emitted as an event."""
        names = await self.configured_connectors()  # type: ignore[attr-defined]
        settings = await self._health_settings()
        results = await asyncio.gather(*(self._health(name, settings) for name in names))
        await self._dispatch_inline()  # type: ignore[attr-defined]
        return dict(zip(names, results, strict=True))

    async def connectors(self) -> list[dict[str, Any]]:
        """Configured connectors with their recorded health, pause and waiting deliveries."""
        found = []
        for name in await self.configured_connectors():  # type: ignore[attr-defined]
            record = await self.store.redis.hgetall(records.record_key(self.namespace, name))
            found.append({
                "name": name, "status": record.get("status") or "unchecked",
                "paused": records.is_paused(record),
                "paused_reason": record.get("paused_reason"),
                "consecutive_failures": records.failures(record),
                "waiting": await self.store.redis.zcard(records.line_key(self.namespace, name)),
                "last_error": record.get("last_error"),
                "last_check": record.get("last_check")})
        return found

    async def pause_connector(self, name: str, *, reason: str | None = None) -> dict[str, Any]:
        """Pause ``name``: its deliveries wait, in order, until it is resumed."""
        await self._known(name)
        key = records.record_key(self.namespace, name)
        if await self.store.redis.hget(key, "paused") != "1":
            await self.store.redis.hset(key, mapping={
                "paused": "1", "paused_at": time.time(),
                "paused_reason": (reason or "paused by hand")[:300]})
        return await self._listed(name)

    async def resume_connector(self, name: str) -> dict[str, Any]:
        """Lift ``name``'s pause; its waiting deliveries go out in order. The failure streak
        stays, so a first failure pauses it again."""
        await self._known(name)
        await self._resume(name)
        await self._dispatch_inline()  # type: ignore[attr-defined]
        return await self._listed(name)

    # ---------------------------------------------------------------------------------------

    async def _resume(self, name: str) -> None:
        async with self.store.redis.pipeline(transaction=True) as pipe:
            pipe.hdel(records.record_key(self.namespace, name), "paused", "paused_at",
                      "paused_reason")
            pipe.xadd(events.outbox_key(self.namespace), events.drain_request(name))
            events.register(pipe, self.namespace)
            await pipe.execute()

    async def _known(self, name: str) -> None:
        if name not in await self.configured_connectors():  # type: ignore[attr-defined]
            raise KeyError(f"connector {name!r} is not configured")

    async def _listed(self, name: str) -> dict[str, Any]:
        return next(c for c in await self.connectors() if c["name"] == name)

    async def _health_settings(self) -> dict[str, Any]:
        stored, _ = await self.store.read("integrations.health")
        return json.loads(stored) if stored else {}

    async def _vendor_check(self, name: str) -> tuple[Any, bool | None, str | None]:
        """(the connector or None, its check's answer or None when it raised, the error)."""
        connector: Any = None
        try:
            connector = await self._plain_connector(name)
            return connector, bool(await connector.health_check()), None
        except Exception as exc:  # noqa: BLE001 - reported, not raised: one bad connector
            text = f"{type(exc).__name__}: {exc}"
            if connector is not None:
                text = connector.connector.redact(text)
            return connector, None, text

    async def _plain_connector(self, name: str) -> Any:
        cls = await self._connector_class(name)  # type: ignore[attr-defined]
        stored, _ = await self.store.read("integrations." + name)
        if cls is None or stored is None:
            raise KeyError(f"connector {name!r} is not configured")
        return hooks.catalog().wrap_async(cls.from_stored(name, json.loads(stored)))

    async def _judged(self, name: str, settings: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        connector, check_ok, error = await self._vendor_check(name)
        key = records.record_key(self.namespace, name)
        record = await self.store.redis.hgetall(key)
        if records.is_paused(record) and check_ok and connector.connector.probes_vendor():
            await self._resume(name)
            await self._dispatch_inline()  # type: ignore[attr-defined]
            record = await self.store.redis.hgetall(key)
        return connector, health.judge(check_ok, error, record, settings)

    async def _health(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        connector, result = await self._judged(name, settings)
        if connector is not None and not connector.connector.receives_events:
            sync = await self.store.redis.hgetall(directory.meta_key(self.namespace, name))
            result["sync"] = sync or {"status": "never synced"}
            if sync.get("status") == "error":
                result["status"] = "unhealthy"
        previous = await self.store.redis.eval(
            records.TRANSITION_SCRIPT, 1, records.record_key(self.namespace, name),
            result["status"], result["last_check"])
        change = health.change_event(self.tenant, self.environment, name, previous or "",
                                     result)
        if change is not None:
            try:
                await self.store.write(event_only(change, "null"))
            except IntegrationError as exc:  # the check's answer stands; the event could not
                log.warning("could not record %s for %s: %s", change.type, name, exc)
        return result


class MonitoredConnector:
    """What ``get_connector`` returns: the connector, whose ``health_check`` also weighs its
    recent deliveries and its pause (as ``check_integration_health`` does)."""

    def __init__(self, inner: Any, service: HealthMonitoring, name: str) -> None:
        self._inner = inner
        self._service = service
        self._name = name

    async def health_check(self) -> bool:
        settings = await self._service._health_settings()
        _, result = await self._service._judged(self._name, settings)
        return bool(result["status"] == "healthy")

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._inner, attribute)

    def __repr__(self) -> str:
        return repr(self._inner)
