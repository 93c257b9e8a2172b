"""Secret masking: what leaves config_core never carries a secret.

A key with a secret-looking segment (``app.db.password``, ``app.password.primary``), or a dict
field whose name looks like a secret, is shown as ``"***"``. Connector settings declared secret
are masked by name too (``extra_secret_fields``). The password of a URL (``scheme://user:pw@``)
is masked in every string, and ``redact`` removes known secret values from free text such as
error messages.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
"""What a masked value is replaced with."""

_SECRET_PART_RE = re.compile(
    r"(token|secret|password|passwd|passphrase|api_?key|webhook_?url|private_?key|credential"
    r"|auth_?header|access_?key|signing_?key|connection_?string|conn_?str)",
    re.IGNORECASE,
)
"""Secret wherever it appears in a name: ``db_password``, ``connectionString``."""

_SECRET_WORDS = frozenset({"pwd", "dsn", "bearer", "cookie", "cookies"})
"""Secret as a whole word of a name (``sentry_dsn``, ``db_pwd``), not inside another word."""

_SECRET_NAMES = frozenset({"private", "session", "session_id", "sessionid", "signature",
                           "authorization"})
"""Secret only as the whole name of a field or a key's last segment: ``session`` holds a
session id, but ``session_timeout`` and ``app.session.timeout`` hold nothing secret."""

_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_WORD_SPLIT_RE = re.compile(r"[^a-z0-9]+")

URL_CREDENTIALS_RE = re.compile(
    r"(?P<head>\b[a-z][a-z0-9+.-]*://[^\s:/@]*:)(?P<password>[^\s/@]+)(?=@)", re.IGNORECASE)
"""The password of ``scheme://user:password@host`` anywhere in a string."""


def is_secret_name(name: str, *, leaf: bool = True) -> bool:
    """True when a field name or key segment looks like it holds a secret.

    ``leaf=False`` is for a segment in the middle of a key, where a few names that are
    secrets on their own (``session``, ``private``) are only a namespace.
    """
    if _SECRET_PART_RE.search(name):
        return True
    words = _WORD_SPLIT_RE.split(_CAMEL_RE.sub("_", name).lower())
    if _SECRET_WORDS.intersection(words):
        return True
    return leaf and "_".join(word for word in words if word) in _SECRET_NAMES


def is_secret_key(key: str) -> bool:
    """True when any segment of a dotted key looks like a secret (the last one most strictly)."""
    *parents, last = key.split(".")
    return is_secret_name(last) or any(is_secret_name(part, leaf=False) for part in parents)


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL masked."""
    return URL_CREDENTIALS_RE.sub(lambda match: f"{match['head']}{MASK}", text)


def mask_value(value: Any, extra_secret_fields: Iterable[str] = ()) -> Any:
    """Return ``value`` with every secret-looking nested field replaced by ``MASK``."""
    extra = frozenset(extra_secret_fields)
    return _mask(value, extra)


def _mask(value: Any, extra: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {
            name: _mask_all(item) if is_secret_name(name) or name in extra else _mask(item, extra)
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_mask(item, extra) for item in value]
    if isinstance(value, str) and "@" in value:
        return mask_url_credentials(value)
    return value


def _mask_all(value: Any) -> Any:
    """Mask every leaf of a secret field, keeping its shape (dict keys stay readable)."""
    if value is None:
        return None
    if isinstance(value, dict):
        return {name: _mask_all(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    return MASK


def mask_for_key(key: str, value: Any, extra_secret_fields: Iterable[str] = ()) -> Any:
    """Mask ``value`` as stored under ``key``: all of it when the key itself is secret."""
    if is_secret_key(key):
        return _mask_all(value)
    return mask_value(value, extra_secret_fields)


def secret_strings(value: Any, extra_secret_fields: Iterable[str] = ()) -> set[str]:
    """Every string that masking would hide in ``value``; used to scrub free text."""
    found: set[str] = set()
    extra = frozenset(extra_secret_fields)

    def walk(item: Any, secret: bool) -> None:
        if isinstance(item, dict):
            for name, sub in item.items():
                walk(sub, secret or is_secret_name(name) or name in extra)
        elif isinstance(item, list):
            for sub in item:
                walk(sub, secret)
        elif secret and isinstance(item, str) and item:
            found.add(item)
        elif isinstance(item, str):
            found.update(match["password"] for match in URL_CREDENTIALS_RE.finditer(item))

    walk(value, False)
    return found


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace each secret (and the path part of secret URLs) in ``text`` with ``MASK``;
    the password of any URL in ``text`` is masked too, known or not."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < 4:
            continue
        text = text.replace(secret, MASK)
        path = _url_path(secret)
        if path:
            text = text.replace(path, MASK)
    return mask_url_credentials(text)


def _url_path(secret: str) -> str | None:
    """The path of a URL secret: urllib3 errors quote only the path, not the whole URL."""
    match = re.match(r"^[a-z][a-z0-9+.-]*://[^/]+(/.{4,})$", secret, re.IGNORECASE)
    return match.group(1) if match else None
