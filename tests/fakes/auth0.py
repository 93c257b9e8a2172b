"""Loopback fake of an Auth0 tenant (token endpoint + Management API v2) that enforces its contract.

Routes:
- ``POST /oauth/token`` (JSON or form): ``grant_type=client_credentials``, the client's id and
  secret (401 ``access_denied`` "Unauthorized" otherwise), ``audience={base}/api/v2/`` (403
  ``access_denied`` otherwise); answers ``access_token``, ``token_type``, ``expires_in``, ``scope``.
- ``GET /api/v2/roles`` (``name_filter``, case-insensitive substring), ``GET /api/v2/users``
  (``q``: ``user_id:("a" OR ...)`` and/or ``identities.connection:"X"``, search engine v3),
  ``GET /api/v2/roles/{id}/users`` (offset paging, or checkpoint paging with ``take``/``from``).
Every Management API call needs ``Authorization: Bearer <unexpired token from here>`` (401 with
Auth0's body otherwise). Offset paging: ``page`` (0-based), ``per_page`` ≤ 100 (default 50),
``include_totals``; a page reaching past 1,000 results is a 400. Checkpoint paging: ``take`` ≤ 100
(default 50), ``next`` in the body until the last page. 429s carry ``x-ratelimit-limit``,
``x-ratelimit-remaining`` and ``x-ratelimit-reset`` (epoch seconds), no ``Retry-After``.
"""

from __future__ import annotations

import math
import random
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

TOKEN_PATH = "/oauth/token"
API_PREFIX = "/api/v2/"
ROLE_USERS_RE = re.compile(r"^/api/v2/roles/([^/]+)/users$")

MAX_PER_PAGE = 100
"""Largest ``per_page`` and ``take``."""
DEFAULT_PER_PAGE = 50
OFFSET_LIMIT = 1000
"""Results offset paging reaches; a page past it is refused."""
DEFAULT_TOKEN_LIFETIME_S = 86_400
RATE_LIMIT_PER_S = 50
"""``x-ratelimit-limit`` sent when no ``rate_limit`` is set."""

DEFAULT_SEED = 5
DEFAULT_USERS = 600
CONNECTIONS = (("Username-Password-Authentication", "auth0", 0.8),
               ("google-oauth2", "google-oauth2", 0.15), ("acme-saml", "samlp", 0.05))
DEPARTMENTS = ("platform", "payments", "mobile", "data", "support")
FIRST = ("ada", "alan", "grace", "linus", "barbara", "ken", "margaret", "dennis", "frances",
         "edsger", "radia", "tim", "sophie", "john", "katherine", "guido")
LAST = ("lovelace", "turing", "hopper", "torvalds", "liskov", "thompson", "hamilton", "ritchie",
        "allen", "dijkstra", "perlman", "berners", "wilson", "backus", "johnson", "rossum")

_QUERY_IDS_RE = re.compile(r'^user_id:\((?P<ids>"(?:[^"\\]|\\.)*"(?: OR "(?:[^"\\]|\\.)*")*)\)'
                           r'(?: AND (?P<rest>.+))?$')
_QUERY_CONNECTION_RE = re.compile(r'^identities\.connection:"(?P<name>(?:[^"\\]|\\.)*)"$')
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def api_error(status: int, message: str, error_code: str | None = None,
              headers: dict[str, str] | None = None) -> Reply:
    """The Management API's error body."""
    body: dict[str, Any] = {"statusCode": status, "error": _phrase(status), "message": message}
    if error_code:
        body["errorCode"] = error_code
    return json_reply(status, body, headers)


def token_error(status: int, error: str, description: str,
                headers: dict[str, str] | None = None) -> Reply:
    """The token endpoint's OAuth error body."""
    return json_reply(status, {"error": error, "error_description": description}, headers)


def rate_limit_headers(limit: int, remaining: int, reset_after_s: float) -> dict[str, str]:
    """Auth0's rate-limit headers; the reset is an epoch second, rounded up."""
    return {"x-ratelimit-limit": str(limit), "x-ratelimit-remaining": str(max(0, remaining)),
            "x-ratelimit-reset": str(math.ceil(time.time() + reset_after_s))}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


# seed data ------------------------------------------------------------------------------------


