"""Fixtures shared by the unit tests."""

from tests.fakes.fixtures import discord_fake, slack_fake  # noqa: F401
from tests.unit.conftest_core import (  # noqa: F401
    eager,
    fresh_unit_database,
    raw_redis,
    service,
)
from tests.unit.loopback import loopback_only, scripted  # noqa: F401
