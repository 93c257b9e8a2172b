"""Worker bootsteps, each a thread of the worker's main process.

``RelayStep`` runs the outbox relay. The thread is supervised: should the relay ever return or
raise, it is started again after a short pause, and ``celery -A workers inspect relay_status``
tells whether it is alive. ``RateLimitStep`` keeps the delivery tasks' rate limits in step
with ``integrations.<name>.rate_limit`` (see ``workers.rate_limits``).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import bootsteps
from celery.worker.control import inspect_command

from config_core import settings
from workers import rate_limits
from workers.outbox_reader import relay_urgencies
from workers.redis_client import connect
from workers.relay import Relay, consumer_name

log = logging.getLogger(__name__)

RESTART_PAUSE_MAX_S = 30.0
"""Longest pause before a relay that stopped is started again."""

_running: RelayStep | None = None


class RelayStep(bootsteps.StartStopStep):
    """Start the outbox relay with the worker, keep it running, stop it on shutdown."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.enabled = os.environ.get("APGCFG_RELAY", "1") != "0"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relay: Relay | None = None

    def start(self, worker: Any) -> None:
        global _running
        self.relay = Relay(connect(settings.redis_url()), consumer_name(), relay_urgencies())
        self._thread = threading.Thread(target=self.supervise, name="apgcfg-outbox-relay",
                                        daemon=True)
        self._thread.start()
        _running = self
        log.info("outbox relay started as consumer %s, reading urgencies %s",
                 self.relay.consumer, ",".join(self.relay.urgencies))

    def supervise(self) -> None:
        """Run the relay until the worker stops, starting it again whenever it ends."""
        assert self.relay is not None
        while not self._stop.is_set():
            try:
                self.relay.run(self._stop)
            except Exception as exc:
                self.relay.health.error(exc)
                log.exception("outbox relay stopped")
            if self._stop.is_set():
                return
            self.relay.health.restarts += 1
            pause_s = min(RESTART_PAUSE_MAX_S, 2.0 ** self.relay.health.restarts)
            log.error("outbox relay ended unexpectedly; restart %d in %.0f s",
                      self.relay.health.restarts, pause_s)
            self._stop.wait(pause_s)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class RateLimitStep(bootsteps.StartStopStep):
    """Apply the configured rate limits to this worker's delivery tasks when they change."""

    requires = ("celery.worker.components:Pool",)

    FIRST_SYNC_S = 1.0
    """Pause before the first sync: the worker's control channel is up by then."""

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        self._thread = threading.Thread(target=self.run, args=(worker.app, worker.hostname),
                                        name="apgcfg-rate-limits", daemon=True)
        self._thread.start()

    def run(self, app: Any, hostname: str) -> None:
        """Sync every ``SYNC_EVERY_S`` until the worker stops; a failure waits for the next."""
        client = connect(settings.redis_url())
        wait_s = self.FIRST_SYNC_S
        while not self._stop.wait(wait_s):
            wait_s = rate_limits.SYNC_EVERY_S
            try:
                rate_limits.sync(app, client, hostname)
            except Exception as exc:  # noqa: BLE001 - Redis or broker down: try again later
                log.warning("rate limits not synced: %s: %s", type(exc).__name__, exc)

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@inspect_command()
def relay_status(state: Any) -> dict[str, Any]:
    """``celery -A workers inspect relay_status``: whether this worker's relay runs."""
    step = _running
    if step is None or step.relay is None:
        return {"relay": "off"}
    health = step.relay.health
    return {"relay": "alive" if step.alive() else "dead", "consumer": health.consumer,
            "urgencies": health.urgencies,
            "dispatched": health.dispatched, "poisoned": health.poisoned,
            "reconciled": health.reconciled, "errors": health.errors,
            "restarts": health.restarts, "last_error": health.last_error,
            "backlog": health.backlog}
