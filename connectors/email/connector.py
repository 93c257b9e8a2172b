"""The e-mail connector: settings, sending one message per event, and the health check."""

from __future__ import annotations

import re
import smtplib
from typing import Any

from config_core.errors import ConfigError
from connectors import egress
from connectors.base import BaseConnector
from connectors.email import smtp
from connectors.email.message import (
    DEFAULT_SUBJECT_PREFIX,
    build_message,
    check_address,
    check_addresses,
    control_characters,
)
from connectors.errors import ConnectorError
from connectors.settings import Setting

SECURITY_MODES = ("starttls", "tls", "none")
"""``starttls`` upgrades a plain connection (port 587); ``tls`` is TLS from the first byte
(port 465); ``none`` is plain text, only to internal hosts the allow-list permits."""

DEFAULT_PORT = 587
DEFAULT_TIMEOUT_S = 10.0
"""Seconds each connect, read and write of the SMTP session may take."""

MAX_TIMEOUT_S = 25.0
"""Longest accepted ``timeout_s``: within a delivery attempt's soft time limit."""

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?$")


def check_host(value: str) -> str | None:
    """A host name or IP address (no scheme, port or path) that the egress policy allows."""
    if control_characters(value) or not (_HOST_RE.match(value) or egress.literal_address(value)):
        return "must be a host name or IP address, like smtp.company.com"
    return egress.refusal(value)


def check_security(value: str) -> str | None:
    return None if value in SECURITY_MODES else f"must be one of {list(SECURITY_MODES)}"


def check_header_text(value: str) -> str | None:
    return control_characters(value)


class EmailConnector(BaseConnector):
    """Sends one plain-text e-mail per configuration event through an SMTP relay."""

    name = "email"
    rate_limit_source = "set by your mail server"
    retry_unknown_outcome = False
    settings = (
        Setting("host", required=True, check=check_host,
                doc="SMTP relay host name or IP address (no scheme or port); internal hosts "
                    "only where `APGCFG_ALLOWED_NETWORKS` allows them."),
        Setting("port", kind=int, default=DEFAULT_PORT, minimum=1, maximum=65535,
                doc="587 for `starttls`, 465 for `tls`, 25 for a local relay."),
        Setting("security", default="starttls", check=check_security,
                doc="`starttls` (upgrade, refuse a server without it), `tls` (TLS from the "
                    "first byte, port 465) or `none` (plain; only to internal hosts the "
                    "allow-list permits)."),
        Setting("username", check=check_header_text,
                doc="Logs in (AUTH) when set."),
        Setting("password", secret=True,
                doc="Password of `username`; never in a message or an error text."),
        Setting("from_address", required=True, check=check_address,
                doc="Sender address, e.g. `apg-config@company.com`; its domain ends the "
                    "Message-ID."),
        Setting("to", kind=list, required=True, check=check_addresses,
                doc="List of recipient addresses; all must be accepted or nothing is sent."),
        Setting("subject_prefix", default=DEFAULT_SUBJECT_PREFIX, check=check_header_text,
                doc="Starts every subject."),
        Setting("timeout_s", kind=(int, float), default=DEFAULT_TIMEOUT_S, minimum=0.1,
                maximum=MAX_TIMEOUT_S,
                doc="Seconds each connect, read and write of the session may take (0.1–25)."),
    )

    @classmethod
    def validate_config(cls, config: Any, *, partial: bool = False) -> dict[str, Any]:
        """The declared checks, plus: plain SMTP only to an allowed internal host."""
        checked = super().validate_config(config, partial=partial)
        host, security = checked.get("host"), checked.get("security")
        if (security == "none" and isinstance(host, str)
                and not egress.is_internal_allowed(host)):
            raise ConfigError(f"integrations.{cls.name}.security 'none' (plain SMTP) is allowed "
                              f"only for internal hosts that {egress.ALLOWED_NETWORKS_ENV} "
                              f"allows; use starttls or tls for {host}")
        return checked

    def send_notification(self, event: dict[str, Any]) -> dict[str, Any]:
        """Send the event's message; every recipient must be accepted before DATA.

        A refused recipient (4xx or 5xx) aborts the transaction, so nothing reaches anyone
        and a retry cannot send a second copy to the recipients who were accepted.
        """
        message = build_message(event, self.config)
        try:
            with smtp.session(self.config) as client:
                self._transaction(client, message.as_bytes())
                smtp.quit_politely(client)
        except ConnectorError:
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise smtp.error_for(exc, host=str(self.config["host"]),
                                 secrets=self.secrets()) from exc
        return {"message_id": message["Message-ID"], "recipients": len(self.config["to"])}

    def _transaction(self, client: smtplib.SMTP, data: bytes) -> None:
        code, text = client.mail(self.config["from_address"])
        if code != 250:
            raise smtplib.SMTPSenderRefused(code, text, self.config["from_address"])
        for recipient in self.config["to"]:
            code, text = client.rcpt(recipient)
            if code not in (250, 251):
                client.rset()
                raise smtplib.SMTPRecipientsRefused({recipient: (code, text)})
        code, text = client.data(data)
        if code != 250:
            raise smtplib.SMTPDataError(code, text)

    def health_check(self) -> bool:
        """Connect, EHLO, STARTTLS and log in as configured, then QUIT: True if all worked."""
        try:
            with smtp.session(self.config) as client:
                smtp.quit_politely(client)
        except (ConnectorError, smtplib.SMTPException, OSError):
            return False
        return True

