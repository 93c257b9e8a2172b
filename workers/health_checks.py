"""The health tick: celery beat checks every connector of every namespace.

Each namespace is checked through the service's ``check_integration_health``, the same code
``apgcfg health`` runs: vendor check plus delivery history, the status recorded, a change
emitted as an event, and a paused connector whose vendor check passes resumed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from config_core import settings
from config_core.service import ConfigService
from config_core.state import events

log = logging.getLogger(__name__)


def tick(client: Any) -> int:
    """Check every namespace; returns how many connectors were checked."""
    checked = 0
    for ns in events.namespaces(client):
        try:
            checked += asyncio.run(_check(ns.tenant, ns.environment))
        except Exception as exc:  # noqa: BLE001 - one namespace must not stop the others
            log.warning("health check of %s failed: %s", ns.name, exc)
    return checked


async def _check(tenant: str, environment: str) -> int:
    service = ConfigService(settings.redis_url(), environment=environment, tenant=tenant)
    async with service:
        return len(await service.check_integration_health())
