"""A custom batched connector: batches land in a list (eager tests run it in-process)."""

from __future__ import annotations

from typing import Any, ClassVar

from connectors import BaseConnector, Rejected, Unavailable
from connectors.errors import PartialFailure
from connectors.settings import Setting

BATCHES: list[list[dict[str, Any]]] = []
"""Every batch sent, in order."""

SCRIPT: list[str] = []
"""What the next sends do: "busy" (503), "partial:N" (item N refused), "" (accept)."""


class ListConnector(BaseConnector):
    """Sends batches of prepared events to ``BATCHES``."""

    batched: ClassVar[bool] = True
    settings = (Setting("batch_size", kind=int, default=3),
                Setting("flush_interval", kind=(int, float), default=30))

    def batch_policy(self, event: dict[str, Any], batching: dict[str, Any]
                     ) -> tuple[int, float]:
        return self.config["batch_size"], self.config["flush_interval"]

    def prepare(self, event: dict[str, Any]) -> dict[str, Any]:
        return {"key": event["key"], "value": event["new_value"]}

    def send_batch(self, items: list[Any]) -> None:
        step = SCRIPT.pop(0) if SCRIPT else ""
        if step == "busy":
            raise Unavailable("vendor busy", status=503)
        if step.startswith("partial:"):
            cut = int(step.split(":")[1])
            BATCHES.append(items[:cut])
            raise PartialFailure("cut", failed_index=cut, error=Rejected(f"item {cut} is bad"))
        BATCHES.append(items)

    def send_notification(self, event: dict[str, Any]) -> None:
        self.send_batch([self.prepare(event)])
