"""Loopback fake of the Zendesk Support API (tickets and users/me) that enforces its contract.

Routes: ``POST /api/v2/tickets[.json]`` (create), ``GET /api/v2/tickets[.json]`` (list, with
``?external_id=`` as the dedupe look-up), ``GET /api/v2/tickets/{id}[.json]`` and
``GET /api/v2/users/me[.json]``. Every call needs basic auth ``{email}/token:{api_token}`` (401
``Couldn't authenticate you`` otherwise); only ``users/me`` answers an anonymous caller, with the
anonymous user (id null). A ticket needs a comment body and a subject, and Zendesk's values for
``priority``, ``type`` and ``status``; refusals are 422 ``RecordInvalid`` with ``details``.
A 429 is plain text with ``Retry-After`` and Zendesk's rate-limit headers.

Not in the contract, chosen here: ``assignee_email`` must name an agent of the account (422
otherwise), and a body that is not ``{"ticket": {...}}`` JSON is a 400.
"""

from __future__ import annotations

import base64
import binascii
import copy
import itertools
import math
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from tests.fakes.server import RecordedRequest, Reply, ServerBase, json_reply, text_reply

PRIORITIES = ("urgent", "high", "normal", "low")
TYPES = ("problem", "incident", "question", "task")
STATUSES = ("new", "open", "pending", "hold", "solved", "closed")

ACCOUNT_LIMIT = 700
"""``X-Rate-Limit`` advertised (Enterprise plan, requests per minute)."""

AUTH_FAILED = {"error": "Couldn't authenticate you"}
NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
INVALID_ENDPOINT = {"error": "InvalidEndpoint", "description": "Not found"}
FORBIDDEN = {"error": {"title": "Forbidden", "message": "You do not have access to this page. "
                       "Please contact the account owner of this help desk for further help."}}
RATE_LIMITED_TEXT = "You have exceeded the rate limit for your account."
ANONYMOUS = {"id": None, "name": "Anonymous user", "email": "invalid@example.com",
             "role": "end-user"}

TICKETS_RE = re.compile(r"^/api/v2/tickets(?:\.json)?/?$")
TICKET_RE = re.compile(r"^/api/v2/tickets/(\d+)(?:\.json)?/?$")
ME_RE = re.compile(r"^/api/v2/users/me(?:\.json)?/?$")


def record_invalid(details: dict[str, list[dict[str, str]]]) -> Reply:
    """Zendesk's 422 for a ticket that fails validation."""
    return json_reply(422, {"error": "RecordInvalid", "description": "Record validation errors",
                            "details": details})


def rate_limited(retry_after_s: float) -> Reply:
    """Zendesk's 429: plain text, whole-second ``Retry-After`` and the rate-limit headers."""
    wait = str(max(1, math.ceil(retry_after_s)))
    return text_reply(429, RATE_LIMITED_TEXT, {
        "Retry-After": wait, "X-Rate-Limit": str(ACCOUNT_LIMIT), "X-Rate-Limit-Remaining": "0",
        "ratelimit-limit": str(ACCOUNT_LIMIT), "ratelimit-remaining": "0",
        "ratelimit-reset": wait})


def ticket_problems(ticket: Any) -> dict[str, list[dict[str, str]]]:
    """The ``details`` of a 422 for a create-ticket body; empty when Zendesk would accept it."""
    if not isinstance(ticket, dict):
        return {"base": [_problem("Ticket: must be an object", "InvalidValue", "ticket")]}
    details: dict[str, list[dict[str, str]]] = {}
    comment = ticket.get("comment")
    text = comment.get("body") or comment.get("html_body") if isinstance(comment, dict) else None
    if not isinstance(text, str) or not text.strip():
        details.setdefault("base", []).append(
            _problem("Description: cannot be blank", "BlankValue", "description"))
    subject = ticket.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        details.setdefault("base", []).append(
            _problem("Subject: cannot be blank", "BlankValue", "subject"))
    for field, allowed in (("priority", PRIORITIES), ("type", TYPES), ("status", STATUSES)):
        if field in ticket and ticket[field] not in allowed:
            details[field] = [_problem(f"{field.capitalize()}: {ticket[field]!r} is not one of "
                                       f"{', '.join(allowed)}", "InvalidValue", field)]
    details.update(_shape_problems(ticket))
    return details


