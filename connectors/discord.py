"""Discord: one rich embed per configuration event, posted to a channel webhook.

``build_payload`` and ``target_url`` are pure (event and config in, request out); the connector
only sends. Every Discord limit is met by truncating, never by failing, and nothing a config value
contains can ping anyone: ``allowed_mentions`` is always explicit and user text is defanged.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from config_core.routing import matches_any
from connectors import http
from connectors.base import BaseConnector
from connectors.chat import (
    DigestPolicy,
    digest_line,
    digest_title,
    event_time,
    event_title,
    fit_lines,
    guide_rows,
    truncate,
)
from connectors.errors import ConnectorError, RateLimited
from connectors.settings import Setting, dict_of_urls, http_url, list_of_str

DEFAULT_USERNAME = "APG Config Bot"
"""Name the webhook posts under unless ``username`` is set."""

TITLE_LIMIT, FIELD_NAME_LIMIT, FIELD_VALUE_LIMIT, CONTENT_LIMIT = 256, 256, 1024, 2000
DESCRIPTION_LIMIT = 4000
MAX_MENTION_IDS = 100
"""Discord's documented limits: characters, and ids per ``allowed_mentions`` list."""

EMBED_TOTAL_BUDGET = 6000 - 200
"""Discord's 6000-character embed total, less room kept for how Discord counts characters."""

ZWSP = "\u200b"
"""Zero-width space, inserted after ``@`` so that text cannot form a mention."""

URGENCY_COLORS = {"high": 0xE74C3C, "medium": 0xF39C12, "low": 0x3498DB}
DEFAULT_COLOR = 0x95A5A6
FOOTER = "APG Central Configuration"

_PING_RE = re.compile(r"@(?=everyone|here)|<@", re.IGNORECASE)
_USER_RE = re.compile(r"^(?:<@!?(\d+)>|(\d+))$")
_ROLE_RE = re.compile(r"^<@&(\d+)>$")


def check_username(value: str) -> str | None:
    """Discord's webhook-name rules: 1 to 80 characters, no "clyde" or "discord"."""
    if not 1 <= len(value) <= 80:
        return "must be 1 to 80 characters"
    lowered = value.lower()
    if "clyde" in lowered or "discord" in lowered:
        return 'must not contain "clyde" or "discord" (Discord refuses such names)'
    return None


def defang(text: str) -> str:
    """``text`` with a zero-width space after the ``@`` of ``@everyone``, ``@here`` and ``<@``."""
    return _PING_RE.sub(lambda m: m.group(0) + ZWSP, text)


