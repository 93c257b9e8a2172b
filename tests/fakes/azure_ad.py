"""Loopback fake of Microsoft Entra ID: the v2.0 token endpoint and Microsoft Graph's groups.

Routes (one server plays both ``authority_url`` and ``graph_url``):

- ``POST /{tenant}/oauth2/v2.0/token``: form-encoded client credentials only. The tenant (id or
  domain), ``grant_type=client_credentials``, ``client_id``, ``client_secret`` and
  ``scope={graph}/.default`` are checked in Entra's order, refusals are its JSON
  (``{"error": "invalid_client", "error_description": "AADSTS7000215: ...", "error_codes"...}``);
  a grant is ``{"token_type": "Bearer", "expires_in": ..., "access_token": ...}``.
- ``GET /{v1.0|beta}/groups`` with ``$filter`` (startswith / endswith / eq / ne / in / not,
  and / or, on displayName, mail, mailNickname; endswith, ne and not need
  ``ConsistencyLevel: eventual`` and ``$count=true``), ``$select``, ``$top``, ``$count``.
- ``GET /{version}/groups/{id}/members`` and ``/transitiveMembers`` (users, devices, service
  principals, contacts and nested groups, each with its ``@odata.type``).
- ``GET /{version}/users`` (every user; items carry no ``@odata.type``, as in a typed list).

Every Graph call needs ``Authorization: Bearer <token>`` with a token this fake granted and that
has not expired or been revoked (401 ``InvalidAuthenticationToken`` otherwise). ``$top`` must be
1..999; a page holds ``min($top or 100, max_page_size)`` items and ends with an
``@odata.nextLink`` carrying an opaque ``$skiptoken``, which must come back unaltered.
Rate limits are 429 ``TooManyRequests`` with ``Retry-After`` (seconds). ``fail_next`` aims at
"token" or "graph" (``webhook_url`` = any URL of either); one that lands on the token endpoint
answers in Entra's format. ``fail_page`` fails page N of the next collection read.

Not in the contract, chosen here: a next link whose query was altered is a 400, and
``max_page_size`` lets tests make Graph return fewer items than ``$top`` (Graph may).
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply

USER = "#microsoft.graph.user"
GROUP = "#microsoft.graph.group"
DEVICE = "#microsoft.graph.device"
SERVICE_PRINCIPAL = "#microsoft.graph.servicePrincipal"
CONTACT = "#microsoft.graph.orgContact"

USER_DEFAULT = ("businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
                "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id")
"""What Graph returns for a user without ``$select`` (``accountEnabled`` is not among them)."""

PROPERTIES = {
    USER: (*USER_DEFAULT, "accountEnabled", "department", "employeeId", "userType",
           "companyName", "city", "country", "createdDateTime"),
    GROUP: ("id", "displayName", "description", "mail", "mailEnabled", "mailNickname",
            "securityEnabled", "groupTypes", "createdDateTime"),
    DEVICE: ("id", "displayName", "deviceId", "operatingSystem", "accountEnabled"),
    SERVICE_PRINCIPAL: ("id", "displayName", "appId", "servicePrincipalType", "accountEnabled"),
    CONTACT: ("id", "displayName", "mail", "givenName", "surname", "companyName"),
}
"""Properties each directory object type has (``$select`` may name any of them)."""

FILTERABLE = {"displayName": str, "mail": str, "mailNickname": str, "securityEnabled": bool,
              "mailEnabled": bool}
"""Group properties ``$filter`` accepts here."""

ADVANCED_OPERATORS = ("endswith", "ne", "not")
"""Operators Graph serves only as advanced queries (ConsistencyLevel: eventual, $count=true)."""

DEFAULT_PAGE = 100
MAX_TOP = 999
DEFAULT_TOKEN_LIFETIME_S = 3599
GROUP_FILTER = "startswith(displayName,'APG_')"
MAPPINGS = {"APG_Admins": "admin", "APG_Developers": "write", "APG_QA": "read",
            "APG_Readers": "read"}
"""The group mappings tests use (the guide names none)."""

GRAPH_APP = "00000003-0000-0000-c000-000000000000"
"""Microsoft Graph's application id, as named in ``WWW-Authenticate``."""

