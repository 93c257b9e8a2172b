"""Rotating Zendesk's API token while a real worker delivers: no delivery fails."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from config_core import ConfigService, SetResult
from tests.fakes.zendesk import FakeZendesk
from tests.integration.conftest import all_in, settle, wait_for_deliveries

pytestmark = pytest.mark.integration

CHANGES_PER_PHASE = 8


@pytest.fixture
def zendesk_fake() -> Iterator[FakeZendesk]:
    with FakeZendesk() as fake:
        yield fake


async def changes(service: ConfigService, first: int) -> list[SetResult]:
    return [await service.set_config(f"app.rotation.k{i}", i)
            for i in range(first, first + CHANGES_PER_PHASE)]


async def all_delivered(service: ConfigService, results: list[SetResult]) -> None:
    for result in results:
        await wait_for_deliveries(service, result.event_id or "", all_in("delivered"))


async def test_rotate_secret__vendor_overlap_then_new_token_only__every_delivery_succeeds(
        service: ConfigService, zendesk_fake: FakeZendesk) -> None:
    # Given zendesk ticketing every change with the token the vendor accepts
    old, new = zendesk_fake.api_token, "rotated-" + secrets.token_urlsafe(24)
    await settle(service, "integrations.zendesk", {
        "base_url": zendesk_fake.base_url, "email": zendesk_fake.email, "api_token": old,
        "ticket_all_changes": True})
    zendesk_fake.reset()
    before = await changes(service, 0)
    # When the vendor accepts old and new tokens (the overlap), and the token is rotated
    # while changes keep coming
    zendesk_fake.accept_tokens(old, new)
    racing, rotation = await asyncio.gather(
        changes(service, CHANGES_PER_PHASE),
        service.rotate_secret("integrations.zendesk.api_token", new,
                              changed_by="secops@company.com", reason="quarterly rotation"))
    after_rotation = await changes(service, 2 * CHANGES_PER_PHASE)
    await all_delivered(service, before + racing + after_rotation)
    # And then the vendor retires the old token
    zendesk_fake.accept_tokens(new)
    after_overlap = await changes(service, 3 * CHANGES_PER_PHASE)
    await all_delivered(service, after_overlap)
    # Then the vendor refused no request, and every change has its one ticket
    assert zendesk_fake.auth_refusals == 0
    assert len(zendesk_fake.tickets()) == 4 * CHANGES_PER_PHASE
    # And the rotation itself was routed like any event (zendesk tickets no rotations)
    [row] = await wait_for_deliveries(service, rotation.event_id or "", all_in("skipped"))
    assert row["connector"] == "zendesk"
    assert await service.get_config("integrations.zendesk.api_token", reveal=True) == new
