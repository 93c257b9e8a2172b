"""ZendeskConnector: one ticket per event worth one, created at most once (``external_id``)."""

from __future__ import annotations

from typing import Any

from config_core.errors import ConfigError
from connectors import http
from connectors.base import BaseConnector
from connectors.errors import (
    ConnectorError,
    Misconfigured,
    RateLimited,
    TransportError,
    Unavailable,
)
from connectors.settings import Setting, http_url
from connectors.zendesk.payload import build_ticket
from connectors.zendesk.templates import (
    check_custom_fields,
    check_email,
    check_subdomain,
    check_templates,
)

VENDOR = "zendesk"
TICKETS_PATH = "/api/v2/tickets.json"
ME_PATH = "/api/v2/users/me.json"
STEP = "ticket"
"""The dedupe step of an event's ticket (``ticket:<event id>``: a connector used directly, with
one ``MemoryContext`` for many events, must not mistake one event's ticket for another's)."""


class ZendeskConnector(BaseConnector):
    """Opens a Zendesk Support ticket for errors, security violations and critical changes."""

    name = "zendesk"
    rate_limit = "1/s"
    rate_limit_source = "200 to 700 requests a minute per account, by plan"
    settings = (
        Setting("subdomain", check=check_subdomain,
                doc="`yourcompany` for https://yourcompany.zendesk.com; this or `base_url`."),
        Setting("email", required=True, check=check_email,
                doc="Agent the API token belongs to; auth is `{email}/token:{api_token}`."),
        Setting("api_token", required=True, secret=True, aliases=("api_key",),
                doc="Zendesk Admin → Channels → API → Token Access."),
        Setting("default_assignee", check=check_email,
                doc="Agent email every ticket is assigned to (`assignee_email`)."),
        Setting("ticket_templates", kind=dict, check=check_templates,
                doc="`config_change`, `config_error` (and `security_violation`): `subject` "
                    "(with `{config_key}`), `priority`, `type`, `tags`; unset fields default."),
        Setting("base_url", check=http_url,
                doc="Overrides https://{subdomain}.zendesk.com (proxies, self-hosted, fakes)."),
        Setting("custom_fields", kind=dict, check=check_custom_fields,
                doc="Event metadata (or event field) name → Zendesk custom field id."),
        Setting("ticket_all_changes", kind=bool, default=False,
                doc="Ticket every routed change, not only high-urgency (critical) ones."),
    )

    @classmethod
    def validate_config(cls, config: Any, *, partial: bool = False) -> dict[str, Any]:
        """The declared checks, plus: ``subdomain`` or ``base_url`` must say where Zendesk is."""
        checked = super().validate_config(config, partial=partial)
        if not partial and not (checked.get("subdomain") or checked.get("base_url")):
            raise ConfigError("integrations.zendesk.subdomain is required "
                              "(or base_url, for a proxy or self-hosted URL)")
        return checked

    @classmethod
    def from_stored(cls, name: str, config: dict[str, Any]) -> BaseConnector:
        """Build from a stored config; one without ``subdomain`` or ``base_url`` is unusable."""
        if not (config.get("subdomain") or config.get("base_url")):
            raise Misconfigured(f"integrations.{name} needs subdomain or base_url")
        return super().from_stored(name, config)

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Create the event's ticket once (``Skipped`` when it needs none); return its ref."""
        payload = build_ticket(event, self.config)
        external_id = payload["ticket"]["external_id"]
        return self.create_once(f"{STEP}:{external_id}", lambda: self._create(payload),
                                lambda: self.find_ticket(external_id))

    def find_ticket(self, external_id: str) -> dict[str, Any] | None:
        """The ref of the ticket carrying ``external_id``, if an earlier attempt made one."""
        response = self._call("GET", TICKETS_PATH, params={"external_id": external_id})
        found = http.json_object(response).get("tickets") or []
        tickets = [t for t in found if isinstance(t, dict)]
        if not tickets:
            return None
        return ticket_ref(min(tickets, key=lambda t: t.get("id") or 0))

    def health_check(self) -> bool:
        """True when the credentials work: ``GET /api/v2/users/me.json`` names a real user."""
        try:
            response = http.send("GET", self.api_url(ME_PATH), secrets=self.secrets(),
                                 auth=self._auth())
        except ConnectorError:
            return False
        user = http.json_object(response).get("user") if response.status_code == 200 else None
        return isinstance(user, dict) and user.get("id") is not None

    def api_url(self, path: str) -> str:
        """``path`` under ``base_url``, or under https://{subdomain}.zendesk.com."""
        base = self.config.get("base_url") or f"https://{self.config['subdomain']}.zendesk.com"
        return str(base).rstrip("/") + path

    def _create(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._call("POST", TICKETS_PATH, json=payload)
        except Unavailable as exc:
            # A 5xx after a POST leaves the outcome unknown: the next attempt looks first.
            raise TransportError(str(exc), status=exc.status,
                                 retry_after_s=exc.retry_after_s) from exc
        return ticket_ref(http.json_object(response).get("ticket") or {})

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = http.send(method, self.api_url(path), secrets=self.secrets(),
                             auth=self._auth(), **kwargs)
        if response.status_code >= 400:
            raise_for(response, self.secrets())
        return response

    def _auth(self) -> tuple[str, str]:
        return f"{self.config['email']}/token", str(self.config["api_token"])


def ticket_ref(ticket: dict[str, Any]) -> dict[str, Any]:
    """What the ledger keeps of a ticket: its id and API URL."""
    return {"ticket_id": ticket.get("id"), "ticket_url": ticket.get("url")}


def raise_for(response: Any, secrets: set[str]) -> None:
    """Raise the typed error for a failed call, with Zendesk's own error text and waits."""
    try:
        http.check(response, vendor=VENDOR, message=error_text(http.json_object(response)),
                   secrets=secrets)
    except RateLimited as exc:
        if exc.retry_after_s is None:
            exc.retry_after_s = http.parse_retry_after(response.headers.get("ratelimit-reset"))
        raise


def error_text(body: dict[str, Any]) -> str | None:
    """``RecordInvalid: Record validation errors (subject: Subject: cannot be blank)``."""
    error: Any = body.get("error")
    description: Any = body.get("description")
    if isinstance(error, dict):  # {"error": {"title": ..., "message": ...}} (403 and others)
        error, description = error.get("title"), error.get("message")
    if not error and not description:
        return None
    text = ": ".join(str(part) for part in (error, description) if part)
    details = _details_text(body.get("details"))
    return f"{text} ({details})" if details else text


def _details_text(details: Any) -> str:
    if not isinstance(details, dict):
        return ""
    parts = []
    for field, problems in details.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            text = problem.get("description") if isinstance(problem, dict) else problem
            parts.append(f"{field}: {text}")
    return "; ".join(parts)[:500]