PEOPLE = {
    "alice": "alice.admin@contoso.com",      # APG_Admins                       -> admin
    "bob": "bob.dev@contoso.com",            # APG_Developers + APG_QA          -> write
    "carol": "carol.qa@contoso.com",         # APG_QA                           -> read
    "dave": "dave.oncall@contoso.com",       # APG_Platform_Oncall, nested in Admins -> admin
    "erin": "erin.disabled@contoso.com",     # APG_Admins, accountEnabled false -> None
    "frank": "frank.nomail@contoso.com",     # mail null, UPN used; Developers  -> write
    "gina": "gina.finance@contoso.com",      # Finance only: not synced
    "hank": "hank@partner.example",          # guest with mail; APG_QA          -> read
    "jack": "jack.contractor@contoso.com",   # Contractors, nested in APG_Readers -> read
}
"""Named users of the seeded tenant (e-mail as the directory should report it)."""

_ROUTE_RE = re.compile(r"^/(?P<version>[^/]+)/(?P<collection>groups|users)"
                       r"(?:/(?P<group>[^/]+)/(?P<rel>[^/]+))?/?$")
_TOKEN_RE = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token/?$")


# the directory --------------------------------------------------------------------------------

@dataclass
class Tenant:
    """The directory of one tenant: objects by id, and each group's direct members."""

    domain: str = "contoso.com"
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(0))

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def add(self, kind: str, **props: Any) -> str:
        obj = {"@odata.type": kind, "id": self.new_id(), **props}
        self.objects[obj["id"]] = obj
        if kind == GROUP:
            self.members[obj["id"]] = []
        return str(obj["id"])

    def add_group(self, name: str) -> str:
        return self.add(GROUP, displayName=name, mailNickname=name.replace(" ", ""),
                        mail=None, mailEnabled=False, securityEnabled=True, groupTypes=[],
                        description=f"{name} (seeded)", createdDateTime="2024-01-02T03:04:05Z")

    def add_user(self, given: str, surname: str, *, mail: str | None, upn: str,
                 enabled: bool = True, **props: Any) -> str:
        return self.add(USER, displayName=f"{given} {surname}", givenName=given,
                        surname=surname, mail=mail, userPrincipalName=upn,
                        accountEnabled=enabled, businessPhones=[], mobilePhone=None,
                        officeLocation=None, preferredLanguage="en-US",
                        userType=props.pop("userType", "Member"), **props)

    def join(self, group_id: str, *member_ids: str) -> None:
        for member in member_ids:
            if member not in self.members[group_id]:
                self.members[group_id].append(member)

    def group(self, name: str) -> str:
        """The id of the group named ``name``."""
        return next(i for i, o in self.objects.items()
                    if o["@odata.type"] == GROUP and o["displayName"] == name)

    def user(self, email: str) -> dict[str, Any]:
        """The user whose mail (or UPN) is ``email``."""
        wanted = email.lower()
        return next(o for o in self.objects.values() if o["@odata.type"] == USER and wanted in
                    ((o.get("mail") or "").lower(), o["userPrincipalName"].lower()))

    def groups(self) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o["@odata.type"] == GROUP]

    def direct(self, group_id: str) -> list[dict[str, Any]]:
        return [self.objects[i] for i in self.members[group_id]]

    def transitive(self, group_id: str) -> list[dict[str, Any]]:
        """Every member, nested groups expanded (and listed), each object once."""
        found: dict[str, dict[str, Any]] = {}
        pending = [group_id]
        while pending:
            for member in self.direct(pending.pop(0)):
                if member["id"] in found or member["id"] == group_id:
                    continue
                found[member["id"]] = member
                if member["@odata.type"] == GROUP:
                    pending.append(member["id"])
        return list(found.values())


