"""The HTTP API (``apgcfg serve``): configs, history, deliveries and approvals behind API keys.

FastAPI, because the OpenAPI document is generated from the same type declarations that
validate each request: the published document cannot drift from the code, a bad body gets a
422 naming the field, and schemathesis can fuzz the server from that document.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from redis.exceptions import RedisError
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apgcfg import metrics, metrics_server
from config_core.access import RANK, required_role
from config_core.errors import (
    AccessDenied,
    ApprovalDenied,
    ConfigError,
    IntegrationError,
    NoApprovalRule,
)
from config_core.service import ConfigService
from config_core.state import apikeys
from config_core.validation import MAX_IDEMPOTENCY_KEY_LENGTH, MAX_KEY_LENGTH

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted, in bytes; a larger one gets 413 before it is parsed."""

ApprovalStatus = Literal["pending", "approved", "rejected", "expired", "conflicted"]
"""A change request's status, as the listing filters it."""

KEY_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
KeyPath = Annotated[str, Path(pattern=KEY_PATTERN, max_length=MAX_KEY_LENGTH,
                              description="Dotted config key, e.g. app.database.host")]
RequestId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="A change request's id")]


class Problem(BaseModel):
    """An error: what went wrong, in one sentence."""

    detail: str


class ConfigEntry(BaseModel):
    key: str
    value: Any
    version: int


class ConfigWrite(BaseModel):
    value: Any = Field(description="Any JSON value, at most 64 KiB encoded")
    reason: str | None = Field(default=None, max_length=1000)
    idempotency_key: str | None = Field(
        default=None, max_length=MAX_IDEMPOTENCY_KEY_LENGTH, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Sent again with the same key (within a day), the write is applied once "
                    "and the first answer is returned")
    require_approval: bool = Field(
        default=False, strict=True,
        description="The write must become a change request (202); 409 when no approval rule "
                    "here covers the key")


class WriteResult(BaseModel):
    status: str = Field(description="applied, or pending_approval (answered with 202)")
    key: str
    version: int | None
    event_id: str | None
    request_id: str | None = Field(default=None, description="The change request, when pending")


class Decision(BaseModel):
    reason: str | None = Field(default=None, max_length=1000)


class ConfigList(BaseModel):
    items: dict[str, Any]


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No API key, or an unknown or revoked one"},
    403: {"model": Problem, "description": "The key's role may not do this"},
    422: {"model": Problem, "description": "A bad parameter or body; the detail names it"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 503: {"model": Problem, "description": "The change could not be recorded"},
    413: {"model": Problem, "description": f"The body is over {MAX_BODY_BYTES} bytes"}}

bearer = HTTPBearer(auto_error=False, description="An API key from `apgcfg apikeys create`")


def create_app(service: ConfigService | None = None) -> FastAPI:
    """The ASGI application, serving ``service`` (or one built from the environment)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.service = service or ConfigService()
        app.state.metrics_redis = metrics_server.redis_client(app.state.service.redis_url)
        yield
        app.state.metrics_redis.close()
        await app.state.service.close()

    app = FastAPI(title="APG Central Configuration", version="1", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(405, _method_not_allowed)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    _routes(app)
    return app


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413, before anything parses it.

    The declared ``Content-Length`` is checked first; a body streamed without one (chunked) is
    counted as it arrives and buffered up to the limit, then handed to the app in one piece.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _declared_length(scope) > self.limit:
            await self._refuse(scope, receive, send)
            return
        body = await _read_body(receive, self.limit)
        if body is None:
            await self._refuse(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        detail = f"the request body is over {self.limit} bytes"
        await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)


def _declared_length(scope: Scope) -> int:
    """The request's ``Content-Length`` (0 when absent or unreadable: the count decides)."""
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0
    return 0


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it passes ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then waits on the real one."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _service(request: Request) -> ConfigService:
    service: ConfigService = request.app.state.service
    return service


async def _caller(request: Request, credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)]) -> apikeys.ApiKey:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("an API key is required: Authorization: Bearer <key>")
    svc = _service(request)
    record = await apikeys.authenticate(svc.store.redis, svc.namespace, credentials.credentials)
    if record is None:
        raise _unauthorized("the API key is unknown or revoked")
    return record


