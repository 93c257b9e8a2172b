"""ConfigService: the public, async facade over the store, validation and delivery ledger."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from config_core import access, hooks, integrations, settings
from config_core.approvals import (
    APPROVALS_KEY,
    Rule,
    has_decided,
    new_request,
    requested_metadata,
    rule_for,
)
from config_core.errors import AccessDenied, ConfigError, IntegrationError, NoApprovalRule
from config_core.events import (
    APPROVAL_REQUESTED,
    CHANGED,
    DELETED,
    ERROR,
    SECRET_ROTATED,
    SECURITY_VIOLATION,
    Change,
    iso,
    now,
)
from config_core.masking import mask_for_key
from config_core.monitoring import HealthMonitoring, MonitoredConnector
from config_core.schemas import SCHEMAS_KEY, SchemaError, Schemas
from config_core.state import approvals as approval_store
from config_core.state import directory
from config_core.state.keys import Namespace
from config_core.state.values import (
    Applied,
    Conflict,
    Missing,
    SchemasChanged,
    Write,
    applied_from,
    event_only,
)
from config_core.store import Store
from config_core.validation import (
    MAX_CHANGED_BY_LENGTH,
    MAX_KEY_LENGTH,
    MAX_REASON_LENGTH,
    check_key,
    check_text,
    encode_value,
    idempotency,
)

log = logging.getLogger(__name__)

_MISSING: Any = object()
_SHOWN_FIELD = {False: "masked", True: "value"}
"""Which stored form of a value a read returns: masked unless revealed."""
_CAS_ATTEMPTS = 20


@dataclass(frozen=True)
class SetResult:
    """What ``set_config`` and ``delete_config`` return."""

    status: str
    key: str
    version: int | None = None
    event_id: str | None = None
    request_id: str | None = None


class ConfigService(HealthMonitoring):
    """Central configuration for one tenant and environment, backed by Redis."""

    def __init__(self, redis_url: str | None = None, environment: str | None = None,
                 tenant: str | None = None) -> None:
        self.redis_url = redis_url or settings.redis_url()
        self.environment = check_key(environment or settings.environment())
        self.tenant = check_key(tenant or settings.tenant())
        if "." in self.environment or "." in self.tenant:
            raise ConfigError("tenant and environment names must not contain '.'")
        self.namespace = Namespace(self.tenant, self.environment)
        self.store = Store(self.redis_url, self.namespace)
        self.schemas = Schemas()
        self._approval_rules: dict[str, Any] | None = None
        self._approvals_version = 0

    # writes ------------------------------------------------------------------------------------

    async def set_config(self, key: str, value: Any, *, changed_by: str | None = None,
                         reason: str | None = None, metadata: dict[str, Any] | None = None,
                         idempotency_key: str | None = None,
                         require_approval: bool = False) -> SetResult:
        """Store ``value`` under ``key`` and emit a ``config.changed`` event for delivery.

        ``idempotency_key``: calling again with the same key (within a day) applies nothing
        and returns the first call's result; use it to retry a call whose outcome is unknown.
        ``require_approval``: the change must become a change request; ``NoApprovalRule``
        (nothing written) when no rule of ``integrations.approvals`` covers the key.
        """
        return await self._set(key, value, changed_by, reason, metadata, emit=True,
                               idempotency_key=idempotency_key,
                               require_approval=require_approval)

    async def rotate_secret(self, key: str, new_value: Any, *, changed_by: str | None = None,
                            reason: str | None = None,
                            idempotency_key: str | None = None) -> SetResult:
        """Replace a connector's declared secret (``integrations.zendesk.api_token``).

        The write is ``set_config``'s (same validation, one atomic step: a delivery reads the
        old secret before it and the new one after), and its event is
        ``security.secret_rotated`` with both values masked. ``ConfigError`` naming the key,
        and nothing written, when the field is not one the connector declares secret.
        """
        check_key(key)
        await self._secret_field(await self._canonical_key(key))
        return await self._set(key, new_value, changed_by, reason, None, emit=True,
                               idempotency_key=idempotency_key, kind=SECRET_ROTATED)

    async def set_config_local_only(self, key: str, value: Any, *, changed_by: str | None = None,
                                    reason: str | None = None,
                                    idempotency_key: str | None = None) -> SetResult:
        """Store ``value`` without emitting any event; history records it as local only."""
        return await self._set(key, value, changed_by, reason, None, emit=False,
                               idempotency_key=idempotency_key)

    async def delete_config(self, key: str, *, changed_by: str | None = None,
                            reason: str | None = None,
                            idempotency_key: str | None = None) -> SetResult:
        """Remove ``key`` and emit ``config.deleted``; ``KeyError`` if it has no value."""
        check_key(key)
        split = integrations.split(key)
        if split and split[1]:
            raise ConfigError(f"cannot delete {key!r} on its own: set integrations.{split[0]} "
                              "without that field")
        change = self._change(DELETED, key, None, changed_by, reason, None, idempotency_key)
        masked_json = "null"
        try:
            applied = await self.store.write(Write("delete", key, "null", masked_json, change,
                                                   "null", emit=True))
        except Missing:
            raise KeyError(key) from None
        except AccessDenied as exc:
            raise await self._refuse(exc, changed_by) from None
        await self._dispatch_inline()
        return SetResult("applied", key, applied.version, applied.event_id)

    async def _set(self, key: str, value: Any, changed_by: str | None, reason: str | None,
                   metadata: dict[str, Any] | None, *, emit: bool,
                   idempotency_key: str | None, kind: str = CHANGED,
                   require_approval: bool = False) -> SetResult:
        try:
            canonical = await self._canonical_key(check_key(key))
            change = self._change(kind, canonical, value, changed_by, reason, metadata,
                                  idempotency_key)
            rule = await self._approval_rule(canonical)
            if rule is None and require_approval:
                await self._load_schemas()  # the rules kept here may be older than the write
                rule = await self._approval_rule(canonical)
            if rule is None and require_approval:
                raise NoApprovalRule(
                    f"{canonical!r} must be approved here, but no rule of "
                    f"{APPROVALS_KEY}.required_approvals in {self.environment} covers it; add "
                    "one (or write without require_approval)")
            if rule is None:
                try:
                    applied = await self._apply(change, emit)
                    result = SetResult("applied", change.key, applied.version, applied.event_id)
                except _ApprovalNeeded as needed:
                    rule = needed.rule
            if rule is not None:
                result = await self._request_approval(change, rule, local_only=not emit)
        except AccessDenied as exc:
            raise await self._refuse(exc, changed_by, value) from None
        except NoApprovalRule:
            raise
        except ConfigError as exc:
            if emit:
                await self._report_error(key, value, exc, changed_by, reason)
            raise
        if emit or result.request_id:
            await self._dispatch_inline()
        return result

    async def _canonical_key(self, key: str) -> str:
        """``key`` with a connector field's alias replaced by the setting it stands for
        (``integrations.zendesk.api_key`` → ``integrations.zendesk.api_token``)."""
        split = integrations.split(key)
        if not split or len(split[1]) != 1 or split[0] in integrations.SYSTEM_SECTIONS:
            return key
        cls = await self._connector_class(split[0])
        field = cls.field_aliases().get(split[1][0]) if cls is not None else None
        return f"{integrations.PREFIX}{split[0]}.{field}" if field else key

    async def _secret_field(self, key: str) -> None:
        """``ConfigError`` unless ``key`` is a connector's declared secret setting."""
        split = integrations.split(key)
        if not split or len(split[1]) != 1 or split[0] in integrations.SYSTEM_SECTIONS:
            raise ConfigError(f"{key!r} is not a connector's secret field: rotate_secret takes "
                              "integrations.<connector>.<secret setting>")
        cls = await self._connector_class(split[0])
        if cls is None:
            raise ConfigError(f"integrations.{split[0]} is not a known connector, so {key!r} "
                              "is no declared secret field")
        secret = sorted(cls.secret_fields())
        if split[1][0] not in secret:
            raise ConfigError(f"{key} is not a secret setting of {split[0]} "
                              f"(its secret settings: {secret}); rotate_secret changes only those")

    async def _apply(self, change: Change, emit: bool) -> Applied:
        """Check and write one change, again if the schemas or approval rules changed
        meanwhile (``_ApprovalNeeded`` when a rule now covers the key)."""
        for _ in range(_CAS_ATTEMPTS):
            if self.schemas.version is None:
                await self._load_schemas()
            try:
                return await self._write_checked(change, emit)
            except SchemasChanged:
                await self._load_schemas()
                rule = await self._approval_rule(change.key)
                if rule is not None:
                    raise _ApprovalNeeded(rule) from None
        raise ConfigError(f"{change.key!r}: integrations.schemas keeps changing; try again")

    async def _write_checked(self, change: Change, emit: bool) -> Applied:
        key, value = change.key, change.new_value
        value_json = encode_value(key, value)
        split = integrations.split(key)
        if split and split[1]:
            return await self._set_field(split[0], split[1], change, emit)
        secret_fields: frozenset[str] = frozenset()
        if split:
            secret_fields = await self._validate_integration(split[0], value)
        self.schemas.check(key, value)
        masked = mask_for_key(key, value, secret_fields)
        masked_json = value_json if masked is value else _dumps(masked)
        return await self.store.write(Write("set", key, value_json, masked_json, change,
                                            masked_json, emit, self._checked_versions()))

    # approvals ---------------------------------------------------------------------------------

    async def approve(self, request_id: str, *, approver: str) -> dict[str, Any]:
        """Approve a pending change request as ``approver`` (one of its approvers, not the one
        who asked). At ``min_approvals`` distinct approvals the change is applied (a normal
        change with its ``config.changed`` event), or, when the key changed since the request,
        the request ends ``conflicted`` and nothing is overwritten. Returns the request."""
        return await self._decide(request_id, approver, "approve", None)

    async def reject(self, request_id: str, *, approver: str, reason: str | None = None,
                     ) -> dict[str, Any]:
        """Reject a pending change request as one of its approvers; returns the request."""
        return await self._decide(request_id, approver, "reject", reason)

    async def approval(self, request_id: str) -> dict[str, Any]:
        """One change request (value masked); ``KeyError`` when there is none."""
        request, _ = await self._fresh_request(request_id)
        return request

    async def approvals(self, status: str | None = None, limit: int = 100,
                        ) -> list[dict[str, Any]]:
        """Change requests, newest first; only those with ``status`` when given."""
        if status is not None and status not in approval_store.STATUSES:
            raise ConfigError(f"status must be one of {list(approval_store.STATUSES)}, "
                              f"got {status!r}")
        for request_id in await self.store.approvals_due(now().timestamp()):
            await self._fresh_request(request_id)
        found = []
        for request_id in await self.store.approval_ids(limit):
            stored = await self.store.approval(request_id)
            if stored and (status is None or stored["status"] == status):
                found.append(approval_store.public(stored))
        return found

    async def _approval_rule(self, key: str) -> Rule | None:
        """The approval rule covering ``key``, from the rules loaded with the schemas (the
        write script refuses a write checked against rules that changed since)."""
        if key.startswith(integrations.PREFIX):
            return None
        if self.schemas.version is None:
            await self._load_schemas()
        if not self._approval_rules or rule_for(key, self._approval_rules) is None:
            return None
        await self._load_schemas()  # a rule covers it: ask for approval only if it still does
        return rule_for(key, self._approval_rules) if self._approval_rules else None

    async def _request_approval(self, change: Change, rule: Rule, *, local_only: bool,
                                ) -> SetResult:
        """Record ``change`` as a pending request and emit ``approval.requested``."""
        key, value = change.key, change.new_value
        value_json = encode_value(key, value)
        await self._load_schemas()
        self.schemas.check(key, value)
        await self._check_access(key, change.changed_by)
        masked = mask_for_key(key, value, frozenset())
        masked_json = value_json if masked is value else _dumps(masked)
        _, base = await self.store.read(key)
        request = new_request(change, rule, base, value_json, masked_json, local_only)
        event = event_only(Change(
            APPROVAL_REQUESTED, self.tenant, self.environment, key, masked, change.changed_by,
            change.reason, requested_metadata(request), at=change.at), masked_json)
        request["requested_event_id"] = event.change.event_id
        reply = await self.store.approval_script("create", approval_store.create_args(
            self.namespace, request["request_id"], approval_store.stored_fields(request),
            request["expires_at"], event))
        if reply[0] == "exists":  # the same idempotency key asked before
            stored = approval_store.public(await self.store.approval(request["request_id"]))
            return _pending(stored)
        applied_from(reply, self.namespace, event)
        return _pending(request)

    async def _check_access(self, key: str, user: str | None) -> None:
        """``AccessDenied`` when access control is on and ``user`` may not write ``key``."""
        stored, _ = await self.store.read(access.ACCESS_KEY)
        if not stored or json.loads(stored).get("enforce") is not True:
            return
        role = await self.get_role(user) if user else None
        if not access.may_write(role, key):
            raise AccessDenied(key, role=role, needed=access.required_role(key))

    async def _fresh_request(self, request_id: str) -> tuple[dict[str, Any], str]:
        """A request and its stored value JSON, expired first when its time is up."""
        for _ in range(_CAS_ATTEMPTS):
            stored = await self.store.approval(request_id) if isinstance(request_id, str) else {}
            if not stored:
                raise KeyError(f"no change request {request_id!r}")
            request = approval_store.public(stored)
            plan = approval_store.expiry_plan(self.namespace, request, now().timestamp())
            if plan is None:
                return request, approval_store.value_json(stored)
            if (await self.store.approval_script("decide", plan))[0] == "ok":
                await self._dispatch_inline()
        raise ConfigError(f"change request {request_id!r} keeps changing; try again")

    async def _decide(self, request_id: str, approver: str, verdict: str, reason: str | None,
                      ) -> dict[str, Any]:
        if not isinstance(approver, str) or not approver.strip():
            raise ConfigError("approver must be a non-empty string (who decides)")
        check_text("approver", approver, MAX_CHANGED_BY_LENGTH)
        check_text("reason", reason, MAX_REASON_LENGTH)
        for _ in range(_CAS_ATTEMPTS):
            request, value_json = await self._fresh_request(request_id)
            if has_decided(request, approver):
                return request
            request["decisions"] = [*request["decisions"], {
                "approver": approver, "decision": verdict, "at": iso(now()), "reason": reason}]
            args, writes = await self._plan_decision(request, value_json, verdict, approver,
                                                     reason)
            reply = await self.store.approval_script("decide", args)
            if reply[0] in ("moved", "conflict", "schemas"):
                continue
            if reply[0] != "ok":
                applied_from(reply, self.namespace, writes[0])
            if writes:
                await self._dispatch_inline()
            return (await self._fresh_request(request_id))[0]
        raise ConfigError(f"change request {request_id!r} keeps changing; try again")

    async def _plan_decision(self, request: dict[str, Any], value_json: str, verdict: str,
                             approver: str, reason: str | None) -> tuple[list[str], list[Write]]:
        """The decide script's arguments for ``request`` with its new decision, and its
        writes: nothing yet, the ``approval.decided`` event, or the change and that event."""
        fields: dict[str, Any] = {"decisions": request["decisions"]}
        approved = [d for d in request["decisions"] if d["decision"] == "approve"]
        if verdict == "approve" and len(approved) < request["min_approvals"]:
            return approval_store.decide_args(self.namespace, request, fields, []), []
        _, version = await self.store.read(request["key"])
        outcome = "rejected" if verdict == "reject" else (
            "approved" if version == request["base_version"] else "conflicted")
        if outcome == "conflicted":
            reason = (f"{request['key']} changed since the request (version "
                      f"{request['base_version']}, now {version}); nothing was overwritten")
        event = approval_store.decided_event(self.namespace, request, outcome, approver, reason)
        fields.update(status=outcome, decided_event_id=event.change.event_id,
                      decided_at=repr(now().timestamp()))
        writes = [event]
        if outcome == "approved":
            writes.insert(0, await self._approved_write(request, value_json, approved))
        return approval_store.decide_args(self.namespace, request, fields, writes,
                                          apply=outcome == "approved"), writes

    async def _approved_write(self, request: dict[str, Any], value_json: str,
                              approved: list[dict[str, Any]]) -> Write:
        """The approved change: the requester's, written only if the key is still at the
        version it was requested on."""
        await self._load_schemas()
        key, value = request["key"], json.loads(value_json)
        self.schemas.check(key, value)
        metadata = {**request["metadata"], "approval_request_id": request["request_id"],
                    "approved_by": [d["approver"] for d in approved]}
        change = Change(CHANGED, self.tenant, self.environment, key, value,
                        request["requested_by"], request["reason"], metadata)
        masked_json = _dumps(request["value"])
        return Write("set", key, value_json, masked_json, change, masked_json,
                     not request["local_only"], self._checked_versions(),
                     expected_version=request["base_version"])

    async def _load_schemas(self) -> None:
        """Load ``integrations.schemas`` and ``integrations.approvals``, which every write is
        checked against."""
        rules, self._approvals_version = await self.store.read(APPROVALS_KEY)
        self._approval_rules = json.loads(rules) if rules else None
        stored, version = await self.store.read(SCHEMAS_KEY)
        self.schemas.load(stored, version)

    def _checked_versions(self) -> str:
        """What the write script compares: ``<schemas version>:<approvals version>``."""
        return f"{self.schemas.version or 0}:{self._approvals_version}"

    async def emit_event(self, event_type: str, key: str, *, value: Any = None,
                         changed_by: str | None = None, reason: str | None = None,
                         metadata: dict[str, Any] | None = None) -> str:
        """Record an event about ``key`` that changes nothing (``security.violation``, ...).

        It is routed and delivered like a change; ``value`` is masked like a value would be.
        Returns the event id.
        """
        if not isinstance(event_type, str) or not event_type:
            raise ConfigError("event_type must be a non-empty string")
        if not isinstance(key, str):
            raise ConfigError(f"event key must be a string, got {type(key).__name__}")
        if not key:
            raise ConfigError("event key must be a non-empty string")
        check_text("event_type", event_type, MAX_KEY_LENGTH)
        key = _printable(key[:MAX_KEY_LENGTH])
        masked = _masked_or_none(key, value, await self._secret_fields_of(key))
        change = self._change(event_type, key, masked, changed_by, reason, metadata)
        await self.store.write(event_only(change, _dumps(masked)))
        await self._dispatch_inline()
        return change.event_id

    async def _refuse(self, denied: AccessDenied, changed_by: str | None,
                      value: Any = None) -> AccessDenied:
        """Report a refused write as ``security.violation``; return the error to raise."""
        error = AccessDenied(denied.key, role=denied.role, needed=denied.needed, user=changed_by)
        metadata = {"error": str(error), "required_role": error.needed, "role": error.role}
        try:
            await self.emit_event(SECURITY_VIOLATION, denied.key, value=value,
                                  changed_by=changed_by, metadata=metadata)
        except (ConfigError, IntegrationError, RedisError) as exc:
            log.warning("security.violation event for %r not recorded: %s", denied.key, exc)
        return error

    async def get_role(self, email: str) -> str | None:
        """The role the identity directory gives ``email``: admin, write, read or None."""
        return await self.store.redis.hget(directory.roles_key(self.namespace), email.lower())

    async def _report_error(self, key: Any, value: Any, error: ConfigError,
                            changed_by: str | None, reason: str | None) -> None:
        """Emit ``config.error`` for a refused change (the refusal itself still stands)."""
        if not isinstance(key, str):
            return
        kind = "schema" if isinstance(error, SchemaError) else "validation"
        metadata = {"error": str(error), "error_kind": kind}
        if isinstance(error, SchemaError):
            metadata["schema_pattern"] = error.pattern
        try:
            await self.emit_event(ERROR, key, value=value,
                                  changed_by=changed_by if isinstance(changed_by, str) else None,
                                  reason=reason if isinstance(reason, str) else None,
                                  metadata=metadata)
        except (ConfigError, IntegrationError, RedisError) as exc:
            log.warning("config.error event for %r not recorded: %s", key, exc)

    async def _set_field(self, name: str, path: list[str], change: Change, emit: bool
                         ) -> Applied:
        """Set one field of an integration's dict; retried if another writer got there first."""
        storage_key = integrations.PREFIX + name
        for _ in range(_CAS_ATTEMPTS):
            stored, version = await self.store.read(storage_key)
            current = json.loads(stored) if stored else {}
            if not isinstance(current, dict):
                raise ConfigError(f"{storage_key} holds a {type(current).__name__}, not a dict")
            updated = integrations.set_path(current, path, change.new_value)
            secret_fields = await self._validate_integration(name, updated, partial=True)
            self.schemas.check(storage_key, updated)
            field_masked = mask_for_key(storage_key, updated, secret_fields)
            old_masked = _field_or_none(mask_for_key(storage_key, current, secret_fields), path)
            _mark_rotation(change, name, path, current, secret_fields)
            event_value = integrations.get_path(field_masked, path)
            try:
                return await self.store.write(Write(
                    "set", storage_key, encode_value(storage_key, updated), _dumps(field_masked),
                    change, _dumps(event_value), emit, self._checked_versions(),
                    expected_version=version,
                    old_masked_json=_dumps(old_masked)))
            except Conflict:
                continue
        raise ConfigError(f"{change.key!r} is being changed too often to update; try again")

    async def _validate_integration(self, name: str, value: Any, *, partial: bool = False,
                                    ) -> frozenset[str]:
        """Check an ``integrations.<name>`` value (as given; defaults apply when read)
        and return the names of its secret settings."""
        if name in integrations.SYSTEM_SECTIONS:
            integrations.SYSTEM_SECTIONS[name](value)
            return frozenset()
        cls = await self._connector_class(name)
        if cls is None:
            known = sorted({*hooks.catalog().builtin, *integrations.SYSTEM_SECTIONS,
                            *(await self.store.registered())})
            raise ConfigError(f"integrations.{name} is not a known connector or section; "
                              f"known: {known} (register custom connectors first)")
        if not isinstance(value, dict):
            raise ConfigError(f"integrations.{name} must be a dict of settings")
        cls.validate_config(value, partial=partial)
        return cls.secret_fields()

    async def _secret_fields_of(self, key: str) -> frozenset[str]:
        """The declared secret settings of the connector ``key`` configures (built in or
        registered); none when it is not a connector's key or its class does not load."""
        split = integrations.split(key)
        if not split or split[0] in integrations.SYSTEM_SECTIONS:
            return frozenset()
        try:
            cls = await self._connector_class(split[0])
        except (ConfigError, RedisError):
            return frozenset()
        return cls.secret_fields() if cls else frozenset()

    async def _connector_class(self, name: str) -> Any:
        builtin = hooks.catalog().builtin_class(name)
        if builtin is not None:
            return builtin
        path = await self.store.registered_class(name)
        return hooks.catalog().load(path) if path else None

    def _change(self, kind: str, key: str, value: Any, changed_by: str | None,
                reason: str | None, metadata: dict[str, Any] | None,
                idempotency_key: str | None = None) -> Change:
        check_text("changed_by", changed_by, MAX_CHANGED_BY_LENGTH)
        check_text("reason", reason, MAX_REASON_LENGTH)
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise ConfigError(
                    f"metadata must be a dict of JSON values, got {type(metadata).__name__}")
            encode_value("metadata", metadata)
        return Change(kind, self.tenant, self.environment, key, value, changed_by, reason,
                      dict(metadata or {}), idempotency_key=idempotency(idempotency_key))

    async def _dispatch_inline(self) -> None:
        """In eager mode, relay and deliver right away in this process."""
        if settings.eager():
            await asyncio.to_thread(hooks.inline_dispatch(), self.redis_url, self.namespace)

    # reads -------------------------------------------------------------------------------------

    async def get_config(self, key: str, default: Any = _MISSING, *, reveal: bool = False,
                         ) -> Any:
        """The value of ``key``, secrets masked; ``default`` (or ``KeyError``) when it has none.

        ``reveal=True`` returns the stored secrets themselves: for administrators only (the
        CLI's ``get --reveal``, the HTTP API's ``?reveal=true`` with an admin key). A field's
        alias (``integrations.zendesk.api_key``) reads the field it stands for (``api_token``).
        """
        found, value, _ = await self._read_value(key, reveal)
        if found:
            return value
        if default is _MISSING:
            raise KeyError(await self._canonical_key(key))
        return default

    async def get_entry(self, key: str, *, reveal: bool = False) -> dict[str, Any]:
        """``{"key", "value", "version"}`` of a key that has a value (secrets masked unless
        ``reveal``); ``KeyError`` otherwise. A connector's field (or its alias) is read from
        the connector's config, with that config's version."""
        found, value, version = await self._read_value(key, reveal)
        if not found:
            raise KeyError(key)
        return {"key": key, "value": value, "version": version}

    async def _read_value(self, key: str, reveal: bool) -> tuple[bool, Any, int]:
        """``(found, value, version)`` of ``key``; a field of ``integrations.<name>`` (by its
        own name or an alias) is looked up inside that connector's stored config."""
        key = await self._canonical_key(check_key(key))
        stored, version = await self._read_shown(key, reveal)
        if stored is not None:
            return True, json.loads(stored), version
        split = integrations.split(key)
        if split and split[1]:
            parent, version = await self._read_shown(integrations.PREFIX + split[0], reveal)
            try:
                value = integrations.get_path(json.loads(parent) if parent else None, split[1])
            except KeyError:
                return False, None, 0
            return True, value, version
        return False, None, 0

    async def get_configs(self, prefix: str = "") -> dict[str, Any]:
        """Every key starting with ``prefix`` and its value, secrets always masked."""
        keys = await self.store.keys_with_prefix(prefix)
        values = await self.store.read_many(keys, _SHOWN_FIELD[False])
        pairs = zip(keys, values, strict=True)
        return {key: json.loads(value) for key, value in pairs if value is not None}

    async def _read_shown(self, storage_key: str, reveal: bool) -> tuple[str | None, int]:
        """The masked (or, with ``reveal``, the stored) JSON of a key, and its version.

        The write script stores both forms side by side, so a read never masks again.
        """
        return await self.store.read(storage_key, _SHOWN_FIELD[reveal])

    async def history(self, key: str, limit: int = 100) -> list[dict[str, Any]]:
        """Changes of ``key``, newest first (values masked where secret)."""
        check_key(key)
        split = integrations.split(key)
        storage_key = integrations.PREFIX + split[0] if split and split[1] else key
        return await self.store.history(storage_key, limit)

    # connectors and deliveries -----------------------------------------------------------------

    async def register_connector(self, name: str, connector: Any, *,
                                 changed_by: str | None = None) -> SetResult:
        """Register a custom connector instance: its class path and its config are stored."""
        check_key(name)
        catalog = hooks.catalog()
        if "." in name or name in integrations.SYSTEM_SECTIONS or name in catalog.builtin:
            raise ConfigError(f"connector name {name!r} is reserved or contains '.'")
        if not catalog.is_connector(connector):
            raise ConfigError(f"{type(connector).__name__} is not a BaseConnector subclass")
        path = catalog.path_to_store(type(connector))
        key = integrations.PREFIX + name
        config = dict(connector.config)
        value_json = encode_value(key, config)  # first: refuses what masking could not walk
        type(connector).validate_config(config) if connector.settings else None
        masked = mask_for_key(key, config, type(connector).secret_fields())
        change = self._change(CHANGED, key, config, changed_by, "connector registered", None)
        masked_json = _dumps(masked)
        await self._load_schemas()
        self.schemas.check(key, config)
        try:
            applied = await self.store.write(Write(
                "set", key, value_json, masked_json, change, masked_json, True,
                self._checked_versions(), registry=(name, path)))
        except SchemasChanged:
            raise ConfigError("integrations.schemas changed during registration; try again") \
                from None
        await self._dispatch_inline()
        return SetResult("applied", key, applied.version, applied.event_id)

    async def get_connector(self, name: str) -> Any:
        """The configured connector ``name``, with awaitable methods; its ``health_check``
        weighs its recent deliveries and pause too."""
        cls = await self._connector_class(name)
        stored, _ = await self.store.read(integrations.PREFIX + name)
        if cls is None or stored is None:
            raise KeyError(f"connector {name!r} is not configured")
        connector = hooks.catalog().wrap_async(cls.from_stored(name, json.loads(stored)))
        return MonitoredConnector(connector, self, name)

    async def configured_connectors(self) -> list[str]:
        """Names of connectors that have a stored config."""
        keys = await self.store.keys_with_prefix(integrations.PREFIX)
        names = [key[len(integrations.PREFIX):] for key in keys]
        custom = await self.store.registered()
        builtin = hooks.catalog().builtin
        return [n for n in names if "." not in n and (n in builtin or n in custom)]

    async def get_deliveries(self, event_id: str) -> list[dict[str, Any]]:
        """The delivery ledger of one event: one record per connector."""
        return await self.store.deliveries(event_id)

    async def dead_deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        """Deliveries that exhausted their retries or failed permanently, newest first."""
        found = []
        for event_id, connector in await self.store.dead(limit):
            for record in await self.store.deliveries(event_id):
                if record["connector"] == connector and record["status"] == "dead":
                    found.append({"event_id": event_id, **record})
        return found

    async def replay(self, event_id: str, connector: str | None = None) -> None:
        """Deliver a dead (or any) delivery of ``event_id`` again."""
        if not await self.store.deliveries(event_id):
            raise KeyError(f"event {event_id!r} has no deliveries to replay")
        await self.store.request_replay(event_id, connector)
        await self._dispatch_inline()

    async def status(self) -> dict[str, Any]:
        """What an operator looks at first: the relays seen (alive or not, with the backlog
        each saw), this namespace's outbox length, dead and open deliveries."""
        return await self.store.status()

    async def close(self) -> None:
        """Close the Redis connections."""
        await self.store.close()

    async def __aenter__(self) -> ConfigService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _printable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode (lone surrogates) written as ``\\udXXX``: an
    event about a refused key must still be recordable."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _masked_or_none(key: str, value: Any, secret_fields: frozenset[str]) -> Any:
    """The attempted value, masked, for an error event; None when it is not JSON at all.

    A value for one field of a connector (``integrations.x.field``) is masked as it would be
    inside the connector's config, so a declared secret field is hidden whatever its name.
    """
    try:
        encode_value(key, value)
    except ConfigError:
        return None
    split = integrations.split(key)
    if not split or not split[1]:
        return mask_for_key(key, value, secret_fields)
    document = integrations.set_path({}, split[1], value)
    masked = mask_for_key(integrations.PREFIX + split[0], document, secret_fields)
    return integrations.get_path(masked, split[1])


def _mark_rotation(change: Change, name: str, path: list[str], current: dict[str, Any],
                   secret_fields: frozenset[str]) -> None:
    """Make a write that replaces a declared secret with another value (or any write by
    ``rotate_secret``) a ``security.secret_rotated`` event saying which field it was."""
    replaced = (len(path) == 1 and path[0] in secret_fields
                and current.get(path[0]) not in (None, change.new_value))
    if replaced and change.type == CHANGED:
        change.type = SECRET_ROTATED
    if change.type == SECRET_ROTATED:
        change.metadata.update(connector=name, field=path[0])


def _field_or_none(document: Any, path: list[str]) -> Any:
    try:
        return integrations.get_path(document, path)
    except KeyError:
        return None


def _pending(request: dict[str, Any]) -> SetResult:
    return SetResult("pending_approval", request["key"], None, request["requested_event_id"],
                     request["request_id"])


class _ApprovalNeeded(Exception):
    """The approval rules changed while a change was written, and one now covers its key."""

    def __init__(self, rule: Rule) -> None:
        super().__init__(rule)
        self.rule = rule
