"""What a delivery task raises when it did not deliver, so that Celery (and Flower) tell it.

A delivery that will run again raises ``celery.exceptions.Retry`` carrying a
``DeliveryRetrying``: the task shows RETRY with the reason. A delivery that is given up raises
``DeliveryDead``: the task ends FAILURE with the reason, instead of SUCCESS. Both reasons are
the ledger's ``last_error``, which never holds a secret.
"""

from __future__ import annotations

MAX_REASON = 500
"""Longest reason carried by an exception (the ledger keeps the full one)."""


class DeliveryError(Exception):
    """A delivery that did not reach its connector this time; ``str()`` says why."""

    def __init__(self, connector: str, reason: str) -> None:
        text = f"{connector}: {reason or 'no reason recorded'}"[:MAX_REASON]
        super().__init__(text)
        self.connector = connector

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        text = str(self)
        name, _, reason = text.partition(": ")
        return type(self), (name, reason)


class DeliveryRetrying(DeliveryError):
    """The delivery failed and runs again later (the task is retried, or parked)."""


class DeliveryDead(DeliveryError):
    """The delivery was given up: ``apgcfg dead`` lists it, ``apgcfg replay`` sends it again."""
