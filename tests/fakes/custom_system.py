"""The guide's CustomSystemConnector, as a user would write it, plus a fake of that system."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from capabilities.composition.central_configuration.integrations.enterprise_connectors import (
    BaseConnector,
)
from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply


class CustomSystemConnector(BaseConnector):
    """Custom connector for your enterprise system"""

    def __init__(self, config: dict[str, Any]):
        super().__init__(config)
        self.api_url = config["api_url"]
        self.api_key = config["api_key"]

    async def send_notification(self, event_data: dict[str, Any]) -> bool:
        """Send notification to custom system"""
        headers = {"Authorization": f"Bearer {self.api_key}"}
        payload = {
            "event_type": "configuration_changed",
            "data": event_data,
            "timestamp": datetime.utcnow().isoformat(),
        }

        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{self.api_url}/webhooks/config",
                json=payload,
                headers=headers,
            )
            return response.status_code == 200

    async def sync_data(self) -> dict[str, Any]:
        """Sync data from custom system"""
        return {}


class FakeCustomSystem(ServerBase):
    """Accepts POST /webhooks/config with the right bearer key; 401 otherwise."""

    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path != "/webhooks/config" or request.method != "POST":
            return json_reply(404, {"error": "not found"})
        if request.header("Authorization") != f"Bearer {self.api_key}":
            return json_reply(401, {"error": "bad key"})
        if not isinstance(request.json, dict) or "data" not in request.json:
            return json_reply(422, {"error": "data is required"})
        self.accept("config", request.json)
        return json_reply(200, {"ok": True})

    def webhook_key(self, url_or_path: str) -> str | None:
        return "config" if url_or_path.endswith("/webhooks/config") else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        return json_reply(status, {"error": "scripted"}, {"Retry-After": str(int(retry_after_s))})
