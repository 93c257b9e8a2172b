"""Loopback fake of Okta's Management API (groups, group members, users), enforcing its contract.

Routes, GET only:
- ``/api/v1/groups``: ``q`` (name prefix, not paged, 300 results by default), ``search``
  (``profile.name``/``type``/``id`` ``eq``/``sw`` ``"..."`` terms joined by ``or``, paged), or
  neither (every group, paged); ``limit`` default and max 10000.
- ``/api/v1/groups/{id}/users``: members, paged; ``limit`` default 1000, max 10000.
- ``/api/v1/users``: every user but DEPROVISIONED ones, paged; ``limit`` default and max 200.

Order of checks: scripted failure (``fail_next``), scripted page failure (``fail_next_page``),
method, ``Authorization: SSWS <token>``, rate limit, route, ``limit``, ``after``, ``search``.
Listings are ordered by id; a page that is not the last carries ``Link: <...>; rel="next"``
whose ``after`` cursor is opaque: the fake hands out random cursors and refuses any other.
Every answer carries ``X-Rate-Limit-Limit``, ``-Remaining`` and ``-Reset`` (epoch seconds).
"""

from __future__ import annotations

import math
import random
import re
import secrets
import string
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

NOMINAL_RATE_LIMIT = 600
"""``X-Rate-Limit-Limit`` reported when the test set no rate limit (requests a minute)."""

GROUP_NAMES = ("Platform Team", "Development Team", "QA Team", "Sales", "Contractors")
"""Groups of the seeded directory (plus the built-in ``Everyone``)."""

MEMBERSHIP_ODDS = {"Platform Team": 0.08, "Development Team": 0.55, "QA Team": 0.40,
                   "Sales": 0.15, "Contractors": 0.10}
"""Chance that a seeded user is in each group (independently: many are in several)."""

STATUS_WEIGHTS = {"ACTIVE": 80, "PASSWORD_EXPIRED": 3, "LOCKED_OUT": 3, "RECOVERY": 2,
                  "SUSPENDED": 5, "DEPROVISIONED": 5, "STAGED": 1, "PROVISIONED": 1}
"""Relative frequency of each Okta user status in the seeded directory."""

USER_STATUSES = tuple(STATUS_WEIGHTS)

FIRST_NAMES = ("Ada", "Ben", "Cleo", "Dan", "Eve", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kai",
               "Lea", "Max", "Nia", "Oli", "Pia", "Quin", "Rae", "Sam", "Tia")
LAST_NAMES = ("Adams", "Brown", "Chen", "Diaz", "Evans", "Fox", "Garcia", "Hill", "Ito", "Jones",
              "Khan", "Lopez", "Meyer", "Novak", "Ortiz", "Patel")
DEPARTMENTS = ("Engineering", "Quality", "Sales", "Operations", "Finance")

LIMITS = {"groups": (10000, 10000), "group_users": (1000, 10000), "users": (200, 200)}
"""(default, max) ``limit`` of each listing; a larger limit is capped, a bad one refused."""
Q_DEFAULT_LIMIT = 300
"""Groups returned for ``q`` (which is never paged)."""

_GROUP_USERS_RE = re.compile(r"^/api/v1/groups/(?P<id>[^/]+)/users$")
_TERM_RE = re.compile(r'\s*(profile\.name|type|id)\s+(eq|sw)\s+"((?:[^"\\]|\\.)*)"\s*')
_OR_RE = re.compile(r"or\b", re.IGNORECASE)


def okta_error(code: str, summary: str, causes: Iterable[str] = ()) -> dict[str, Any]:
    """Okta's error body."""
    return {"errorCode": code, "errorSummary": summary, "errorLink": code,
            "errorId": "oae" + secrets.token_hex(10),
            "errorCauses": [{"errorSummary": cause} for cause in causes]}


INVALID_TOKEN = ("E0000011", "Invalid token provided")
RATE_LIMITED = ("E0000047", "API call exceeded rate limit due to too many requests.")
KNOWN_ERRORS = {400: ("E0000001", "Api validation failed"), 401: INVALID_TOKEN,
                403: ("E0000006", "You do not have permission to perform the requested action"),
                404: ("E0000007", "Not found: Resource not found"),
                405: ("E0000022", "The endpoint does not support the provided HTTP method"),
                429: RATE_LIMITED}


def okta_id(rng: random.Random, prefix: str) -> str:
    """An Okta-style id: a 3-character type prefix and 17 alphanumerics."""
    return prefix + "".join(rng.choices(string.ascii_letters + string.digits, k=17))


