"""A change is e-mailed by a real worker through a loopback SMTP relay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from config_core import ConfigService
from tests.fakes.smtp import FakeSMTP
from tests.integration.conftest import all_in, settle, wait_for_deliveries

pytestmark = pytest.mark.integration

PASSWORD = "integration-smtp-pw-5d1c"


@pytest.fixture
def relay() -> Iterator[FakeSMTP]:
    """A plain relay on loopback that requires AUTH (the session worker trusts no test CA, so
    TLS is exercised by the unit tests)."""
    with FakeSMTP(security="none", username="apg-mailer", password=PASSWORD) as fake:
        yield fake


async def test_change__email_configured__worker_sends_one_message(
        service: ConfigService, relay: FakeSMTP) -> None:
    # Given the e-mail connector configured as one dict
    await settle(service, "integrations.email", relay.config())

    # When a key changes
    result = await service.set_config("app.database.host", "prod-db.internal",
                                      changed_by="admin@company.com", reason="database migration")

    # Then the worker sends exactly one message for it, logged in, and the ledger says so
    [record] = await wait_for_deliveries(service, result.event_id, all_in("delivered"))
    assert (record["connector"], record["attempts"]) == ("email", 1)
    mine = [item for item in relay.received()
            if item.message["X-APG-Event-Id"] == result.event_id]
    assert len(mine) == 1 and mine[0].login == "apg-mailer"
    body = mine[0].message.get_content()
    assert "Key: app.database.host" in body and "New Value: prod-db.internal" in body
    assert "Reason: database migration" in body
    assert all(PASSWORD.encode() not in item.data for item in relay.received())