def seed_tenant(seed: int = 7, users: int = 600) -> Tenant:
    """A tenant with the named ``PEOPLE`` and ``users`` generated users across APG_* groups
    (some disabled, some without mail, some in several groups), plus devices, service
    principals, contacts and a nested group among the members."""
    t = Tenant(rng=random.Random(seed))
    g = {name: t.add_group(name) for name in ("APG_Admins", "APG_Developers", "APG_QA",
                                              "APG_Readers", "APG_Platform_Oncall", "Finance",
                                              "Contractors", "All Company")}
    t.join(g["APG_Admins"], g["APG_Platform_Oncall"])
    t.join(g["APG_Readers"], g["Contractors"])  # a nested group the filter does not pick
    _seed_people(t, g)
    weights = [("APG_Developers", 48), ("APG_QA", 20), ("APG_Readers", 18), ("APG_Admins", 3),
               ("Finance", 7), ("Contractors", 4)]
    departments = ["Engineering", "Quality", "Operations", "Finance", "Sales"]
    for i in range(users):
        name = f"user{i:04d}"
        mail = None if t.rng.random() < 0.05 else f"{name}@{t.domain}"
        uid = t.add_user(f"User{i:04d}", "Generated", mail=mail, upn=f"{name}@{t.domain}",
                         enabled=t.rng.random() >= 0.08, jobTitle="Engineer",
                         department=t.rng.choice(departments), employeeId=str(10000 + i))
        first = t.rng.choices([n for n, _ in weights], [w for _, w in weights])[0]
        t.join(g[first], uid)
        if t.rng.random() < 0.15:
            t.join(g[t.rng.choice(["APG_Developers", "APG_QA", "APG_Readers"])], uid)
        t.join(g["All Company"], uid)
    _seed_non_users(t, g)
    return t


def _seed_people(t: Tenant, g: dict[str, str]) -> None:
    d = t.domain
    people = [
        ("alice", "Alice", "Admin", {}, ["APG_Admins"]),
        ("bob", "Bob", "Dev", {}, ["APG_Developers", "APG_QA"]),
        ("carol", "Carol", "Qa", {}, ["APG_QA"]),
        ("dave", "Dave", "Oncall", {}, ["APG_Platform_Oncall"]),
        ("erin", "Erin", "Disabled", {"enabled": False}, ["APG_Admins"]),
        ("frank", "Frank", "Nomail", {"mail": None}, ["APG_Developers"]),
        ("gina", "Gina", "Finance", {}, ["Finance"]),
        ("hank", "Hank", "Guest", {"upn": "hank_partner.example#EXT#@contoso.onmicrosoft.com",
                                   "userType": "Guest"}, ["APG_QA"]),
        ("ivan", "Ivan", "Guest", {"mail": None, "userType": "Guest",
                                   "upn": "ivan_partner.example#EXT#@contoso.onmicrosoft.com"},
         ["APG_QA"]),
        ("jack", "Jack", "Contractor", {}, ["Contractors"]),
    ]
    for key, given, surname, extra, groups in people:
        email = PEOPLE.get(key, f"{key}@{d}")
        options: dict[str, Any] = {"mail": email, "upn": email, "jobTitle": f"{surname} lead",
                                   "department": "Engineering", **extra}
        uid = t.add_user(given, surname, **options)
        for name in groups:
            t.join(g[name], uid)


def _seed_non_users(t: Tenant, g: dict[str, str]) -> None:
    for i in range(12):
        t.join(g["APG_Developers"], t.add(DEVICE, displayName=f"LAPTOP-{i:03d}",
                                          deviceId=t.new_id(), operatingSystem="Windows",
                                          accountEnabled=True))
    for i, group in enumerate(["APG_Admins", "APG_Admins", "APG_Developers"]):
        t.join(g[group], t.add(SERVICE_PRINCIPAL, displayName=f"deploy-bot-{i}",
                               appId=t.new_id(), servicePrincipalType="Application",
                               accountEnabled=True))
    for i in range(5):
        t.join(g["APG_Readers"], t.add(CONTACT, displayName=f"Vendor Contact {i}",
                                       mail=f"contact{i}@vendor.example"))


# errors ---------------------------------------------------------------------------------------

def graph_error(status: int, code: str, message: str,
                headers: dict[str, str] | None = None) -> Reply:
    """Graph's error body: ``{"error": {"code", "message", "innerError"}}``."""
    inner = {"date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
             "request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())}
    return json_reply(status, {"error": {"code": code, "message": message,
                                         "innerError": inner}}, headers)


def unauthenticated(message: str) -> Reply:
    """Graph's 401 for a missing, malformed, unknown or expired token."""
    challenge = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/'
                 f'oauth2/authorize", client_id="{GRAPH_APP}"')
    return graph_error(401, "InvalidAuthenticationToken", message,
                       {"WWW-Authenticate": challenge})


def throttled(retry_after_s: float) -> Reply:
    """Graph's 429 with ``Retry-After`` in whole seconds."""
    wait = str(max(1, math.ceil(retry_after_s)))
    return graph_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": wait})