@dataclass
class Seeded:
    """A generated directory: users, groups and memberships (group id → user ids)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)


def make_user(user_id: str, email: str, status: str, **profile: Any) -> dict[str, Any]:
    """An Okta User object."""
    first, last = email.split("@")[0].split(".")[0].title(), "User"
    return {
        "id": user_id, "status": status, "created": "2024-01-02T10:00:00.000Z",
        "activated": None if status in ("STAGED", "PROVISIONED") else "2024-01-02T10:05:00.000Z",
        "statusChanged": "2025-01-01T00:00:00.000Z", "lastLogin": None,
        "lastUpdated": "2025-01-01T00:00:00.000Z", "passwordChanged": None,
        "type": {"id": "oty1default"},
        "profile": {"login": email, "email": email, "firstName": first, "lastName": last,
                    "mobilePhone": None, "secondEmail": None, **profile},
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
    }


def make_group(group_id: str, name: str, kind: str = "OKTA_GROUP") -> dict[str, Any]:
    """An Okta Group object."""
    return {"id": group_id, "created": "2024-01-01T00:00:00.000Z",
            "lastUpdated": "2024-06-01T00:00:00.000Z",
            "lastMembershipUpdated": "2025-01-01T00:00:00.000Z", "objectClass": ["okta:user_group"],
            "type": kind, "profile": {"name": name, "description": f"{name} (seeded)"}}


def seed_directory(seed: int = 7, n_users: int = 700) -> Seeded:
    """``n_users`` users across ``GROUP_NAMES`` (and ``Everyone``), reproducible from ``seed``."""
    rng = random.Random(seed)
    found = Seeded()
    everyone = okta_id(rng, "00g")
    found.groups[everyone] = make_group(everyone, "Everyone", "BUILT_IN")
    found.members[everyone] = set()
    by_name = {}
    for name in GROUP_NAMES:
        group_id = okta_id(rng, "00g")
        found.groups[group_id], found.members[group_id] = make_group(group_id, name), set()
        by_name[name] = group_id
    for i in range(n_users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        user_id, email = okta_id(rng, "00u"), f"{first}.{last}{i}@example.com".lower()
        status = rng.choices(USER_STATUSES, weights=list(STATUS_WEIGHTS.values()))[0]
        found.users[user_id] = make_user(user_id, email, status, firstName=first,
                                         lastName=last, department=rng.choice(DEPARTMENTS),
                                         employeeNumber=str(10000 + i))
        found.members[everyone].add(user_id)
        for name, odds in MEMBERSHIP_ODDS.items():
            if rng.random() < odds:
                found.members[by_name[name]].add(user_id)
    return found


def parse_search(expression: str) -> list[tuple[str, str, str]]:
    """``(attribute, operator, value)`` terms of ``a eq "x" or b sw "y"``; ValueError if bad."""
    terms, pos = [], 0
    while True:
        match = _TERM_RE.match(expression, pos)
        if match is None:
            raise ValueError(f"cannot parse search at {pos}: {expression[pos:pos + 40]!r}")
        terms.append((match[1], match[2], re.sub(r"\\(.)", r"\1", match[3])))
        pos = match.end()
        if pos == len(expression):
            return terms
        connector = _OR_RE.match(expression, pos)
        if connector is None:
            raise ValueError(f"expected 'or' at {pos}: {expression[pos:pos + 40]!r}")
        pos = connector.end()


def group_matches(group: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    """Whether ``group`` satisfies any term (strings compare case-insensitively)."""
    for attribute, operator, wanted in terms:
        value = str(group["profile"]["name"] if attribute == "profile.name" else group[attribute])
        if operator == "eq" and value.lower() == wanted.lower():
            return True
        if operator == "sw" and value.lower().startswith(wanted.lower()):
            return True
    return False


@dataclass
class _PageFailure:
    reply: Reply
    remaining: int


class FakeOkta(ServerBase):
    """Okta on 127.0.0.1: an SSWS token, a seeded directory, Link-header paging."""

    def __init__(self, token: str | None = None, seed: int = 7, n_users: int = 700,
                 delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.token = token or "00" + secrets.token_urlsafe(30)
        self.data = seed_directory(seed, n_users)
        self._rng = random.Random(seed + 1)
        self._cursors: dict[str, tuple[str, str]] = {}
        self._page_failures: list[_PageFailure] = []

    # test controls --------------------------------------------------------------------------

    def group_id(self, name: str) -> str:
        """The id of the (first) group called ``name``."""
        with self._lock:
            return next(g["id"] for g in self.data.groups.values() if g["profile"]["name"] == name)

    def add_group(self, name: str, kind: str = "OKTA_GROUP") -> str:
        """Create a group; return its id."""
        with self._lock:
            group_id = okta_id(self._rng, "00g")
            self.data.groups[group_id], self.data.members[group_id] = make_group(
                group_id, name, kind), set()
            return group_id

    def add_user(self, email: str, status: str = "ACTIVE", groups: Iterable[str] = (),
                 **profile: Any) -> str:
        """Create a user in the groups named ``groups``; return its id."""
        group_ids = [self.group_id(name) for name in groups]
        with self._lock:
            user_id = okta_id(self._rng, "00u")
            self.data.users[user_id] = make_user(user_id, email, status, **profile)
            for group_id in group_ids:
                self.data.members[group_id].add(user_id)
            return user_id

    def set_status(self, email: str, status: str) -> None:
        """Change a user's status (``SUSPENDED``, ``DEPROVISIONED``, ``ACTIVE``...)."""
        if status not in USER_STATUSES:
            raise ValueError(f"not an Okta user status: {status!r}")
        with self._lock:
            self._user_by_email(email)["status"] = status

    def user(self, email: str) -> dict[str, Any]:
        """A copy of the user whose ``profile.email`` is ``email``."""
        with self._lock:
            return dict(self._user_by_email(email))

    def members(self, group_name: str) -> list[dict[str, Any]]:
        """Copies of the users in the group called ``group_name``."""
        group_id = self.group_id(group_name)
        with self._lock:
            return [dict(self.data.users[uid]) for uid in sorted(self.data.members[group_id])]

    def fail_next_page(self, status: int, times: int = 1, retry_after_s: float = 1.0) -> None:
        """Answer the next ``times`` requests that follow a next link (carry ``after``)."""
        with self._lock:
            self._page_failures.append(_PageFailure(self.failure_reply(status, retry_after_s),
                                                    times))

    def page_requests(self) -> list[RecordedRequest]:
        """Requests that followed a next link (page 2 and later of some listing)."""
        return [r for r in self.requests if "after" in r.query]

    # ServerBase hooks -----------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """Scripted failures may target one path (e.g. one group's members)."""
        return urlsplit(url_or_path).path or None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Okta's own body (and, for 429, its rate-limit headers) for ``status``."""
        code, summary = KNOWN_ERRORS.get(status, ("E0000009", "Internal Server Error"))
        headers = self._rate_headers(NOMINAL_RATE_LIMIT, 0 if status == 429 else 1,
                                     retry_after_s)
        return json_reply(status, okta_error(code, summary), headers)

    def respond(self, request: RecordedRequest) -> Reply:
        """As ServerBase, with ``X-Rate-Limit-Reset`` of scripted replies set at answer time."""
        reply = super().respond(request)
        wait = reply.headers.get("X-Fake-Reset-In")
        if wait is None:
            return reply
        headers = {k: v for k, v in reply.headers.items() if k != "X-Fake-Reset-In"}
        headers["X-Rate-Limit-Reset"] = str(math.ceil(time.time() + float(wait)))
        return Reply(reply.status, reply.body, headers)

    def handle(self, request: RecordedRequest) -> Reply:
        """Check failures, method, token and rate limit, then route."""
        failure = self._page_failure(request)
        if failure is not None:
            return failure
        if request.method != "GET":
            return self._error(405, detail=f"{request.method} {request.path}")
        if request.header("Authorization") != f"SSWS {self.token}":
            return self._error(401)
        bucket = self._bucket(request.path)
        window = self.take_rate_slot(bucket)
        if window is not None and not window.allowed:
            return json_reply(429, okta_error(*RATE_LIMITED),
                              self._rate_headers(window.limit, 0, window.reset_after_s, now=True))
        headers = (self._rate_headers(window.limit, window.remaining, window.reset_after_s,
                                      now=True) if window is not None else
                   self._rate_headers(NOMINAL_RATE_LIMIT, NOMINAL_RATE_LIMIT - 1, 60, now=True))
        reply = self._route(request, bucket)
        return Reply(reply.status, reply.body, {**reply.headers, **headers})

    # routing --------------------------------------------------------------------------------

    def _route(self, request: RecordedRequest, bucket: str) -> Reply:
        if bucket == "groups":
            return self._groups(request)
        if bucket == "users":
            with self._lock:
                items = [u for u in self.data.users.values() if u["status"] != "DEPROVISIONED"]
            return self._page(request, "users", items)
        match = _GROUP_USERS_RE.match(request.path)
        if match is None:
            return self._error(404, detail=request.path)
        with self._lock:
            ids = self.data.members.get(match["id"])
            items = [self.data.users[uid] for uid in ids] if ids is not None else []
        if ids is None:
            return self._error(404, detail=f"{match['id']} (UserGroup)")
        return self._page(request, "group_users", items)

    def _groups(self, request: RecordedRequest) -> Reply:
        with self._lock:
            groups = list(self.data.groups.values())
        if "q" in request.query:
            limit = self._limit(request, "groups", Q_DEFAULT_LIMIT)
            if isinstance(limit, Reply):
                return limit
            prefix = request.query["q"].lower()
            found = sorted((g for g in groups if g["profile"]["name"].lower().startswith(prefix)),
                           key=lambda g: g["id"])
            return json_reply(200, [self._with_links(g, "groups") for g in found[:limit]])
        if "search" in request.query:
            try:
                terms = parse_search(request.query["search"])
            except ValueError as exc:
                return self._error(400, "E0000031", "Invalid search criteria.", str(exc))
            groups = [g for g in groups if group_matches(g, terms)]
        return self._page(request, "groups", groups)

    def _page(self, request: RecordedRequest, bucket: str, items: list[dict[str, Any]]) -> Reply:
        """One page of ``items`` (ordered by id) after the request's cursor, with Link headers."""
        limit = self._limit(request, bucket, LIMITS[bucket][0])
        if isinstance(limit, Reply):
            return limit
        listing = f"{request.path}?{request.query.get('search', '')}"
        items = sorted(items, key=lambda item: item["id"])
        if "after" in request.query:
            with self._lock:
                cursor = self._cursors.get(request.query["after"])
            if cursor is None or cursor[0] != listing:
                return self._error(400, detail="after: not a cursor this listing handed out")
            items = [item for item in items if item["id"] > cursor[1]]
        page, rest = items[:limit], items[limit:]
        links = [f'<{self._url(request.path, request.query)}>; rel="self"']
        if rest:
            token = secrets.token_urlsafe(12)
            with self._lock:
                self._cursors[token] = (listing, page[-1]["id"])
            query = {k: v for k, v in request.query.items() if k not in ("after", "limit")}
            query.update(after=token, limit=str(limit))
            links.append(f'<{self._url(request.path, query)}>; rel="next"')
        body = [self._with_links(item, bucket) for item in page]
        return json_reply(200, body, {"Link": ", ".join(links)})

    def _limit(self, request: RecordedRequest, bucket: str, default: int) -> int | Reply:
        text = request.query.get("limit")
        if text is None:
            return default
        if not text.isdigit() or int(text) < 1:
            return self._error(400, detail=f"limit: must be a positive integer, got {text!r}")
        return min(int(text), LIMITS[bucket][1])

    # helpers --------------------------------------------------------------------------------

    def _page_failure(self, request: RecordedRequest) -> Reply | None:
        if "after" not in request.query:
            return None
        with self._lock:
            if not self._page_failures:
                return None
            failure = self._page_failures[0]
            failure.remaining -= 1
            if failure.remaining <= 0:
                self._page_failures.pop(0)
            return failure.reply

    def _user_by_email(self, email: str) -> dict[str, Any]:
        for user in self.data.users.values():
            if user["profile"]["email"].lower() == email.lower():
                return user
        raise KeyError(email)

    def _bucket(self, path: str) -> str:
        if path == "/api/v1/groups":
            return "groups"
        if path == "/api/v1/users":
            return "users"
        return "group_users"

    def _url(self, path: str, query: dict[str, str]) -> str:
        return f"{self.base_url}{path}" + (f"?{urlencode(query, quote_via=quote)}" if query else "")

    def _with_links(self, item: dict[str, Any], bucket: str) -> dict[str, Any]:
        kind = "groups" if bucket == "groups" else "users"
        return {**item, "_links": {"self": {"href": f"{self.base_url}/api/v1/{kind}/{item['id']}"}}}

    def _error(self, status: int, code: str | None = None, summary: str | None = None,
               detail: str | None = None) -> Reply:
        known_code, known_summary = KNOWN_ERRORS.get(status, ("E0000009", "Internal Server Error"))
        summary = summary or known_summary
        if status == 404 and detail:
            summary, detail = f"{summary}: {detail}", None
        causes = [detail] if detail else []
        return json_reply(status, okta_error(code or known_code, summary, causes))

    def _rate_headers(self, limit: int, remaining: int, reset_in_s: float, *,
                      now: bool = False) -> dict[str, str]:
        headers = {"X-Rate-Limit-Limit": str(limit), "X-Rate-Limit-Remaining": str(remaining)}
        if now:
            headers["X-Rate-Limit-Reset"] = str(math.ceil(time.time() + reset_in_s))
        else:
            headers["X-Fake-Reset-In"] = str(reset_in_s)
        return headers
