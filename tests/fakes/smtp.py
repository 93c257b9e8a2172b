"""A loopback SMTP relay (aiosmtpd): records messages, enforces AUTH and TLS, scripts replies.

``FakeSMTP(security="starttls")`` offers STARTTLS and refuses mail before it (as a submission
server on port 587 does); ``"tls"`` speaks TLS from the first byte (port 465); ``"none"`` is
plain. With ``username``/``password`` set, MAIL is refused until AUTH succeeded with them. The
certificate is self-signed, made with ``openssl`` once per process for ``127.0.0.1`` and
``localhost``; clients trust it through ``SSL_CERT_FILE`` (``trust_env``).

``fail_next(code, command=...)`` answers the next matching command with an SMTP reply. For the
contract test's HTTP statuses: 401/403 answer AUTH with 535, 429 answers RCPT with a 450
saying "too many messages, try again in N seconds".
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import functools
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LOOPBACK_HOST = "127.0.0.1"

COMMANDS = ("AUTH", "MAIL", "RCPT", "DATA")
"""Commands whose reply ``fail_next`` can script."""

HTTP_EQUIVALENTS = {401: ("AUTH", 535), 403: ("AUTH", 535), 429: ("RCPT", 450)}
"""The contract test's HTTP statuses, as the SMTP command and reply that mean the same."""

REPLY_TEXTS = {
    421: "4.3.2 Service not available, closing transmission channel",
    450: "4.2.1 Mailbox temporarily unavailable",
    451: "4.3.0 Local error in processing",
    452: "4.3.1 Insufficient system storage",
    454: "4.7.0 Temporary authentication failure",
    535: "5.7.8 Authentication credentials invalid",
    550: "5.1.1 Mailbox unavailable",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}
"""Default text of a scripted reply, as real relays word them."""


@dataclass(frozen=True)
class Received:
    """One message as the fake accepted it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Scripted:
    command: str
    reply: str
    remaining: int
    address: str | None


@functools.lru_cache(maxsize=1)
def certificate() -> tuple[str, str]:
    """(certificate, key) file paths of a self-signed pair for 127.0.0.1 and localhost."""
    folder = Path(tempfile.mkdtemp(prefix="fake-smtp-tls-"))
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def trust_env() -> dict[str, str]:
    """Environment that makes a client trust the fake's certificate."""
    return {"SSL_CERT_FILE": certificate()[0]}


def _server_context() -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate())
    return context


class _EphemeralController(Controller):
    """aiosmtpd's Controller on a port the kernel picks (so parallel fakes never collide)."""

    def _create_server(self) -> Any:
        return self._bind()

    async def _bind(self) -> asyncio.AbstractServer:
        server = await self.loop.create_server(self._factory_invoker, host=self.hostname,
                                               port=0, ssl=self.ssl_context)
        self.port = int(server.sockets[0].getsockname()[1])
        return server


class FakeSMTP:
    """A started relay between ``__enter__`` and ``__exit__`` (or ``start``/``stop``)."""

    def __init__(self, *, security: str = "none", username: str | None = None,
                 password: str | None = None) -> None:
        if security not in ("none", "starttls", "tls"):
            raise ValueError(f"security must be none, starttls or tls, got {security!r}")
        self.security, self.username, self.password = security, username, password
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._scripted: list[_Scripted] = []
        self.auth_attempts = 0
        self._failing_auth: dict[int, str] = {}
        self._controller: Controller | None = None

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        tls = _server_context() if self.security != "none" else None
        kwargs: dict[str, Any] = {"server_hostname": "fake-smtp.test", "ready_timeout": 10}
        if self.security == "starttls":
            kwargs.update(tls_context=tls, require_starttls=True)
        if self.security == "tls":
            kwargs["ssl_context"] = tls
        if self.username is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          # implicit TLS is TLS already (aiosmtpd only counts STARTTLS)
                          auth_require_tls=self.security == "starttls")
        self._controller = _EphemeralController(_Handler(self), hostname=LOOPBACK_HOST,
                                                 **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._controller is None:
            raise RuntimeError("FakeSMTP is not started")
        return int(self._controller.port)

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A connector config for this relay (``security`` and credentials matching it)."""
        config: dict[str, Any] = {
            "host": LOOPBACK_HOST, "port": self.port, "security": self.security,
            "from_address": "apg-config@company.com", "to": ["platform-team@company.com"],
            "timeout_s": 5}
        if self.username is not None:
            config.update(username=self.username, password=self.password)
        config.update(overrides)
        return config

    # test controls --------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, *, command: str | None = None,
                  text: str | None = None, address: str | None = None,
                  retry_after_s: float = 1.0) -> None:
        """Answer the next ``times`` ``command``s (RCPT by default) with ``status``.

        ``address`` limits a MAIL or RCPT script to that sender or recipient.
        """
        if status in HTTP_EQUIVALENTS and command is None:
            command, status = HTTP_EQUIVALENTS[status]
            if status == 450:
                text = (f"4.7.1 Too many messages, slow down; try again in "
                        f"{max(1, round(retry_after_s))} seconds")
        command = (command or "RCPT").upper()
        if command not in COMMANDS:
            raise ValueError(f"command must be one of {COMMANDS}, got {command!r}")
        reply = f"{status} {text or REPLY_TEXTS.get(status, 'Scripted reply')}"
        with self._lock:
            self._scripted.append(_Scripted(command, reply, times, address))

    def take_scripted(self, command: str, address: str | None = None) -> str | None:
        """The scripted reply for ``command``, if one is waiting (used by the handler)."""
        with self._lock:
            for scripted in self._scripted:
                if scripted.command == command and scripted.address in (None, address):
                    scripted.remaining -= 1
                    if scripted.remaining <= 0:
                        self._scripted.remove(scripted)
                    return scripted.reply
        return None

    # observations ---------------------------------------------------------------------------

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def messages(self) -> list[EmailMessage]:
        """Accepted messages, parsed, oldest first."""
        return [item.message for item in self.received()]

    def wait_for_messages(self, n: int, timeout_s: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout_s
        while len(found := self.messages()) < n:
            if time.monotonic() >= deadline:
                raise AssertionError(f"FakeSMTP: expected {n} message(s) within {timeout_s}s, "
                                     f"got {len(found)}")
            time.sleep(0.02)
        return found

    def record(self, item: Received) -> None:
        with self._lock:
            self._received.append(item)

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        with self._lock:
            self.auth_attempts += 1
        # A client tries each mechanism in turn (PLAIN, then LOGIN): a scripted failure holds
        # for the whole session, as a wrong password would.
        scripted = self._failing_auth.get(id(session)) or self.take_scripted("AUTH")
        if scripted:
            self._failing_auth[id(session)] = scripted
            return AuthResult(success=False, handled=False, message=scripted)
        good = (isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == self.username
                and auth_data.password.decode() == self.password)
        return AuthResult(success=good, handled=False, auth_data=auth_data)


class _Handler:
    """aiosmtpd hooks: scripted replies first, then the ordinary relay's answers."""

    def __init__(self, fake: FakeSMTP) -> None:
        self.fake = fake

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        scripted = self.fake.take_scripted("MAIL", address)
        if scripted:
            return scripted
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        scripted = self.fake.take_scripted("RCPT", address)
        if scripted:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        scripted = self.fake.take_scripted("DATA")
        if scripted:
            return scripted
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.fake.record(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                  bytes(envelope.original_content or envelope.content),
                                  tls=server.transport.get_extra_info("ssl_object") is not None,
                                  login=login))
        return "250 Message accepted for delivery"

