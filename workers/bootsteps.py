"""Worker bootstep that runs the outbox relay in a thread of the worker's main process."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)


class RelayStep(bootsteps.StartStopStep):
    """Start the outbox relay with the worker and stop it on shutdown."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **options: Any) -> None:
        super().__init__(worker, **options)
        self.enabled = os.environ.get("APGCFG_RELAY", "1") != "0"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, worker: Any) -> None:
        from config_core import settings
        from workers.redis_client import connect
        from workers.relay import Relay, consumer_name

        relay = Relay(connect(settings.redis_url()), consumer_name())
        self._thread = threading.Thread(target=relay.run, args=(self._stop,),
                                        name="apgcfg-outbox-relay", daemon=True)
        self._thread.start()
        log.info("outbox relay started as consumer %s", relay.consumer)

    def stop(self, worker: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
