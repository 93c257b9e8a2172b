"""One SMTP session to the configured relay, through the egress policy, and its errors typed.

The host is resolved once and every address checked (``connectors.transport``) before the
connection; the client connects to a checked address while TLS still verifies the host name.
Every socket operation has the configured timeout. Replies map to errors as follows:

- no connection, a timeout, a TLS failure, a dropped session: ``TransportError`` (retried);
- a 4xx reply (421, 450, 451, 452, 454): ``Unavailable``, or ``RateLimited`` when the server
  says it is limiting the rate; a wait it names ("try again in 60 seconds") is the least wait;
- 535 and other 5xx replies to AUTH: ``AuthError``; other 5xx replies: ``Rejected``;
- a server without STARTTLS or AUTH when the config needs them: ``Misconfigured``.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from config_core.masking import redact
from connectors import egress
from connectors.errors import (
    AuthError,
    ConnectorError,
    Misconfigured,
    RateLimited,
    Rejected,
    TransportError,
    Unavailable,
)
from connectors.transport import checked_addresses

DEFAULT_RATE_LIMIT_WAIT_S = 60.0
"""Least wait after a reply that says the rate is limited but names no wait."""

_RATE_RE = re.compile(r"rate|too many|throttl", re.I)
_WAIT_RE = re.compile(r"(?:in|after)\s+(\d{1,5})\s*(s|sec|seconds?|m|min|minutes?)\b", re.I)


class _GuardedSMTP(smtplib.SMTP):
    """``smtplib.SMTP`` that connects only to addresses the egress policy allows."""

    def connect(self, host: str = "localhost", port: int = 0,
                source_address: Any = None) -> tuple[int, bytes]:
        self._host = host  # what STARTTLS and implicit TLS verify the certificate against
        return super().connect(host, port, source_address)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        failure: OSError | None = None
        for address in checked_addresses(host, port):
            try:
                return socket.create_connection((address, port), timeout)
            except OSError as exc:  # refused or unreachable: try the next address
                failure = exc
        raise failure or OSError(f"{host} resolved to no address")


class _GuardedSMTPSSL(smtplib.SMTP_SSL, _GuardedSMTP):
    """Implicit TLS (port 465) over a guarded connection; TLS verifies the host name."""


def tls_context() -> ssl.SSLContext:
    """The system's trusted CAs (``SSL_CERT_FILE`` adds a private one), hostname verified."""
    return ssl.create_default_context()


@contextmanager
def session(config: dict[str, Any]) -> Iterator[smtplib.SMTP]:
    """An open session: connected, EHLO said, TLS on as configured, logged in if configured."""
    host, port, timeout_s = str(config["host"]), int(config["port"]), float(config["timeout_s"])
    security = config["security"]
    if security == "none" and not egress.is_internal_allowed(host):
        raise Misconfigured(f"integrations.email.security 'none' is refused for {host}: plain "
                            f"SMTP only to internal hosts that {egress.ALLOWED_NETWORKS_ENV} "
                            "allows")
    if security == "tls":
        client: smtplib.SMTP = _GuardedSMTPSSL(timeout=timeout_s, context=tls_context())
    else:
        client = _GuardedSMTP(timeout=timeout_s)
    try:
        client.connect(host, port)
        client.ehlo()
        if security == "starttls":
            client.starttls(context=tls_context())
            client.ehlo()
        if config.get("username"):
            client.login(str(config["username"]), str(config.get("password") or ""))
        yield client
    finally:
        client.close()


def quit_politely(client: smtplib.SMTP) -> None:
    """Say QUIT; a server that hangs up first changes nothing (the message went through)."""
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        pass


def error_for(exc: BaseException, *, host: str, secrets: set[str]) -> ConnectorError:
    """The typed error for a failure of a session with ``host``; texts without secrets."""
    if isinstance(exc, ConnectorError):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = max(exc.recipients.values(), key=lambda reply: reply[0])
        return reply_error(code, text, command="RCPT", host=host, secrets=secrets)
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return Misconfigured(redact(f"SMTP server {host} does not support what the config "
                                    f"needs: {exc}", secrets))
    if isinstance(exc, smtplib.SMTPResponseException):
        command = "AUTH" if isinstance(exc, smtplib.SMTPAuthenticationError) else ""
        return reply_error(exc.smtp_code, exc.smtp_error, command=command, host=host,
                           secrets=secrets)
    if isinstance(exc, (OSError, smtplib.SMTPServerDisconnected)):
        return TransportError(redact(f"SMTP session with {host} failed: "
                                     f"{type(exc).__name__}: {exc}", secrets))
    return Misconfigured(redact(f"SMTP session with {host} failed: {exc}", secrets))


def reply_error(code: int, text: bytes | str, *, command: str, host: str,
                secrets: set[str]) -> ConnectorError:
    """The typed error for an SMTP reply ``code`` (4xx retried, 5xx not)."""
    said = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    message = redact(f"SMTP server {host} answered {command + ' ' if command else ''}"
                     f"with {code} {said}".strip(), secrets)
    if 400 <= code < 500:
        wait_s = _named_wait_s(said)
        if _RATE_RE.search(said):
            return RateLimited(message, status=code,
                               retry_after_s=max(wait_s or 0.0, 0.0) or DEFAULT_RATE_LIMIT_WAIT_S)
        return Unavailable(message, status=code, retry_after_s=wait_s)
    if code >= 500 and (command == "AUTH" or code in (530, 534, 535, 538)):
        return AuthError(message, status=code)
    if code >= 500:
        return Rejected(message, status=code)
    return TransportError(message, status=code)  # -1 and the like: the session broke


def _named_wait_s(text: str) -> float | None:
    match = _WAIT_RE.search(text)
    if match is None:
        return None
    return float(match.group(1)) * (60 if match.group(2).lower().startswith("m") else 1)
