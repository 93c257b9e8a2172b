"""A custom connector that uses the delivery context: follow-ups, notes, emitted events."""

from __future__ import annotations

from typing import Any

from connectors import BaseConnector, Skipped
from connectors.context import FollowUp

SEEN: list[dict[str, Any]] = []
"""Every event this connector was given (eager mode runs it in the test's process)."""


class PollingConnector(BaseConnector):
    """Starts a pretend job, polls it twice, then notes the result and emits an event."""

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        SEEN.append(event)
        if event["type"] != "config.changed":
            raise Skipped(f"{event['type']} needs no job")
        stale = self.context.claim_newest(event["key"], event["version"])
        if stale is not None:
            raise Skipped(f"version {stale} was already started")
        job = self.create_once("job", lambda: {"job": f"job-{event['version']}"}, lambda: None)
        self.context.follow_up({"job": job["job"], "polls": 0}, 0)
        return job

    def follow_up(self, state: dict[str, Any]) -> FollowUp | None:
        if state["polls"] < 2:
            return FollowUp({**state, "polls": state["polls"] + 1}, 0)
        self.context.add_note({"job": state["job"], "result": "SUCCESS"})
        self.context.emit("deployment.finished", {"job": state["job"], "result": "SUCCESS"})
        return None