def aad_error(status: int, error: str, code: int, description: str) -> Reply:
    """Entra ID's token endpoint error (``error``, ``error_description`` "AADSTS...", ...)."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return json_reply(status, {
        "error": error,
        "error_description": f"AADSTS{code}: {description} Trace ID: {trace} "
                             f"Correlation ID: {correlation} Timestamp: {now}",
        "error_codes": [code], "timestamp": now, "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={code}"})


TOKEN_FAILURES = {
    400: ("invalid_request", 900144, "The request body must contain the following parameter: "
          "'grant_type'."),
    401: ("invalid_client", 7000215, "Invalid client secret provided."),
    403: ("unauthorized_client", 700016, "Application was not found in the directory."),
    429: ("temporarily_unavailable", 90055, "TenantThrottlingError - There are too many "
          "incoming requests. This exception is thrown for blocked tenants."),
    500: ("server_error", 90033, "A transient error has occurred. Please try again."),
}
"""Entra's error for a scripted failure of the token endpoint, by status."""


def _missing(name: str) -> Reply:
    return aad_error(400, "invalid_request", 900144,
                     f"The request body must contain the following parameter: '{name}'.")


# $filter --------------------------------------------------------------------------------------

class FilterError(ValueError):
    """A ``$filter`` the fake (and Graph) cannot parse."""


Test = Callable[[dict[str, Any]], bool]

_FILTER_TOKEN_RE = re.compile(r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<punct>[(),])"
                              r"|(?P<word>[A-Za-z_][A-Za-z0-9_]*))")


def parse_filter(text: str) -> tuple[Test, set[str]]:
    """(predicate over a group, advanced operators used) for an OData ``$filter``."""
    tokens, pos = [], 0
    while pos < len(text.rstrip()):
        match = _FILTER_TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise FilterError(f"Syntax error at position {pos} in '{text}'.")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
    parser = _FilterParser(tokens, text)
    test = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"Syntax error: unexpected '{parser.peek()}' in '{text}'.")
    return test, parser.advanced


class _FilterParser:
    def __init__(self, tokens: list[tuple[str, str]], text: str) -> None:
        self.tokens, self.text, self.i = tokens, text, 0
        self.advanced: set[str] = set()

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None, value: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise FilterError(f"Syntax error: unexpected end of '{self.text}'.")
        got_kind, got = self.tokens[self.i]
        if (kind and got_kind != kind) or (value and got.lower() != value):
            raise FilterError(f"Syntax error at '{got}' in '{self.text}'.")
        self.i += 1
        return got

    def expression(self) -> Test:
        tests = [self.term()]
        while (self.peek() or "").lower() == "or":
            self.take()
            tests.append(self.term())
        return lambda obj: any(t(obj) for t in tests)

    def term(self) -> Test:
        tests = [self.factor()]
        while (self.peek() or "").lower() == "and":
            self.take()
            tests.append(self.factor())
        return lambda obj: all(t(obj) for t in tests)

    def factor(self) -> Test:
        word = (self.peek() or "").lower()
        if word == "not":
            self.take()
            self.advanced.add("not")
            inner = self.factor()
            return lambda obj: not inner(obj)
        if word == "(":
            self.take()
            inner = self.expression()
            self.take("punct", ")")
            return inner
        if word in ("startswith", "endswith"):
            return self.function(word)
        return self.comparison()

    def function(self, name: str) -> Test:
        self.take()
        self.take("punct", "(")
        prop = self.prop()
        self.take("punct", ",")
        value = self.literal(str)
        self.take("punct", ")")
        if name == "endswith":
            self.advanced.add("endsWith")
            return lambda obj: str(obj.get(prop) or "").casefold().endswith(value.casefold())
        return lambda obj: str(obj.get(prop) or "").casefold().startswith(value.casefold())

    def comparison(self) -> Test:
        prop = self.prop()
        op = self.take("word").lower()
        if op == "in":
            self.take("punct", "(")
            values = [self.literal(FILTERABLE[prop])]
            while self.peek() == ",":
                self.take()
                values.append(self.literal(FILTERABLE[prop]))
            self.take("punct", ")")
            folded = {_fold(v) for v in values}
            return lambda obj: _fold(obj.get(prop)) in folded
        if op not in ("eq", "ne"):
            raise FilterError(f"Invalid filter clause: unsupported operator '{op}'.")
        value = _fold(self.literal(FILTERABLE[prop]))
        if op == "ne":
            self.advanced.add("ne")
            return lambda obj: _fold(obj.get(prop)) != value
        return lambda obj: _fold(obj.get(prop)) == value

    def prop(self) -> str:
        name = self.take("word")
        if name not in FILTERABLE:
            raise FilterError(f"Invalid filter clause: could not find a property named "
                              f"'{name}' on type 'microsoft.graph.group'.")
        return name

    def literal(self, kind: type) -> Any:
        kind_, token = self.tokens[self.i] if self.i < len(self.tokens) else ("", "")
        self.take()
        if kind is bool and token.lower() in ("true", "false"):
            return token.lower() == "true"
        if kind is str and kind_ == "string":
            return token[1:-1].replace("''", "'")
        raise FilterError(f"Invalid filter clause: '{token}' is not a valid literal here.")


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


