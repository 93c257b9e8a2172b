"""Pytest fixtures that run each fake for one test (import them into a conftest)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack


@pytest.fixture
def discord_fake() -> Iterator[FakeDiscord]:
    """A started FakeDiscord, stopped after the test."""
    with FakeDiscord() as fake:
        yield fake


@pytest.fixture
def slack_fake() -> Iterator[FakeSlack]:
    """A started FakeSlack, stopped after the test."""
    with FakeSlack() as fake:
        yield fake