@dataclass
class Tenant:
    """Users (user id -> full profile), roles (id -> role) and members (role id -> user ids)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)


def generate_tenant(seed: int = DEFAULT_SEED, users: int = DEFAULT_USERS) -> Tenant:
    """A reproducible tenant: ``users`` users over three connections, ~6% blocked, a few
    without email; roles admin (~4%), developer (~45%), viewer (~40%), support (unmapped) and
    the decoy admin-legacy; many users hold several roles, some none."""
    rng = random.Random(seed)
    tenant = Tenant()
    for i in range(users):
        profile = _profile(rng, i)
        tenant.users[profile["user_id"]] = profile
    names = ("admin", "developer", "viewer", "support", "admin-legacy")
    role_ids = {name: f"rol_{rng.getrandbits(64):016x}" for name in names}
    for name, role_id in role_ids.items():
        tenant.roles[role_id] = {"id": role_id, "name": name, "description": f"{name} role"}
        tenant.members[role_id] = []
    for user_id in tenant.users:
        for name in _roles_for(rng):
            tenant.members[role_ids[name]].append(user_id)
    return tenant


def _roles_for(rng: random.Random) -> list[str]:
    draw = rng.random()
    roles = []
    if draw < 0.04:
        roles.append("admin")
    if 0.02 < draw < 0.47:
        roles.append("developer")
    if 0.40 < draw < 0.80:
        roles.append("viewer")
    if rng.random() < 0.1:
        roles.append("support")
    if rng.random() < 0.01:
        roles.append("admin-legacy")
    return roles


def _profile(rng: random.Random, i: int) -> dict[str, Any]:
    connection, provider = _connection(rng)
    local = f"{rng.getrandbits(96):024x}"
    user_id = f"{provider}|{local}" if provider != "google-oauth2" else f"{provider}|{i:021d}"
    first, last = rng.choice(FIRST), rng.choice(LAST)
    email = f"{first}.{last}{i}@example.com"
    if rng.random() < 0.1:
        email = f"{first.title()}.{last.title()}{i}@Example.com"
    profile: dict[str, Any] = {
        "user_id": user_id, "email": email, "email_verified": True,
        "name": f"{first.title()} {last.title()}", "given_name": first.title(),
        "family_name": last.title(), "nickname": first, "picture": f"https://cdn.test/{i}.png",
        "identities": [{"connection": connection, "provider": provider,
                        "user_id": user_id.split("|", 1)[1], "isSocial": provider != "auth0"}],
        "app_metadata": {"department": rng.choice(DEPARTMENTS)},
        "user_metadata": {"desk": f"B{rng.randint(1, 9)}"},
        "created_at": "2024-01-02T03:04:05.000Z", "logins_count": rng.randint(0, 400),
    }
    if rng.random() < 0.06:
        profile["blocked"] = True
    elif rng.random() < 0.2:
        profile["blocked"] = False
    if rng.random() < 0.01:
        del profile["email"], profile["email_verified"]  # e.g. a passwordless SMS user
    return profile


def _connection(rng: random.Random) -> tuple[str, str]:
    draw, total = rng.random(), 0.0
    for name, provider, share in CONNECTIONS:
        total += share
        if draw < total:
            return name, provider
    return CONNECTIONS[0][0], CONNECTIONS[0][1]


# the fake -------------------------------------------------------------------------------------


@dataclass
class _NthFailure:
    prefix: str
    countdown: int
    status: int


class FakeAuth0(ServerBase):
    """An Auth0 tenant on 127.0.0.1, seeded with ``generate_tenant(seed, users)``."""

    def __init__(self, delay_s: float = 0.0, *, seed: int = DEFAULT_SEED,
                 users: int = DEFAULT_USERS,
                 token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S) -> None:
        super().__init__(delay_s)
        self.client_id = "apg" + secrets.token_hex(13)
        self.client_secret = secrets.token_urlsafe(48)
        self.token_lifetime_s = token_lifetime_s
        self.tenant = generate_tenant(seed, users)
        self._tokens: dict[str, float] = {}
        self._checkpoints: dict[str, tuple[str, int]] = {}
        self._nth: list[_NthFailure] = []

    # test controls ------------------------------------------------------------------------

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def audience(self) -> str:
        return self.base_url + API_PREFIX

    def role_id(self, name: str) -> str:
        """The id of the role called ``name``."""
        return next(r["id"] for r in self.tenant.roles.values() if r["name"] == name)

    def add_role(self, name: str, user_ids: Iterable[str]) -> str:
        """Create a role with these members; return its id."""
        role_id = f"rol_{secrets.token_hex(8)}"
        with self._lock:
            self.tenant.roles[role_id] = {"id": role_id, "name": name, "description": name}
            self.tenant.members[role_id] = list(user_ids)
        return role_id

    def members(self, role_name: str) -> list[dict[str, Any]]:
        """Full profiles of a role's members."""
        with self._lock:
            ids = self.tenant.members[self.role_id(role_name)]
            return [dict(self.tenant.users[user_id]) for user_id in ids]

    def set_blocked(self, email: str, blocked: bool = True) -> None:
        """Block (or unblock) every account with ``email``."""
        with self._lock:
            hits = [u for u in self.tenant.users.values()
                    if str(u.get("email", "")).lower() == email.lower()]
            if not hits:
                raise KeyError(email)
            for user in hits:
                user["blocked"] = blocked

    def revoke_tokens(self) -> None:
        """Forget every issued token (a rotated signing key): the next call gets 401."""
        with self._lock:
            self._tokens.clear()

    def rotate_secret(self) -> str:
        """Give the client a new secret; the old one now gets 401 ``access_denied``."""
        self.client_secret = secrets.token_urlsafe(48)
        return self.client_secret

    def fail_request(self, n: int, status: int, path_prefix: str = API_PREFIX) -> None:
        """Answer the ``n``-th request from now whose path starts with ``path_prefix``."""
        with self._lock:
            self._nth.append(_NthFailure(path_prefix, n, status))

    @property
    def token_requests(self) -> int:
        """Requests made to the token endpoint."""
        return len(self.requests_to(TOKEN_PATH))

    def requests_to(self, path_prefix: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    def expected_roles(self, mappings: dict[str, str],
                       connection: str | None = None) -> dict[str, str | None]:
        """Test oracle: email -> role a correct sync gives (None for blocked users)."""
        rank = {"read": 1, "write": 2, "admin": 3}
        found: dict[str, str | None] = {}
        with self._lock:
            for role_id, ids in self.tenant.members.items():
                mapped = mappings.get(self.tenant.roles[role_id]["name"])
                for user in (self.tenant.users[i] for i in ids):
                    email = user.get("email")
                    if mapped is None or not email or not _in_connection(user, connection):
                        continue
                    key = email.lower()
                    role = None if user.get("blocked") is True else mapped
                    found.setdefault(key, None)
                    if role and rank[role] > rank.get(found[key] or "", 0):
                        found[key] = role
        return found

    # ServerBase hooks ---------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """The path itself, for ``fail_next(webhook_url=...)`` on one endpoint."""
        path = urlsplit(url_or_path).path
        return path if path == TOKEN_PATH or path.startswith(API_PREFIX) else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """The Management API's body for a scripted failure (the token endpoint's: below)."""
        if status == 429:
            return api_error(429, "Global limit has been reached", "too_many_requests",
                             rate_limit_headers(RATE_LIMIT_PER_S, 0, retry_after_s))
        messages = {400: ("Bad Request", "invalid_query_string"), 401: ("Invalid token", None),
                    403: ("Insufficient scope, expected any of: read:users", "insufficient_scope"),
                    404: ("Not Found", None)}
        message, code = messages.get(status, (_phrase(status), None))
        return api_error(status, message, code)

    def _scripted(self, request: RecordedRequest) -> Reply | None:
        reply = super()._scripted(request)
        if reply is None or request.path != TOKEN_PATH or reply.status not in (401, 403, 429):
            return reply
        default = self.failure_reply(reply.status, 1.0)
        if reply.body != default.body:
            return reply  # the test chose its own body
        error = {401: "access_denied", 403: "access_denied", 429: "too_many_requests"}
        text = {401: "Unauthorized", 403: "Service not enabled within domain",
                429: "Global limit has been reached"}
        return token_error(reply.status, error[reply.status], text[reply.status], reply.headers)

    def handle(self, request: RecordedRequest) -> Reply:
        """Scripted n-th failures, then route, rate-limit, authenticate and answer."""
        failure = self._take_nth(request.path)
        if failure is not None:
            return self.failure_reply(failure, 1.0)
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return api_error(404, "Not Found")
            return self._limited("token") or self._token(request)
        if not request.path.startswith(API_PREFIX):
            return api_error(404, "Not Found")
        refusal = self._limited("management") or self._authenticate(request)
        if refusal is not None:
            return refusal
        if request.method != "GET":
            return api_error(405, "Method Not Allowed")
        return self._route(request)

    # token endpoint -----------------------------------------------------------------------

    def _token(self, request: RecordedRequest) -> Reply:
        form = self._token_form(request)
        if form is None:
            return token_error(400, "invalid_request", "Body must be JSON or form-urlencoded")
        if form.get("grant_type") != "client_credentials":
            return token_error(403, "unauthorized_client",
                               f"Grant type '{form.get('grant_type')}' not allowed for the client.")
        if form.get("client_id") != self.client_id \
                or form.get("client_secret") != self.client_secret:
            return token_error(401, "access_denied", "Unauthorized")
        if not form.get("audience"):
            return token_error(403, "access_denied", "No audience parameter was provided, and "
                               "no default audience has been configured")
        if form["audience"] != self.audience:
            return token_error(403, "access_denied",
                               f"Service not enabled within domain: {form['audience']}")
        token = "eyJ" + secrets.token_urlsafe(64)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime_s
        return json_reply(200, {"access_token": token, "token_type": "Bearer",
                                "expires_in": self.token_lifetime_s,
                                "scope": "read:users read:roles read:role_members"})

    @staticmethod
    def _token_form(request: RecordedRequest) -> dict[str, Any] | None:
        kind = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if kind == "application/json":
            return request.json if isinstance(request.json, dict) else None
        if kind == "application/x-www-form-urlencoded":
            return dict(parse_qsl(request.body.decode(errors="replace")))
        return None

    # Management API -----------------------------------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> Reply | None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return api_error(401, "Missing authentication")
        with self._lock:
            expires = self._tokens.get(token)
        if expires is None:
            return api_error(401, "Invalid token")
        if time.monotonic() >= expires:
            return api_error(401, "Expired token received for JSON Web Token validation")
        return None

    def _limited(self, bucket: str) -> Reply | None:
        window = self.take_rate_slot(bucket)
        if window is None or window.allowed:
            return None
        headers = rate_limit_headers(window.limit, 0, window.reset_after_s)
        if bucket == "token":
            return token_error(429, "too_many_requests", "Global limit has been reached", headers)
        return api_error(429, "Global limit has been reached", "too_many_requests", headers)

    def _route(self, request: RecordedRequest) -> Reply:
        match = ROLE_USERS_RE.match(request.path)
        if match:
            return self._role_users(request, match.group(1))
        if request.path == "/api/v2/roles":
            return self._roles(request)
        if request.path == "/api/v2/users":
            return self._users(request)
        return api_error(404, "Not Found")

    def _roles(self, request: RecordedRequest) -> Reply:
        wanted = request.query.get("name_filter", "").lower()
        with self._lock:
            roles = [dict(r) for r in self.tenant.roles.values() if wanted in r["name"].lower()]
        return self._offset(request, roles, "roles")

    def _users(self, request: RecordedRequest) -> Reply:
        engine = request.query.get("search_engine", "v3")
        if engine != "v3":
            return api_error(400, f"The search_engine {engine} is no longer supported",
                             "operation_not_supported")
        matcher = _parse_query(request.query.get("q", ""))
        if matcher is None:
            return api_error(400, f"Invalid query: {request.query.get('q')}",
                             "invalid_query_string")
        with self._lock:
            users = [dict(u) for u in self.tenant.users.values() if matcher(u)]
        return self._offset(request, users, "users", length=True)

    def _role_users(self, request: RecordedRequest, role_id: str) -> Reply:
        with self._lock:
            ids = list(self.tenant.members.get(role_id, ()))
            known = role_id in self.tenant.roles
            members = [_member(self.tenant.users[i]) for i in ids]
        if not known:
            return api_error(404, "The role does not exist.", "inexistent_role")
        if "from" in request.query or "take" in request.query:
            return self._checkpoint(request, role_id, members)
        return self._offset(request, members, "users")

    def _offset(self, request: RecordedRequest, items: list[dict[str, Any]], key: str,
                *, length: bool = False) -> Reply:
        query = request.query
        problem, page, per_page = _page_params(query)
        if problem:
            return problem
        start = page * per_page
        if per_page and start + per_page > OFFSET_LIMIT:
            return api_error(400, f"Requesting page {page} exceeds the allowed maximum of "
                             f"{OFFSET_LIMIT} records", "invalid_paging")
        chunk = items[start:start + per_page]
        if query.get("include_totals", "false").lower() != "true":
            return json_reply(200, chunk)
        body: dict[str, Any] = {"start": start, "limit": per_page, key: chunk,
                                "total": len(items)}
        if length:
            body["length"] = len(chunk)
        return json_reply(200, body)

    def _checkpoint(self, request: RecordedRequest, role_id: str,
                    members: list[dict[str, Any]]) -> Reply:
        query = request.query
        if "page" in query or "per_page" in query:
            return api_error(400, "Checkpoint paging (from/take) cannot be combined with "
                             "page/per_page", "invalid_query_string")
        take = _int(query.get("take"), DEFAULT_PER_PAGE)
        if take is None or not 1 <= take <= MAX_PER_PAGE:
            return api_error(400, "Query validation error: 'take' must be between 1 and "
                             f"{MAX_PER_PAGE}", "invalid_query_string")
        offset = 0
        if "from" in query:
            with self._lock:
                found = self._checkpoints.get(query["from"])
            if found is None or found[0] != role_id:
                return api_error(400, "Invalid checkpoint: from", "invalid_query_string")
            offset = found[1]
        chunk = members[offset:offset + take]
        body: dict[str, Any] = {"users": chunk}
        if offset + take < len(members):
            checkpoint = secrets.token_urlsafe(18)
            with self._lock:
                self._checkpoints[checkpoint] = (role_id, offset + take)
            body["next"] = checkpoint
        return json_reply(200, body)

    def _take_nth(self, path: str) -> int | None:
        """Count this request against every pending ``fail_request``; the status of one due."""
        due = None
        with self._lock:
            for failure in list(self._nth):
                if path.startswith(failure.prefix):
                    failure.countdown -= 1
                    if failure.countdown <= 0 and due is None:
                        self._nth.remove(failure)
                        due = failure.status
        return due

def _page_params(query: dict[str, str]) -> tuple[Reply | None, int, int]:
    page = _int(query.get("page"), 0)
    per_page = _int(query.get("per_page"), DEFAULT_PER_PAGE)
    if page is None or page < 0:
        return api_error(400, "Query validation error: 'page' must be a positive integer",
                         "invalid_query_string"), 0, 0
    if per_page is None or not 0 <= per_page <= MAX_PER_PAGE:
        return api_error(400, "Query validation error: 'Too big: must be at most 100' on "
                         "property per_page", "invalid_query_string"), 0, 0
    return None, page, per_page


def _int(text: str | None, default: int) -> int | None:
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        return None


def _member(user: dict[str, Any]) -> dict[str, Any]:
    """What ``/roles/{id}/users`` shows of a user: id, email, picture, name; nothing else."""
    return {k: user[k] for k in ("user_id", "email", "picture", "name") if k in user}


def _in_connection(user: dict[str, Any], connection: str | None) -> bool:
    return connection is None or any(i.get("connection") == connection
                                     for i in user.get("identities", ()))


def _parse_query(q: str) -> Any:
    """A predicate for the ``q`` shapes the connector sends, or None for anything else."""
    q = q.strip()
    if not q:
        return lambda user: True
    ids: set[str] | None = None
    rest: str | None = q
    match = _QUERY_IDS_RE.match(q)
    if match:
        ids = {_unquote(v) for v in _QUOTED_RE.findall(match.group("ids"))}
        rest = match.group("rest")
    connection = None
    if rest:
        found = _QUERY_CONNECTION_RE.match(rest)
        if found is None:
            return None
        connection = _unquote(found.group("name"))
    return lambda user: ((ids is None or user["user_id"] in ids)
                         and _in_connection(user, connection))
