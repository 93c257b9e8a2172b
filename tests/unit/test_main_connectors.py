"""Custom connectors defined in ``__main__`` (a pasted script): delivered in eager mode only."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from config_core import ConfigError, ConfigService
from config_core.state.values import registry_key
from connectors import BaseConnector
from connectors.settings import Setting


def script_connector(received: list[dict[str, Any]]) -> type[BaseConnector]:
    """The guide's CustomSystemConnector as a script defines it: a class of ``__main__``."""

    async def send_notification(self: BaseConnector, event: dict[str, Any]) -> bool:
        received.append({"event": event, "api_key": self.config["api_key"]})
        return True

    return type("CustomSystemConnector", (BaseConnector,), {
        "__module__": "__main__",
        "settings": (Setting("api_url", required=True), Setting("api_key", secret=True)),
        "send_notification": send_notification,
    })


async def test_register_connector__main_class_in_eager_mode__registered_and_delivered(
        service: ConfigService, raw_redis: redis.Redis) -> None:
    # Given the guide's custom connector defined in __main__, and eager mode (the fixture)
    received: list[dict[str, Any]] = []
    cls = script_connector(received)
    # When it is registered and a key changes
    await service.register_connector("custom_system", cls({
        "api_url": "https://api.yoursystem.com", "api_key": "your-api-key"}))
    result = await service.set_config("app.database.host", "prod-db.internal")
    # Then its class path is stored as usual, and the delivery ran it in this process
    stored = raw_redis.hget(registry_key(service.namespace), "custom_system")
    assert stored == "__main__.CustomSystemConnector"
    [row] = await service.get_deliveries(result.event_id or "")
    assert (row["connector"], row["status"]) == ("custom_system", "delivered")
    assert [r["event"]["key"] for r in received][-1] == "app.database.host"
    assert received[-1]["api_key"] == "your-api-key"
    # And get_connector builds it too
    connector = await service.get_connector("custom_system")
    assert await connector.health_check() is True


async def test_register_connector__main_class_without_eager_mode__refused_saying_why(
        service: ConfigService, raw_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no eager mode: real workers will build the connector
    monkeypatch.delenv("CELERY_TASK_ALWAYS_EAGER")
    cls = script_connector([])
    # When the __main__ class is registered
    with pytest.raises(ConfigError) as refused:
        await service.register_connector("custom_system", cls({"api_url": "https://x.test"}))
    # Then the refusal says workers need an importable module, and that eager mode accepts it
    message = str(refused.value)
    assert "CustomSystemConnector" in message and "importable module" in message
    assert "CELERY_TASK_ALWAYS_EAGER=1" in message
    # And nothing was registered
    assert raw_redis.hget(registry_key(service.namespace), "custom_system") is None
