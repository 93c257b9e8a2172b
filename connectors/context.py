"""What a connector may ask of the delivery in progress: no duplicates, follow-ups, notes.

The worker gives each connector a Redis-backed context before it sends (``workers.context``);
``MemoryContext`` is the same contract in memory, for unit tests and direct calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FollowUp:
    """Run ``connector.follow_up(state)`` again after ``delay_s`` (e.g. poll a build)."""

    state: dict[str, Any]
    delay_s: float


class DeliveryContext:
    """The contract; every method has a memory implementation in ``MemoryContext``."""

    event_id: str = ""
    connector: str = ""

    def created(self, step: str) -> dict[str, Any] | None:
        """The dedupe record of ``step`` for this event: ``{"state": ..., "ref": ...}``."""
        raise NotImplementedError

    def mark(self, step: str, state: str, ref: dict[str, Any] | None = None) -> None:
        """Record that ``step`` is ``creating`` (outcome unknown) or ``created`` (``ref``)."""
        raise NotImplementedError

    def forget(self, step: str) -> None:
        """The vendor refused ``step``: nothing was created, so a retry may create it."""
        raise NotImplementedError

    def follow_up(self, state: dict[str, Any], delay_s: float) -> None:
        """Call ``follow_up(state)`` on this connector after ``delay_s``, without waiting now.

        ``state`` is a task argument, shown in Flower: ids and URLs, never a secret.
        """
        raise NotImplementedError

    def add_note(self, note: dict[str, Any]) -> None:
        """Attach ``note`` to the changed key's history entry and to this delivery's ledger."""
        raise NotImplementedError

    def emit(self, event_type: str, metadata: dict[str, Any]) -> str:
        """Record a new event about the same key (routed like any other); return its id."""
        raise NotImplementedError

    def claim_newest(self, key: str, version: int) -> int | None:
        """Claim ``version`` as the newest of ``key`` this connector acts on.

        Returns None when this version may go ahead, or the newer version already claimed
        (this one is stale and must not start).
        """
        raise NotImplementedError


@dataclass
class MemoryContext(DeliveryContext):
    """An in-memory context: what a test can inspect after a connector ran."""

    event_id: str = "event"
    connector: str = "connector"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    follow_ups: list[FollowUp] = field(default_factory=list)
    notes: list[dict[str, Any]] = field(default_factory=list)
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    newest: dict[str, int] = field(default_factory=dict)

    def created(self, step: str) -> dict[str, Any] | None:
        return self.records.get(step)

    def mark(self, step: str, state: str, ref: dict[str, Any] | None = None) -> None:
        self.records[step] = {"state": state, "ref": ref}

    def forget(self, step: str) -> None:
        self.records.pop(step, None)

    def follow_up(self, state: dict[str, Any], delay_s: float) -> None:
        self.follow_ups.append(FollowUp(state, delay_s))

    def add_note(self, note: dict[str, Any]) -> None:
        self.notes.append(note)

    def emit(self, event_type: str, metadata: dict[str, Any]) -> str:
        self.emitted.append((event_type, metadata))
        return f"emitted-{len(self.emitted)}"

    def claim_newest(self, key: str, version: int) -> int | None:
        newest = self.newest.get(key, 0)
        if newest > version:
            return newest
        self.newest[key] = version
        return None
