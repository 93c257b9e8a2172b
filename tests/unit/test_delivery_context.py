"""The delivery context: created-once objects, follow-ups, history notes, emitted events."""

from __future__ import annotations

import pytest

from config_core import ConfigService
from connectors import BaseConnector, Rejected, TransportError
from connectors.context import MemoryContext
from tests.fakes import stateful_connector
from tests.fakes.stateful_connector import PollingConnector


class Creator(BaseConnector):
    """Creates one object per call; the vendor side is a list."""

    def __init__(self, outcomes: list[Exception | None]) -> None:
        super().__init__({})
        self.vendor: list[str] = []
        self.outcomes = outcomes

    def send_notification(self, event: dict) -> dict:
        return self.create_once("ticket", self._create, self._find)

    def _create(self) -> dict:
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Rejected):
            raise outcome
        self.vendor.append("ticket")  # the vendor accepted it...
        if outcome is not None:
            raise outcome  # ...but the answer was lost
        return {"id": len(self.vendor)}

    def _find(self) -> dict | None:
        return {"id": len(self.vendor)} if self.vendor else None


def test_create_once__answer_lost_after_vendor_accepted__found_not_created_again() -> None:
    # Given a create whose answer times out after the vendor made the object
    connector = Creator([TransportError("read timed out"), None])
    with pytest.raises(TransportError):
        connector.send_notification({})
    # When the delivery is retried
    ref = connector.send_notification({})
    # Then the earlier object is found, and only one exists
    assert ref == {"id": 1} and connector.vendor == ["ticket"]
    assert connector.context.created("ticket") == {"state": "created", "ref": {"id": 1}}


def test_create_once__vendor_refused__next_attempt_creates_without_lookup() -> None:
    connector = Creator([Rejected("422 invalid"), None])
    with pytest.raises(Rejected):
        connector.send_notification({})
    assert connector.context.created("ticket") is None
    assert connector.send_notification({}) == {"id": 1}


def test_create_once__already_created__returns_ref_without_calling_vendor() -> None:
    connector = Creator([])
    connector.context = MemoryContext(records={"ticket": {"state": "created", "ref": {"id": 9}}})
    assert connector.send_notification({}) == {"id": 9}


async def test_follow_ups__eager__polled_then_noted_in_history_and_ledger_and_event_emitted(
        service: ConfigService) -> None:
    # Given a connector that starts a job and polls it
    stateful_connector.SEEN.clear()
    await service.register_connector("poller", PollingConnector({}))
    # When a key changes
    result = await service.set_config("app.database.host", "db2", changed_by="ops")
    # Then the job's result is a note on the change's history entry and on its ledger row
    [record] = await service.get_deliveries(result.event_id)
    assert record["status"] == "delivered"
    detail = record["detail"]
    assert (detail["job"], detail["result"], detail["follow_up"]["status"]) == (
        "job-1", "SUCCESS", "done")
    [entry] = await service.history("app.database.host")
    assert [(n["job"], n["result"], n["connector"]) for n in entry["notes"]] == [
        ("job-1", "SUCCESS", "poller")]
    # And a deployment.finished event was routed back like any other
    finished = [e for e in stateful_connector.SEEN if e["type"] == "deployment.finished"
                and e["metadata"]["source_event_id"] == result.event_id]
    assert [(e["key"], e["metadata"]["result"]) for e in finished] == [
        ("app.database.host", "SUCCESS")]


async def test_claim_newest__older_version_after_newer__skipped_and_ledger_says_so(
        service: ConfigService) -> None:
    await service.register_connector("poller", PollingConnector({}))
    first = await service.set_config("app.k", 1)
    second = await service.set_config("app.k", 2)
    # When version 1's delivery runs again after version 2 was started (a late replay)
    await service.replay(first.event_id)
    [old] = await service.get_deliveries(first.event_id)
    [new] = await service.get_deliveries(second.event_id)
    assert new["status"] == "delivered"
    assert old["status"] == "skipped" and "version 2 was already started" in old["detail"][
        "skipped"]
