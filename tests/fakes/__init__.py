"""Loopback HTTP fakes of vendor APIs that enforce each vendor's documented contract."""

from tests.fakes.discord import FakeDiscord
from tests.fakes.server import RecordedRequest, Reply, ServerBase
from tests.fakes.slack import FakeSlack

__all__ = ["FakeDiscord", "FakeSlack", "RecordedRequest", "Reply", "ServerBase"]