# the server -----------------------------------------------------------------------------------

@dataclass
class _Page:
    path: str
    query: dict[str, str]
    offset: int
    number: int


@dataclass
class _PageFailure:
    reply: Reply
    page: int
    remaining: int


class FakeAzureAD(ServerBase):
    """Entra ID's token endpoint and Graph's groups/members on 127.0.0.1 for one tenant."""

    def __init__(self, tenant: Tenant | None = None, *, seed: int = 7, users: int = 600,
                 token_lifetime_s: float = DEFAULT_TOKEN_LIFETIME_S,
                 max_page_size: int = MAX_TOP, delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.tenant = tenant or seed_tenant(seed, users)
        self.tenant_id = str(uuid.uuid4())
        self.tenant_domain = "contoso.onmicrosoft.com"
        self.client_id = str(uuid.uuid4())
        self.client_secret = f"{secrets.token_hex(2)}8Q~{secrets.token_urlsafe(30)}"
        self.token_lifetime_s = token_lifetime_s
        self.max_page_size = max_page_size
        self.granted = True
        self._tokens: dict[str, float] = {}
        self._pages: dict[str, _Page] = {}
        self._page_failures: list[_PageFailure] = []
        self._state = threading.Lock()

    # configuration and controls ---------------------------------------------------------------

    @property
    def graph_url(self) -> str:
        return self.base_url

    def config(self, **overrides: Any) -> dict[str, Any]:
        """A complete ``integrations.azure_ad`` config against this fake (guide shape)."""
        return {"tenant_id": self.tenant_id, "client_id": self.client_id,
                "client_secret": self.client_secret, "graph_api_version": "v1.0",
                "sync_groups": True, "group_filter": GROUP_FILTER,
                "user_attributes": ["id", "displayName", "mail", "jobTitle", "department"],
                "group_mappings": dict(MAPPINGS), "authority_url": self.base_url,
                "graph_url": self.base_url, **overrides}

    def set_enabled(self, email: str, enabled: bool) -> None:
        """Enable or disable a user's account (``accountEnabled``)."""
        with self._state:
            self.tenant.user(email)["accountEnabled"] = enabled

    def revoke_tokens(self) -> None:
        """Make every token granted so far invalid (Graph answers 401 to them)."""
        with self._state:
            self._tokens.clear()

    def fail_page(self, status: int, *, page: int = 2, times: int = 1,
                  retry_after_s: float = 0.0) -> None:
        """Answer the next ``times`` requests for page ``page`` (2 = the first next link) of
        any collection with Graph's error for ``status``."""
        with self._state:
            self._page_failures.append(
                _PageFailure(self.failure_reply(status, retry_after_s), page, times))

    # observations -----------------------------------------------------------------------------

    @property
    def token_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if _TOKEN_RE.match(r.path)]

    def graph_requests(self, rel: str | None = None) -> list[RecordedRequest]:
        """Graph calls received (``rel``: "groups", "users", "members" or
        "transitiveMembers")."""
        found = []
        for request in self.requests:
            match = _ROUTE_RE.match(request.path)
            if match and (rel is None or (match["rel"] or match["collection"]) == rel):
                found.append(request)
        return found

    # ServerBase hooks -------------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """"token" for the token endpoint, "graph" for Graph, so ``fail_next`` can aim."""
        path = urlsplit(url_or_path).path
        if _TOKEN_RE.match(path):
            return "token"
        return "graph" if _ROUTE_RE.match(path) else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Graph's own error for ``status`` (with ``Retry-After`` on 429 and 503)."""
        wait = {"Retry-After": str(max(0, math.ceil(retry_after_s)))}
        known = {
            400: ("BadRequest", "Invalid request."),
            403: ("Authorization_RequestDenied",
                  "Insufficient privileges to complete the operation."),
            404: ("Request_ResourceNotFound", "Resource does not exist."),
            500: ("InternalServerError", "An internal server error occurred."),
            503: ("serviceNotAvailable", "Service is unavailable; retry after the wait."),
            504: ("UnknownError", "Gateway timeout."),
        }
        if status == 429:
            return throttled(retry_after_s)
        if status == 401:
            return unauthenticated("Access token validation failure.")
        code, message = known.get(status, ("UnknownError", f"HTTP {status}"))
        return graph_error(status, code, message, wait if status in (429, 503) else None)

    def _scripted(self, request: RecordedRequest) -> Reply | None:
        """A scripted failure; one that lands on the token endpoint speaks Entra's error
        format there (``fail_next`` without a target hits whichever request comes first)."""
        reply = super()._scripted(request)
        if reply is None or not _TOKEN_RE.match(request.path):
            return reply
        try:
            graph_shaped = isinstance(json.loads(reply.body).get("error"), dict)
        except (ValueError, AttributeError):
            graph_shaped = False
        if not graph_shaped:
            return reply
        error, code, text = TOKEN_FAILURES.get(reply.status, TOKEN_FAILURES[500])
        translated = aad_error(reply.status, error, code, text)
        return Reply(reply.status, translated.body, {**reply.headers, **translated.headers})

    def handle(self, request: RecordedRequest) -> Reply:
        token = _TOKEN_RE.match(request.path)
        if token:
            return self._token(request, token["tenant"])
        route = _ROUTE_RE.match(request.path)
        if route is None:
            return graph_error(400, "BadRequest",
                               f"Resource not found for the segment '{request.path}'.")
        return self._graph(request, route)

    # token endpoint ---------------------------------------------------------------------------

    def _token(self, request: RecordedRequest, tenant: str) -> Reply:
        if request.method != "POST":
            return aad_error(405, "invalid_request", 900561, "The endpoint only accepts POST, "
                             f"OPTIONS requests. Received a {request.method} request.")
        if tenant.lower() not in (self.tenant_id, self.tenant_domain):
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. "
                             "Check to make sure you have the correct tenant ID and are signing "
                             "into the correct cloud.")
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        form = dict(parse_qsl(request.body.decode(errors="replace"), keep_blank_values=True)
                    ) if content_type == "application/x-www-form-urlencoded" else {}
        refusal = self._refuse_grant(form)
        if refusal is not None:
            return refusal
        access_token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9." + secrets.token_urlsafe(48)
        with self._state:
            self._tokens[access_token] = time.monotonic() + self.token_lifetime_s
        lifetime = int(self.token_lifetime_s)
        return json_reply(200, {"token_type": "Bearer", "expires_in": lifetime,
                                "ext_expires_in": lifetime, "access_token": access_token})

    def _refuse_grant(self, form: dict[str, str]) -> Reply | None:
        if not form.get("grant_type"):
            return _missing("grant_type")
        if form["grant_type"] != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003, "The app requested an "
                             f"unsupported grant type '{form['grant_type']}'.")
        if not form.get("client_id"):
            return _missing("client_id")
        if form["client_id"] != self.client_id:
            return aad_error(400, "unauthorized_client", 700016, "Application with identifier "
                             f"'{form['client_id']}' was not found in the directory "
                             f"'{self.tenant_domain}'.")
        if not form.get("client_secret"):
            return aad_error(401, "invalid_client", 7000218, "The request body must contain "
                             "the following parameter: 'client_assertion' or 'client_secret'.")
        if form["client_secret"] != self.client_secret:
            return aad_error(401, "invalid_client", 7000215, "Invalid client secret provided. "
                             "Ensure the secret being sent in the request is the client secret "
                             f"value, not the client secret ID, for a secret added to app "
                             f"'{self.client_id}'.")
        return self._refuse_scope(form.get("scope"))

    def _refuse_scope(self, scope: str | None) -> Reply | None:
        if not scope:
            return _missing("scope")
        if not scope.endswith("/.default"):
            return aad_error(400, "invalid_scope", 1002012, f"The provided value for scope "
                             f"{scope} is not valid. Client credential flows must have a scope "
                             "value with /.default suffixed to the resource identifier "
                             "(application ID URI).")
        resource = scope.removesuffix("/.default")
        if resource not in (self.base_url, GRAPH_APP):
            return aad_error(400, "invalid_resource", 500011, f"The resource principal named "
                             f"{resource} was not found in the tenant named "
                             f"{self.tenant_domain}.")
        return None

    # Graph ------------------------------------------------------------------------------------

    def _graph(self, request: RecordedRequest, route: re.Match[str]) -> Reply:
        refusal = self._authenticate(request)
        if refusal is not None:
            return refusal
        if not self.granted:
            return graph_error(403, "Authorization_RequestDenied",
                               "Insufficient privileges to complete the operation.")
        window = self.take_rate_slot("graph")
        if window is not None and not window.allowed:
            return throttled(window.reset_after_s)
        if request.method != "GET":
            return graph_error(405, "Request_BadRequest",
                               "Specified HTTP method is not allowed for the request target.")
        if route["version"] not in ("v1.0", "beta"):
            return graph_error(400, "BadRequest", f"Invalid version: {route['version']}")
        if "$skiptoken" in request.query:
            return self._next_page(request)
        return self._first_page(request, route)

    def _authenticate(self, request: RecordedRequest) -> Reply | None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return unauthenticated("Access token is empty.")
        if token.count(".") < 1:
            return unauthenticated("IDX14100: JWT is not well formed, there are no dots (.).")
        with self._state:
            expires = self._tokens.get(token)
        if expires is None:
            return unauthenticated("Access token validation failure.")
        if time.monotonic() >= expires:
            return unauthenticated("Lifetime validation failed, the token is expired.")
        return None

    def _first_page(self, request: RecordedRequest, route: re.Match[str]) -> Reply:
        try:
            items = self._collection(request, route)
        except _Refused as refused:
            return refused.reply
        return self._page(request, request.path, dict(request.query), items, 0, 1)

    def _next_page(self, request: RecordedRequest) -> Reply:
        with self._state:
            page = self._pages.get(request.query["$skiptoken"])
            failure = next((f for f in self._page_failures
                            if page is not None and f.page == page.number), None)
            if failure is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    self._page_failures.remove(failure)
        if failure is not None:
            return failure.reply
        if page is None or page.path != request.path:
            return graph_error(400, "Directory_ExpiredPageToken", "The specified page token "
                               "value has expired and can no longer be included in your request.")
        query = {k: v for k, v in request.query.items() if k != "$skiptoken"}
        if query != page.query:
            return graph_error(400, "Request_BadRequest", "The query of a request with "
                               "$skiptoken must be the one of the @odata.nextLink, unaltered.")
        route = _ROUTE_RE.match(request.path)
        assert route is not None
        try:
            items = self._collection(request, route)
        except _Refused as refused:
            return refused.reply
        return self._page(request, page.path, page.query, items, page.offset, page.number)

    def _collection(self, request: RecordedRequest, route: re.Match[str]) -> list[dict[str, Any]]:
        _check_options(request)
        if route["collection"] == "users":
            return self._users(request, route)
        if route["group"] is None:
            return self._groups(request)
        if route["group"] not in self.tenant.members:
            raise _Refused(graph_error(404, "Request_ResourceNotFound",
                                       f"Resource '{route['group']}' does not exist or one of "
                                       "its queried reference-property objects are not present."))
        if route["rel"] == "members":
            found = self.tenant.direct(route["group"])
        elif route["rel"] == "transitiveMembers":
            found = self.tenant.transitive(route["group"])
        else:
            raise _Refused(graph_error(400, "BadRequest", "Resource not found for the segment "
                                       f"'{route['rel']}'."))
        if "$filter" in request.query:
            raise _Refused(graph_error(400, "Request_UnsupportedQuery",
                                       "$filter on members is not supported by this fake."))
        return found

    def _users(self, request: RecordedRequest, route: re.Match[str]) -> list[dict[str, Any]]:
        if route["group"] is not None or "$filter" in request.query:
            raise _Refused(graph_error(400, "Request_UnsupportedQuery",
                                       "Only the plain users list is served by this fake."))
        users = [o for o in self.tenant.objects.values() if o["@odata.type"] == USER]
        return [{k: v for k, v in user.items() if k != "@odata.type"} | {"_type": USER}
                for user in users]

    def _groups(self, request: RecordedRequest) -> list[dict[str, Any]]:
        groups = self.tenant.groups()
        text = request.query.get("$filter")
        if text is None:
            return groups
        try:
            test, advanced = parse_filter(text)
        except FilterError as exc:
            raise _Refused(graph_error(400, "BadRequest", str(exc))) from None
        for op in sorted(advanced):
            _require_advanced(request, op)
        return [group for group in groups if test(group)]

    def _page(self, request: RecordedRequest, path: str, query: dict[str, str],
              items: list[dict[str, Any]], offset: int, number: int) -> Reply:
        size = min(int(query.get("$top", DEFAULT_PAGE)), self.max_page_size)
        chosen = [_render(item, query.get("$select")) for item in items[offset:offset + size]]
        body: dict[str, Any] = {"@odata.context": f"{self.base_url}{path.split('/groups')[0]}"
                                "/$metadata#directoryObjects", "value": chosen}
        if number == 1 and _advanced(request):
            body["@odata.count"] = len(items)
        if offset + size < len(items):
            token = _skiptoken()
            with self._state:
                self._pages[token] = _Page(path, query, offset + size, number + 1)
            link_query = urlencode({**query, "$skiptoken": token}, safe="$,()'")
            body["@odata.nextLink"] = f"{self.base_url}{path}?{link_query}"
        return json_reply(200, body)


