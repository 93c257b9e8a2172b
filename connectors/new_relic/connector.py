"""NewRelicConnector: each change or error becomes one custom event, POSTed gzip'd."""

from __future__ import annotations

import gzip
import time
from typing import Any

from connectors import http
from connectors.base import BaseConnector
from connectors.chat import digest_policy
from connectors.errors import ConnectorError, RateLimited
from connectors.new_relic.checks import (
    DEFAULT_REGION,
    GUIDE_EVENT_TYPES,
    REGION_HOSTS,
    check_account_id,
    check_api_key,
    check_custom_attributes,
    check_event_types,
    check_region,
)
from connectors.new_relic.events import build_event, health_event
from connectors.new_relic.limits import encode, limit_event, split_batches, within_window
from connectors.settings import Setting, http_url

VENDOR = "newrelic"
EVENTS_PATH = "/v1/accounts/{account_id}/events"
RATE_WINDOW_S = 60
"""New Relic counts POSTs per minute; a 429 holds for the rest of that minute."""


class NewRelicConnector(BaseConnector):
    """Sends configuration changes and errors to New Relic as custom events (Event API)."""

    name = "newrelic"
    rate_limit_source = "100,000 posts a minute per account"
    settings = (
        Setting("account_id", kind=(str, int), required=True, check=check_account_id,
                doc="Numeric account id; events go to `/v1/accounts/{account_id}/events`."),
        Setting("api_key", required=True, secret=True, check=check_api_key,
                doc="License (ingest) key, sent as `Api-Key`; other key kinds get 403."),
        Setting("region", default=DEFAULT_REGION, check=check_region,
                doc="`US` or `EU`: picks the Event API host."),
        Setting("event_types", kind=dict, default=GUIDE_EVENT_TYPES, check=check_event_types,
                doc="`config_change`, `config_error`, `performance` (and `health_check`) → "
                    "eventType: letters, digits, `_`, `:`, ≤ 255; unset kinds keep defaults."),
        Setting("custom_attributes", kind=dict, check=check_custom_attributes,
                doc="Flat string/number attributes added to every event (never overriding "
                    "the event's own, e.g. `environment`)."),
        Setting("base_url", check=http_url,
                doc="Overrides the region's host (proxies, test fakes)."),
    )

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Post the event's custom event (``Skipped`` for types New Relic does not record)."""
        custom = build_event(event, self.config)
        self.send_events([custom])
        return {"event_type": custom["eventType"]}

    def batch_policy(self, event: dict[str, Any], batching: dict[str, Any]
                     ) -> tuple[int, float] | None:
        """Changes wait for a batch when ``integrations.batching`` asks (as chat digests do);
        high-urgency changes and errors go at once."""
        return digest_policy(event, batching, critical=False)

    def prepare(self, event: dict[str, Any]) -> dict[str, Any]:
        """The change's custom event, built in the chord's header."""
        return build_event(event, self.config)

    def send_batch(self, items: list[Any]) -> dict[str, Any]:
        """Post a batch's custom events together (one request per MB)."""
        self.send_events(list(items))
        return {"events": len(items)}

    def send_events(self, events: list[dict[str, Any]]) -> None:
        """Post ``events`` in as few requests as fit 1 MB each, in order.

        A failed request raises its typed error; requests before it were accepted (New Relic
        cannot take an event back, so a retry may record those again: ``eventId`` tells).
        """
        now_s = time.time()
        ready = [limit_event(within_window(event, now_s)) for event in events]
        for batch in split_batches(ready):
            self._post(batch)

    def health_check(self) -> bool:
        """True when New Relic accepts one small ``event_types.health_check`` event.

        The ingest host has no read-only call, so checking the key, account and region means
        sending: each check records one ``ConfigurationHealthCheck`` event.
        """
        try:
            self._post([health_event(self.config, time.time())])
        except ConnectorError:
            return False
        return True

    def events_url(self) -> str:
        """``{base}/v1/accounts/{account_id}/events``; base from ``base_url`` or ``region``."""
        region = str(self.config.get("region") or DEFAULT_REGION).upper()
        base = self.config.get("base_url") or REGION_HOSTS[region]
        return str(base).rstrip("/") + EVENTS_PATH.format(account_id=self.config["account_id"])

    def _post(self, batch: list[dict[str, Any]]) -> None:
        headers = {"Api-Key": str(self.config["api_key"]), "Content-Type": "application/json",
                   "Content-Encoding": "gzip"}
        response = http.send("POST", self.events_url(), secrets=self.secrets(),
                             data=gzip.compress(encode(batch)), headers=headers)
        if response.status_code >= 400:
            raise_for(response, self.secrets())


def raise_for(response: Any, secrets: set[str], now_s: float | None = None) -> None:
    """Raise the typed error for a refused POST, with New Relic's own text.

    A 429 without ``Retry-After`` waits for the rest of the current minute.
    """
    try:
        http.check(response, vendor=VENDOR, message=error_text(response), secrets=secrets)
    except RateLimited as exc:
        if exc.retry_after_s is None:
            exc.retry_after_s = rest_of_minute_s(time.time() if now_s is None else now_s)
        raise


def rest_of_minute_s(now_s: float) -> float:
    """Seconds until New Relic's per-minute window turns over (at least 1)."""
    return max(1.0, RATE_WINDOW_S - now_s % RATE_WINDOW_S)


def error_text(response: Any) -> str | None:
    """New Relic's ``error`` (or ``message``) from a JSON body, if there is one."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    text = body.get("error") or body.get("message")
    return str(text)[:300] if text else None
