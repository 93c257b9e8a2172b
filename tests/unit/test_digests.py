"""Chat digests: with integrations.batching set, changes within batch_timeout become one message."""

from __future__ import annotations

from config_core import ConfigService
from tests.fakes.discord import FakeDiscord
from tests.fakes.slack import FakeSlack
from workers import batches


def settle(service: ConfigService, connector: str) -> None:
    """Send what the set-up changes left in the buffer, so a test starts empty."""
    batches.flush(service.namespace.name, connector, force=True)

async def test_slack_digest__batch_size_changes__one_message_listing_all(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    # Given digests of up to 10 changes
    url = slack_fake.add_webhook()
    await service.set_config("integrations.batching", {"batch_size": 10, "batch_timeout": 5})
    await service.set_config("integrations.slack", {"webhook_url": url})
    settle(service, "slack")
    slack_fake.reset()
    # When 10 changes arrive (one of them trying to ping the channel)
    ids = [(await service.set_config(f"app.k{i}", f"v{i}", changed_by="ops")).event_id
           for i in range(9)]
    ids.append((await service.set_config("app.k9", "<!channel>")).event_id)
    # Then Slack got one digest naming every key, with the ping escaped
    [message] = slack_fake.messages(url)
    text = str(message["blocks"])
    assert "10 Configuration Changes" in message["text"]
    assert all(f"app.k{i}" in text for i in range(10)) and "<!channel>" not in str(message)
    statuses = [(await service.get_deliveries(e))[0]["status"] for e in ids]
    assert statuses == ["delivered"] * 10


async def test_slack_digest__high_urgency__sent_at_once_not_held(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    url = slack_fake.add_webhook()
    await service.set_config("integrations.batching", {"batch_size": 10, "batch_timeout": 5})
    await service.set_config("integrations.notifications", {"triggers": {
        "db": {"patterns": ["*.database.*"], "connectors": ["slack"], "urgency": "high"},
        "rest": {"patterns": ["app.*"], "connectors": ["slack"], "urgency": "low"}}})
    await service.set_config("integrations.slack", {"webhook_url": url})
    slack_fake.reset()
    held = await service.set_config("app.cache.ttl", 30)
    urgent = await service.set_config("app.database.host", "db2")
    assert (await service.get_deliveries(urgent.event_id))[0]["status"] == "delivered"
    assert (await service.get_deliveries(held.event_id))[0]["status"] == "batched"
    [message] = slack_fake.messages(url)
    assert "app.database.host" in str(message) and "Configuration Changed" in message["text"]
    # a digest of one is the usual message
    batches.flush(service.namespace.name, "slack", force=True)
    assert "app.cache.ttl" in str(slack_fake.messages(url)[-1]["blocks"])


async def test_discord_digest__several_changes__one_embed_no_mentions(
        service: ConfigService, discord_fake: FakeDiscord) -> None:
    url = discord_fake.add_webhook()
    await service.set_config("integrations.batching", {"batch_size": 3, "batch_timeout": 5})
    await service.set_config("integrations.discord", {"webhook_url": url})
    settle(service, "discord")
    discord_fake.reset()
    for i in range(3):
        await service.set_config(f"app.k{i}", "@everyone" if i == 0 else i)
    [message] = discord_fake.messages(url)
    embed = message["embeds"][0]
    assert embed["title"] == "🔧 3 Configuration Changes"
    assert all(f"app.k{i}" in embed["description"] for i in range(3))
    assert message["allowed_mentions"] == {"parse": []} and "@everyone" not in str(message)


async def test_digest__batching_unset__one_message_per_change(
        service: ConfigService, slack_fake: FakeSlack) -> None:
    url = slack_fake.add_webhook()
    await service.set_config("integrations.slack", {"webhook_url": url})
    slack_fake.reset()
    for i in range(3):
        await service.set_config(f"app.k{i}", i)
    assert len(slack_fake.messages(url)) == 3