class _Refused(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.status)
        self.reply = reply


_ALLOWED_OPTIONS = {"$filter", "$select", "$top", "$count", "$skiptoken", "$orderby", "$search"}


def _check_options(request: RecordedRequest) -> None:
    for name in request.query:
        if name.startswith("$") and name not in _ALLOWED_OPTIONS:
            raise _Refused(graph_error(400, "BadRequest",
                                       f"Query option '{name}' is not allowed."))
    top = request.query.get("$top")
    if top is not None and (not top.isdigit() or not 1 <= int(top) <= MAX_TOP):
        raise _Refused(graph_error(400, "Request_BadRequest", f"Invalid page size specified: "
                                   f"'{top}'. Must be between 1 and {MAX_TOP} inclusive."))
    for name in (request.query.get("$select") or "").split(","):
        known = name in itertools.chain(*PROPERTIES.values()) or name.startswith("extension_")
        if name and not known:
            raise _Refused(graph_error(400, "Request_BadRequest", "Parsing OData Select and "
                                       f"Expand failed: Could not find a property named "
                                       f"'{name}' on type 'microsoft.graph.directoryObject'."))


def _advanced(request: RecordedRequest) -> bool:
    return ((request.header("ConsistencyLevel") or "").lower() == "eventual"
            and request.query.get("$count", "").lower() == "true")