Caller = Annotated[apikeys.ApiKey, Depends(_caller)]
Service = Annotated[ConfigService, Depends(_service)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": "Bearer"})


def _require(caller: apikeys.ApiKey, role: str, what: str) -> None:
    if RANK[caller.role] < RANK[role]:
        raise HTTPException(403, f"{what} needs the {role} role; this key has {caller.role}")


def _routes(app: FastAPI) -> None:
    @app.get("/healthz", responses={503: {"model": Problem}})
    async def healthz(svc: Service) -> dict[str, str]:
        try:
            await svc.store.redis.ping()
        except RedisError as exc:
            raise HTTPException(503, "Redis is unreachable") from exc
        return {"status": "ok"}

    @app.get("/v1/configs", responses=ERRORS)
    async def list_configs(svc: Service, caller: Caller,
                           prefix: Annotated[str, Query(max_length=MAX_KEY_LENGTH)] = ""
                           ) -> ConfigList:
        _require(caller, "read", "reading")
        return ConfigList(items=await svc.get_configs(prefix))

    @app.get("/v1/configs/{key}", responses={**ERRORS, 404: {"model": Problem}})
    async def get_config(key: KeyPath, svc: Service, caller: Caller,
                         reveal: Annotated[bool, Query(
                             description="Return secrets as stored (admin keys only)")] = False,
                         ) -> ConfigEntry:
        _require(caller, "admin" if reveal else "read", "revealing secrets" if reveal
                 else "reading")
        return ConfigEntry(**await _entry(svc, key, reveal))

    @app.put("/v1/configs/{key}", responses={
        **WRITE_ERRORS, 400: {"model": Problem, "description": "The body is not JSON"},
        409: {"model": Problem, "description": "require_approval, but no approval rule "
                                               "covers the key"},
        202: {"model": WriteResult, "description": "The key needs approval: a change request "
                                                   "was made (request_id)"}})
    async def put_config(key: KeyPath, body: ConfigWrite, svc: Service,
                         caller: Caller, response: Response) -> WriteResult:
        _require(caller, required_role(key), f"writing {key}")
        result = await _write(lambda: svc.set_config(
            key, body.value, changed_by=caller.caller, reason=body.reason,
            idempotency_key=body.idempotency_key, require_approval=body.require_approval))
        if result.status == "pending_approval":
            response.status_code = 202
        return result

    @app.delete("/v1/configs/{key}", responses={**WRITE_ERRORS, 404: {"model": Problem}})
    async def delete_config(key: KeyPath, svc: Service, caller: Caller) -> WriteResult:
        _require(caller, required_role(key), f"deleting {key}")
        return await _write(lambda: svc.delete_config(key, changed_by=caller.caller))

    @app.get("/v1/configs/{key}/history", responses=ERRORS)
    async def history(key: KeyPath, svc: Service, caller: Caller,
                      limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
        _require(caller, "read", "reading")
        return await svc.history(key, limit)

    _approval_routes(app)
    _connector_routes(app)

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request, svc: Service, caller: Caller) -> Response:
        """Prometheus metrics of this API's namespace and the relays (docs/metrics.md); any
        role may read them. Other tenants' figures are only on ``apgcfg run``'s server."""
        _require(caller, "read", "reading metrics")
        try:
            text = await asyncio.to_thread(metrics.render, request.app.state.metrics_redis,
                                           svc.namespace)
        except RedisError as exc:
            raise HTTPException(503, "Redis is unreachable") from exc
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/events/{event_id}/deliveries", responses=ERRORS)
    async def deliveries(event_id: Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")],
                         svc: Service, caller: Caller) -> list[dict[str, Any]]:
        _require(caller, "read", "reading")
        return await svc.get_deliveries(event_id)


def _approval_routes(app: FastAPI) -> None:
    """Change requests: read with any key; decided by the key's owner, if an approver."""
    @app.get("/v1/approvals", responses=ERRORS)
    async def list_approvals(svc: Service, caller: Caller,
                             status: Annotated[ApprovalStatus | None, Query()] = None,
                             ) -> list[dict[str, Any]]:
        _require(caller, "read", "reading")
        return await _decision(lambda: svc.approvals(status=status))

    @app.get("/v1/approvals/{request_id}", responses={**ERRORS, 404: {"model": Problem}})
    async def get_approval(request_id: RequestId, svc: Service,
                           caller: Caller) -> dict[str, Any]:
        _require(caller, "read", "reading")
        return await _decision(lambda: svc.approval(request_id))

    @app.post("/v1/approvals/{request_id}/approve",
              responses={**WRITE_ERRORS, 404: {"model": Problem}})
    async def approve(request_id: RequestId, svc: Service, caller: Caller) -> dict[str, Any]:
        approver = _approver(caller)
        return await _decision(lambda: svc.approve(request_id, approver=approver))

    @app.post("/v1/approvals/{request_id}/reject", responses={
        **WRITE_ERRORS, 404: {"model": Problem},
        400: {"model": Problem, "description": "The body is not JSON"}})
    async def reject(request_id: RequestId, svc: Service, caller: Caller,
                     body: Decision | None = None) -> dict[str, Any]:
        approver, reason = _approver(caller), body.reason if body else None
        return await _decision(lambda: svc.reject(request_id, approver=approver, reason=reason))


ConnectorName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]+$", max_length=MAX_KEY_LENGTH,
                                     description="A configured connector, e.g. slack")]