def _shape_problems(ticket: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    details = {}
    tags = ticket.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        details["tags"] = [_problem("Tags: must be a list of strings", "InvalidValue", "tags")]
    fields = ticket.get("custom_fields", [])
    if not isinstance(fields, list) or not all(
            isinstance(f, dict) and isinstance(f.get("id"), int) and "value" in f
            for f in fields):
        details["custom_fields"] = [_problem('Custom fields: must be [{"id": int, "value": ...}]',
                                             "InvalidValue", "custom_fields")]
    if ticket.get("external_id") is not None and not isinstance(ticket["external_id"], str):
        details["external_id"] = [_problem("External id: must be a string", "InvalidValue",
                                           "external_id")]
    return details


def _problem(description: str, error: str, field_key: str) -> dict[str, str]:
    return {"description": description, "error": error, "field_key": field_key}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeZendesk(ServerBase):
    """One Zendesk account on 127.0.0.1: authenticates, validates, stores and lists tickets."""

    def __init__(self, email: str = "agent@acme.test", api_token: str | None = None,
                 delay_s: float = 0.0) -> None:
        super().__init__(delay_s)
        self.email = email
        self.api_token = api_token or secrets.token_urlsafe(30)
        self._tokens: tuple[str, ...] = ()
        self.auth_refusals = 0
        """Requests refused with 401 (wrong or retired token), counted since the start."""
        self._ids = itertools.count(35436)
        self._agents: dict[str, int] = {email.lower(): next(self._ids)}
        self._tickets: list[dict[str, Any]] = []
        self._slow: list[float] = []

    # test controls ----------------------------------------------------------------------------

    def accept_tokens(self, *tokens: str) -> None:
        """Accept exactly these API tokens from now on (a rotation's overlap: old and new;
        then the new one alone); ``api_token`` becomes the last one."""
        with self._lock:
            self._tokens = tokens
            self.api_token = tokens[-1]

    def add_agent(self, email: str) -> int:
        """Make ``email`` an agent of the account (a valid ``assignee_email``); return its id."""
        with self._lock:
            return self._agents.setdefault(email.lower(), next(self._ids))

    def agent_id(self, email: str) -> int | None:
        """The user id of agent ``email``."""
        with self._lock:
            return self._agents.get(email.lower())

    def slow_creates(self, delay_s: float, times: int = 1) -> None:
        """Hold the answer to the next ``times`` successful creates for ``delay_s`` (the ticket
        exists already, as with a vendor whose answer is lost to the client's timeout)."""
        with self._lock:
            self._slow.extend([delay_s] * times)

    def tickets(self, external_id: str | None = None) -> list[dict[str, Any]]:
        """Stored tickets, oldest first, optionally those with ``external_id``."""
        with self._lock:
            return [copy.deepcopy(t) for t in self._tickets
                    if external_id is None or t["external_id"] == external_id]

    def reset(self) -> None:
        """Forget requests, failures and rate-limit state, and the stored tickets."""
        super().reset()
        with self._lock:
            self._tickets.clear()
            self._slow.clear()

    # ServerBase hooks -------------------------------------------------------------------------

    def webhook_key(self, url_or_path: str) -> str | None:
        """``tickets`` or ``users`` for the API's resources, None for other paths."""
        path = re.sub(r"^https?://[^/]+", "", url_or_path).split("?", 1)[0]
        if TICKETS_RE.match(path) or TICKET_RE.match(path):
            return "tickets"
        return "users" if ME_RE.match(path) else None

    def failure_reply(self, status: int, retry_after_s: float) -> Reply:
        """Zendesk's own body (and headers) for a scripted failure."""
        if status == 429:
            return rate_limited(retry_after_s)
        if status == 503:
            wait = str(max(1, math.ceil(retry_after_s)))
            return text_reply(503, "Service Unavailable", {"Retry-After": wait})
        known: dict[int, dict[str, Any]] = {401: AUTH_FAILED, 403: FORBIDDEN, 404: NOT_FOUND}
        if status == 422:
            return record_invalid({"base": [_problem("Subject: cannot be blank", "BlankValue",
                                                     "subject")]})
        if status >= 500:
            return text_reply(status, "Internal Server Error")
        return json_reply(status, known.get(status, {"error": "InvalidValue",
                                                     "description": f"HTTP {status}"}))

    def respond(self, request: RecordedRequest) -> Reply:
        """As ServerBase, then hold a successful create's answer when ``slow_creates`` asks."""
        reply = super().respond(request)
        if request.method == "POST" and reply.status == 201:
            with self._lock:
                delay = self._slow.pop(0) if self._slow else 0.0
            if delay > 0:
                self._stopping.wait(delay)
        return reply

    def handle(self, request: RecordedRequest) -> Reply:
        """Route, authenticate, rate-limit and validate one request."""
        key = self.webhook_key(request.path)
        if key is None:
            return json_reply(404, INVALID_ENDPOINT)
        agent = self._authenticate(request)
        if agent is None:
            if key == "users" and request.header("Authorization") is None:
                return json_reply(200, {"user": ANONYMOUS})
            with self._lock:
                self.auth_refusals += 1
            return json_reply(401, AUTH_FAILED)
        window = self.take_rate_slot("account")
        if window is not None and not window.allowed:
            return rate_limited(window.reset_after_s)
        reply = self._route(request, agent)
        if window is not None:
            reply.headers.update({"X-Rate-Limit": str(window.limit),
                                  "X-Rate-Limit-Remaining": str(window.remaining)})
        return reply

    # routes -----------------------------------------------------------------------------------

    def _authenticate(self, request: RecordedRequest) -> int | None:
        scheme, _, encoded = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        with self._lock:
            accepted = self._tokens or (self.api_token,)
        if user != f"{self.email}/token" or not any(
                secrets.compare_digest(password, token) for token in accepted):
            return None
        return self.agent_id(self.email)

    def _route(self, request: RecordedRequest, agent: int) -> Reply:
        if ME_RE.match(request.path) and request.method == "GET":
            return json_reply(200, {"user": {"id": agent, "email": self.email,
                                             "name": "API Agent", "role": "admin"}})
        if TICKETS_RE.match(request.path) and request.method == "POST":
            return self._create(request, agent)
        if TICKETS_RE.match(request.path) and request.method == "GET":
            found = self.tickets(request.query.get("external_id"))
            return json_reply(200, {"tickets": found, "next_page": None, "previous_page": None,
                                    "count": len(found)})
        match = TICKET_RE.match(request.path)
        if match and request.method == "GET":
            found = [t for t in self.tickets() if t["id"] == int(match[1])]
            return json_reply(200, {"ticket": found[0]}) if found else json_reply(404, NOT_FOUND)
        return json_reply(404, INVALID_ENDPOINT)

    def _create(self, request: RecordedRequest, agent: int) -> Reply:
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        body = request.json
        if content_type != "application/json" or not isinstance(body, dict) \
                or "ticket" not in body:
            return json_reply(400, {"error": "InvalidValue", "description":
                                    'Body must be JSON {"ticket": {...}} (application/json)'})
        problems = ticket_problems(body["ticket"])
        assignee = body["ticket"].get("assignee_email") if not problems else None
        assignee_id = self.agent_id(assignee) if isinstance(assignee, str) else None
        if assignee is not None and assignee_id is None:
            problems["assignee"] = [_problem(f"Assignee: {assignee} is not an agent",
                                             "InvalidValue", "assignee")]
        if problems:
            return record_invalid(problems)
        ticket = self._store(body["ticket"], agent, assignee_id)
        self.accept("tickets", copy.deepcopy(ticket))
        return json_reply(201, {"ticket": ticket, "audit": {
            "id": next(self._ids), "ticket_id": ticket["id"], "author_id": agent,
            "created_at": ticket["created_at"], "events": [{"type": "Create"}]}})

    def _store(self, fields: dict[str, Any], agent: int, assignee_id: int | None,
               ) -> dict[str, Any]:
        comment = fields["comment"]
        with self._lock:
            ticket_id = next(self._ids)
            ticket = {
                "id": ticket_id, "url": f"{self.base_url}/api/v2/tickets/{ticket_id}.json",
                "external_id": fields.get("external_id"), "subject": fields["subject"],
                "raw_subject": fields["subject"],
                "description": comment.get("body") or comment.get("html_body"),
                "is_public": bool(comment.get("public", True)),
                "priority": fields.get("priority"), "type": fields.get("type"),
                "status": fields.get("status") or ("open" if assignee_id else "new"),
                "tags": list(dict.fromkeys(t.lower() for t in fields.get("tags", []))),
                "custom_fields": list(fields.get("custom_fields", [])),
                "assignee_id": assignee_id, "requester_id": agent, "submitter_id": agent,
                "created_at": _now(), "updated_at": _now(),
            }
            self._tickets.append(ticket)
        return copy.deepcopy(ticket)
