"""Slack: one Block Kit message per configuration event, posted to an incoming webhook.

``build_payload`` is pure. Every user-controlled string is escaped (``&``, ``<``, ``>``) so a
value such as ``<!channel>`` cannot ping; only the configured user groups are mentioned, and only
for urgent or critical changes. Limits are met by truncating, never by failing.
"""

from __future__ import annotations

import re
from typing import Any

from config_core.routing import matches_any
from connectors import http
from connectors.base import BaseConnector
from connectors.chat import (
    ELLIPSIS,
    DigestPolicy,
    digest_line,
    digest_title,
    event_title,
    readable_time,
    render_value,
    truncate,
)
from connectors.settings import Setting, http_url, list_of_str, max_length

DEFAULT_USERNAME = "APG Config Bot"
"""Name the message is posted under (legacy webhooks only) unless ``username`` is set."""

HEADER_LIMIT = 150
FIELD_LIMIT = 2000
SECTION_LIMIT = 3000
TEXT_LIMIT = 4000
MAX_DIGEST_SECTIONS = 48
"""Sections of a digest, within Slack's 50 blocks (one is the header)."""
"""Slack's limits (header plain_text, section field, section text) and its advised text size."""

FOOTER = "APG Central Configuration"

_EMOJI_RE = re.compile(r"^:[a-z0-9_+'-]+:(?::skin-tone-[2-6]:)?$")
_CHANNEL_RE = re.compile(r"^[#@]?[\w.-]{1,80}$")
_SUBTEAM_RE = re.compile(r"^<!subteam\^(S[A-Z0-9]+)(?:\|[^>]*)?>$")
_GROUP_ID_RE = re.compile(r"^S[A-Z0-9]+$")


def check_icon_emoji(value: str) -> str | None:
    """An emoji name in colons, like ``:gear:``."""
    return None if _EMOJI_RE.match(value) else 'must be an emoji name in colons, like ":gear:"'


def check_channel(value: str) -> str | None:
    """A channel such as ``#config-changes`` (or a channel id)."""
    return None if _CHANNEL_RE.match(value) else 'must be a channel like "#config-changes"'


def escape(text: str) -> str:
    """Slack's escaping of untrusted text: ``&``, ``<`` and ``>`` only."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate_escaped(text: str, limit: int) -> str:
    """Cut escaped ``text`` to ``limit`` characters without splitting an ``&...;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def build_payload(event: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The webhook body for ``event`` under ``config`` (pure; limits met by truncation)."""
    title = event_title(event.get("type"))
    mentions = group_mentions(event, config)
    text = f"{title}: {escape(render_value(event.get('key')))}"
    blocks: list[dict[str, Any]] = []
    if mentions:
        text = f"{mentions} {text}"
        blocks.append(_section(mentions))
    blocks.append({"type": "header",
                   "text": {"type": "plain_text", "text": truncate(title, HEADER_LIMIT),
                            "emoji": True}})
    blocks.append({"type": "section", "fields": _fields(event)})
    if event.get("reason"):
        blocks.append(_section("*Reason:*\n" + escape(render_value(event["reason"]))))
    blocks.append({"type": "context",
                   "elements": [{"type": "mrkdwn", "text": _context_text(event)}]})
    payload: dict[str, Any] = {"text": truncate_escaped(text, TEXT_LIMIT), "blocks": blocks,
                               "username": config.get("username") or DEFAULT_USERNAME}
    # Slack-app webhooks ignore these overrides (channel and identity are fixed when the app is
    # installed); legacy custom-integration webhooks honour them.
    for name in ("channel", "icon_emoji"):
        if config.get(name):
            payload[name] = config[name]
    return payload


def _section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn",
                                        "text": truncate_escaped(mrkdwn, SECTION_LIMIT)}}


def _fields(event: dict[str, Any]) -> list[dict[str, str]]:
    """The guide's fields in order; Key and the values as inline code."""
    rows = [
        ("Key", render_value(event.get("key")), True),
        ("Old Value", render_value(event.get("old_value")), True),
        ("New Value", render_value(event.get("new_value")), True),
        ("Changed By", render_value(event.get("changed_by")), False),
        ("Environment", render_value(event.get("environment")), False),
        ("Time", readable_time(event), False),
    ]
    return [{"type": "mrkdwn", "text": _field_text(*row)} for row in rows]


def _field_text(label: str, value: str, code: bool) -> str:
    prefix = f"*{label}:*\n"
    quote = "`" if code else ""
    room = FIELD_LIMIT - len(prefix) - 2 * len(quote)
    return prefix + quote + truncate_escaped(escape(value), room) + quote


def _context_text(event: dict[str, Any]) -> str:
    parts = [FOOTER]
    for label in ("tenant", "version", "urgency"):
        if event.get(label) is not None:
            parts.append(f"{label} {event[label]}")
    return truncate_escaped(escape(" · ".join(parts)), SECTION_LIMIT)


def group_mentions(event: dict[str, Any], config: dict[str, Any]) -> str:
    """The configured user groups, for urgent events or keys matching ``critical_patterns``."""
    urgent = event.get("urgency") == "high"
    critical = matches_any(str(event.get("key") or ""), config.get("critical_patterns") or ())
    if not (urgent or critical):
        return ""
    tokens: list[str] = []
    for entry in config.get("mention_groups") or ():
        token = _group(entry.strip())
        if token not in tokens and len(" ".join([*tokens, token])) <= SECTION_LIMIT:
            tokens.append(token)
    return " ".join(tokens)


def _group(entry: str) -> str:
    """``<!subteam^ID>`` for a group id; a plain handle stays (escaped) text: it cannot notify."""
    match = _SUBTEAM_RE.match(entry) or _GROUP_ID_RE.match(entry)
    if match:
        group_id = match.group(1) if match.re is _SUBTEAM_RE else match.group(0)
        return f"<!subteam^{group_id}>"
    return escape(entry)


def build_digest(events: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any]:
    """One message listing several changes, in sections within Slack's block limits."""
    lines = [escape(digest_line(event)) for event in events]
    title = digest_title(len(events))
    sections = []
    chunk: list[str] = []
    for line in lines:
        if chunk and len("\n".join([*chunk, line])) > SECTION_LIMIT - 10:
            sections.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(truncate_escaped(line, SECTION_LIMIT - 10))
    if chunk:
        sections.append(_section("\n".join(chunk)))
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": title}},
              *sections[:MAX_DIGEST_SECTIONS]]
    payload: dict[str, Any] = {"text": truncate_escaped(f"{title}: " + "; ".join(lines),
                                                        TEXT_LIMIT), "blocks": blocks}
    for name in ("channel", "username", "icon_emoji"):
        if config.get(name):
            payload[name] = config[name]
    return payload