def build_payload(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The webhook body for ``event`` under ``config`` (pure; limits met by truncation)."""
    content, allowed = mentions(event, config)
    payload: dict[str, Any] = {
        "username": config.get("username") or DEFAULT_USERNAME,
        "embeds": [build_embed(event)],
        "allowed_mentions": allowed,
    }
    if config.get("avatar_url"):
        payload["avatar_url"] = config["avatar_url"]
    if content:
        payload["content"] = content
    return payload


def build_embed(event: dict[str, Any]) -> dict[str, Any]:
    """One embed: title, the guide's fields in order, colour by urgency, footer, timestamp."""
    title = truncate(defang(event_title(event.get("type"))), TITLE_LIMIT)
    footer = truncate(defang(_footer_text(event)), FIELD_NAME_LIMIT)
    rows = _fields(event)
    fixed = len(title) + len(footer) + sum(len(name) for name, _ in rows)
    values = fit_values([value for _, value in rows], EMBED_TOTAL_BUDGET - fixed)
    embed: dict[str, Any] = {
        "title": title,
        "color": URGENCY_COLORS.get(event.get("urgency") or "", DEFAULT_COLOR),
        "fields": [{"name": name, "value": value, "inline": False}
                   for (name, _), value in zip(rows, values, strict=True)],
        "footer": {"text": footer},
    }
    moment = event_time(event)
    if moment:
        embed["timestamp"] = moment.isoformat()
    return embed


def _fields(event: dict[str, Any]) -> list[tuple[str, str]]:
    rows = guide_rows(event)
    return [(truncate(name, FIELD_NAME_LIMIT), truncate(defang(value), FIELD_VALUE_LIMIT))
            for name, value in rows]


def _footer_text(event: dict[str, Any]) -> str:
    parts = [f"{label} {event[label]}" for label in ("tenant", "version") if event.get(label)]
    return " · ".join([FOOTER, *parts])


def fit_values(values: list[str], budget: int) -> list[str]:
    """Shrink the longest values first until their total fits ``budget``."""
    lengths = [len(value) for value in values]
    if sum(lengths) <= budget:
        return values
    low, high = 1, max(lengths)
    while low < high:
        cap = (low + high + 1) // 2
        if sum(min(n, cap) for n in lengths) <= budget:
            low = cap
        else:
            high = cap - 1
    return [truncate(value, low) for value in values]


def mentions(event: dict[str, Any], config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``content`` pinging the configured users, and the ``allowed_mentions`` that permits it."""
    allowed: dict[str, Any] = {"parse": []}
    patterns = config.get("critical_patterns") or ()
    if not matches_any(str(event.get("key") or ""), patterns):
        return "", allowed
    tokens: list[str] = []
    ids: dict[str, list[str]] = {"users": [], "roles": []}
    for entry in config.get("mention_users") or ():
        token, kind, ident = _mention(entry.strip())
        if token in tokens or len(" ".join([*tokens, token])) > CONTENT_LIMIT:
            continue
        if kind and len(ids[kind]) >= MAX_MENTION_IDS:
            continue
        tokens.append(token)
        if kind:
            ids[kind].append(ident)
    allowed.update({kind: found for kind, found in ids.items() if found})
    return " ".join(tokens), allowed


def _mention(entry: str) -> tuple[str, str, str]:
    """(text for content, "users"/"roles"/"" , id) for one ``mention_users`` entry."""
    user = _USER_RE.match(entry)
    if user:
        ident = user.group(1) or user.group(2)
        return f"<@{ident}>", "users", ident
    role = _ROLE_RE.match(entry)
    if role:
        return f"<@&{role.group(1)}>", "roles", role.group(1)
    return entry.replace("@", "@" + ZWSP), "", ""


def build_digest(events: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """One embed listing several changes (no mentions: digests hold no critical change)."""
    lines = [defang(digest_line(event)) for event in events]
    embed = {"title": digest_title(len(events)), "color": DEFAULT_COLOR,
             "description": fit_lines(lines, DESCRIPTION_LIMIT),
             "footer": {"text": FOOTER}}
    payload: dict[str, Any] = {"username": config.get("username") or DEFAULT_USERNAME,
                               "embeds": [embed], "allowed_mentions": {"parse": []}}
    if config.get("avatar_url"):
        payload["avatar_url"] = config["avatar_url"]
    return payload


def target_url(event: dict[str, Any], config: dict[str, Any]) -> str:
    """The first key segment naming a ``channels`` entry picks its webhook; else ``webhook_url``."""
    channels = config.get("channels") or {}
    for segment in str(event.get("key") or "").split("."):
        if segment in channels:
            return str(channels[segment])
    return str(config["webhook_url"])


def with_wait(url: str) -> str:
    """``url`` with ``wait=true`` set, keeping its other query parameters (``thread_id``...)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "wait"]
    return urlunsplit(parts._replace(query=urlencode([*query, ("wait", "true")])))


class DiscordConnector(DigestPolicy, BaseConnector):
    """Posts each configuration event as an embed to a Discord channel webhook."""

    name = "discord"
    rate_limit = "2/s"
    rate_limit_source = ("5 requests per 2 s per webhook (not published by Discord; its 429 "
                         "carries Retry-After)")
    retry_unknown_outcome = False
    settings = (
        Setting("webhook_url", required=True, secret=True, check=http_url,
                doc="Default channel's webhook; its path carries the token."),
        Setting("username", default=DEFAULT_USERNAME, check=check_username,
                doc='1–80 characters, must not contain "clyde" or "discord" (Discord '
                    'refuses such names).'),
        Setting("avatar_url", check=http_url, doc="https URL of the bot avatar."),
        Setting("mention_users", kind=list, check=list_of_str,
                doc='"<@id>" or "id" pings a user, "<@&id>" a role; plain names are text.'),
        Setting("critical_patterns", kind=list, check=list_of_str,
                doc="Key globs whose changes mention ``mention_users``."),
        Setting("channels", kind=dict, secret=True, check=dict_of_urls,
                doc="Key segment -> webhook URL; URLs carry tokens, so all are secret."),
    )

    def wants(self, event: dict[str, Any]) -> bool:
        """Every routed event; ``critical_patterns`` only decides mentions."""
        return True

    def send_batch(self, items: list[Any]) -> dict[str, Any]:
        """One digest per target channel (a single change: the usual message)."""
        if len(items) == 1:
            return self.send_notification(items[0])
        by_target: dict[str, list[dict[str, Any]]] = {}
        for event in items:
            by_target.setdefault(target_url(event, self.config), []).append(event)
        for url, events in by_target.items():
            self._post(url, build_digest(events, self.config))
        return {"digest_of": len(items)}

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST the embed (``?wait=true`` so Discord confirms); raise a typed error on failure."""
        return self._post(target_url(event, self.config), build_payload(event, self.config))

    def _post(self, target: str, payload: dict[str, Any]) -> dict[str, Any]:
        url = with_wait(target)
        response = http.send("POST", url, secrets=self.secrets(), json=payload)
        if response.status_code >= 400:
            raise_for(response, self.secrets())
        body = http.json_object(response)
        return {"status": response.status_code, "message_id": body.get("id")}

    def health_check(self) -> bool:
        """True when GET on the default webhook answers 200 (the token is valid)."""
        try:
            response = http.send("GET", str(self.config["webhook_url"]), secrets=self.secrets())
        except ConnectorError:
            return False
        return response.status_code == 200


def raise_for(response: Any, secrets: set[str]) -> None:
    """Raise the typed error for a failed call, using Discord's ``message``/``code`` and waits.

    A 404 (unknown webhook) is ``Rejected``: Discord asks clients to stop using such a webhook.
    """
    body = http.json_object(response)
    try:
        http.check(response, vendor="discord", message=_error_text(body), secrets=secrets)
    except RateLimited as exc:
        body_wait = body.get("retry_after")
        if isinstance(body_wait, (int, float)) and not isinstance(body_wait, bool):
            exc.retry_after_s = http.bounded_wait(max(exc.retry_after_s or 0.0, float(body_wait)))
        raise


def _error_text(body: dict[str, Any]) -> str | None:
    message, code = body.get("message"), body.get("code")
    if not message and code is None:
        return None
    text = f"{message or 'error'}" + (f" (code {code})" if code is not None else "")
    if body.get("errors"):
        text += ": " + truncate(json.dumps(body["errors"], separators=(",", ":")), 300)
    return text
