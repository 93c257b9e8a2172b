"""A custom connector whose vendor call goes on past the soft time limit (a stuck SDK).

It posts the event to a ``FakeCustomSystem`` (so sends are counted at the fake), then keeps
working for ``work_s`` seconds, ignoring ``SoftTimeLimitExceeded``: only the hard time limit
stops it.
"""

from __future__ import annotations

import time
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded

from connectors import BaseConnector, http


class StubbornConnector(BaseConnector):
    """Posts, then works ``work_s`` seconds whatever the soft time limit says."""

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.config['api_url']}/webhooks/config"
        headers = {"Authorization": f"Bearer {self.config['api_key']}"}
        http.check(http.send("POST", url, json={"data": event}, headers=headers),
                   vendor="stubborn")
        deadline = time.monotonic() + float(self.config.get("work_s", 30))
        while time.monotonic() < deadline:
            try:
                time.sleep(0.05)
            except SoftTimeLimitExceeded:
                continue
        return {"worked_s": self.config.get("work_s", 30)}