class SlackConnector(DigestPolicy, BaseConnector):
    """Posts each configuration event to a Slack incoming webhook."""

    name = "slack"
    rate_limit = "50/m"
    rate_limit_source = "about 1 message per second per webhook, short bursts tolerated"
    retry_unknown_outcome = False
    health_check_probes_vendor = False
    """Incoming webhooks have no side-effect-free probe: the check reads the config only."""
    settings = (
        Setting("webhook_url", required=True, secret=True, check=http_url,
                doc="Incoming-webhook URL; its path is the credential."),
        Setting("channel", check=check_channel, doc="`#channel`; legacy webhooks only."),
        Setting("username", default=DEFAULT_USERNAME, check=max_length(80),
                doc="Legacy webhooks only."),
        Setting("icon_emoji", check=check_icon_emoji,
                doc="`:name:` form; legacy webhooks only."),
        Setting("mention_groups", kind=list, check=list_of_str,
                doc='"<!subteam^S123>" or "S123" notifies a user group; handles are text.'),
        Setting("critical_patterns", kind=list, check=list_of_str,
                doc="Key globs whose changes mention ``mention_groups`` (as high urgency does)."),
    )

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """POST the message; Slack answers ``200 ok``, anything else is a typed error.

        The error text is Slack's plain body (``no_service``, ``invalid_payload``...); a 429
        carries ``Retry-After``. Both are handled by ``http.check``.
        """
        return self._post(build_payload(event, self.config))

    def send_batch(self, items: list[Any]) -> dict[str, Any]:
        """One digest message (a single change: the usual message)."""
        if len(items) == 1:
            return self.send_notification(items[0])
        self._post(build_digest(items, self.config))
        return {"digest_of": len(items)}

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        secrets = self.secrets()
        response = http.send("POST", str(self.config["webhook_url"]), secrets=secrets,
                             json=payload)
        http.check(response, vendor="slack", message=(response.text or "").strip()[:300] or None,
                   secrets=secrets)
        return {"status": response.status_code}

    def health_check(self) -> bool:
        """True when the config is complete and the webhook URL is well-formed.

        Slack incoming webhooks answer no GET, HEAD or OPTIONS probe, and a POST would post a
        message to the channel; so no network check is possible without side effects.
        """
        url = self.config.get("webhook_url")
        return isinstance(url, str) and http_url(url) is None