def _require_advanced(request: RecordedRequest, op: str) -> None:
    if (request.header("ConsistencyLevel") or "").lower() != "eventual":
        raise _Refused(graph_error(400, "Request_UnsupportedQuery", f"Operator '{op}' is not "
                                   "supported because the 'ConsistencyLevel:eventual' header is "
                                   "missing. Refer to https://aka.ms/graph-docs/advanced-queries "
                                   "for more information"))
    if not _advanced(request):
        raise _Refused(graph_error(400, "Request_UnsupportedQuery", f"Operator '{op}' is not "
                                   "supported because the required parameters might be missing. "
                                   "Try adding $count with a value of true and ConsistencyLevel "
                                   "header with a value of eventual."))


def _render(obj: dict[str, Any], select: str | None) -> dict[str, Any]:
    """``obj`` as Graph lists it: its ``@odata.type``, id, and the selected properties."""
    kind = obj.get("@odata.type") or obj["_type"]
    own = PROPERTIES[kind]
    if select:
        names = [n for n in select.split(",") if n in own or n.startswith("extension_")]
    else:
        names = list(USER_DEFAULT if kind == USER else own)
    shown = {"@odata.type": kind, "id": obj["id"]} if "@odata.type" in obj else {"id": obj["id"]}
    shown.update({name: obj.get(name) for name in names if name in own or name in obj})
    return shown


def _skiptoken() -> str:
    return "RFNwdAIAAQAAA" + secrets.token_urlsafe(24)