class ConnectorState(BaseModel):
    """A connector's recorded health, pause and waiting deliveries."""

    name: str
    status: str = Field(description="healthy, unhealthy, error, or unchecked")
    paused: bool
    paused_reason: str | None
    consecutive_failures: int
    waiting: int = Field(description="Deliveries waiting for the connector to resume")
    last_error: str | None
    last_check: str | None


def _connector_routes(app: FastAPI) -> None:
    """Connectors: listed with any key; paused and resumed by admins."""
    @app.get("/v1/connectors", responses=ERRORS)
    async def list_connectors(svc: Service, caller: Caller) -> list[ConnectorState]:
        _require(caller, "read", "reading")
        return [ConnectorState(**c) for c in await _decision(svc.connectors)]

    @app.post("/v1/connectors/{name}/pause", responses={
        **WRITE_ERRORS, 404: {"model": Problem},
        400: {"model": Problem, "description": "The body is not JSON"}})
    async def pause(name: ConnectorName, svc: Service, caller: Caller,
                    body: Decision | None = None) -> ConnectorState:
        _require(caller, "admin", "pausing a connector")
        reason = body.reason if body else None
        return ConnectorState(**await _decision(
            lambda: svc.pause_connector(name, reason=reason)))

    @app.post("/v1/connectors/{name}/resume", responses={**WRITE_ERRORS, 404: {"model": Problem}})
    async def resume(name: ConnectorName, svc: Service, caller: Caller) -> ConnectorState:
        _require(caller, "admin", "resuming a connector")
        return ConnectorState(**await _decision(lambda: svc.resume_connector(name)))


def _approver(caller: apikeys.ApiKey) -> str:
    """Who decides: the API key's owner; 403 for a key without one."""
    if not caller.owner:
        raise HTTPException(403, "deciding a change request needs an API key with an owner "
                                 "(apikeys create --owner EMAIL) who is one of its approvers")
    return caller.owner


async def _decision(action: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await action()
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0]) if exc.args else "not found") from None
    except (ApprovalDenied, AccessDenied) as exc:
        raise HTTPException(403, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    except (IntegrationError, RedisError) as exc:
        raise HTTPException(503, str(exc)) from None


async def _entry(svc: ConfigService, key: str, reveal: bool) -> dict[str, Any]:
    try:
        return await svc.get_entry(key, reveal=reveal)
    except KeyError:
        raise HTTPException(404, f"{key!r} has no value") from None


async def _write(action: Callable[[], Awaitable[Any]]) -> WriteResult:
    try:
        result = await action()
    except KeyError as exc:
        raise HTTPException(404, f"{exc.args[0]!r} has no value") from None
    except AccessDenied as exc:
        raise HTTPException(403, str(exc)) from None
    except NoApprovalRule as exc:
        raise HTTPException(409, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(422, str(exc)) from None
    except (IntegrationError, RedisError) as exc:
        raise HTTPException(503, str(exc)) from None
    return WriteResult(status=result.status, key=result.key, version=result.version,
                       event_id=result.event_id, request_id=result.request_id)


async def _method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with an ``Allow`` header listing every method of the path, not just one route's."""
    allowed: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            allowed |= set(getattr(route, "methods", None) or ())
    return JSONResponse({"detail": "Method Not Allowed"}, status_code=405,
                        headers={"Allow": ", ".join(sorted(allowed))})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """A bad request as one sentence naming the field (``body.value: Field required``)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    problems = [f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in errors]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)
