"""``apgcfg``: run the stack, and read or change configuration from a shell.

Every command but ``run``, ``serve`` and ``metrics`` is a thin wrapper over ``ConfigService``
(or one module of this package) that returns plain data; ``apgcfg.render`` prints it as a table
for people or, with ``--json``, as JSON for scripts. A refusal prints one line to stderr and
exits with the code ``apgcfg.exit_codes`` names (1 error, 2 bad input, 3 not found).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import uvicorn
from redis.exceptions import RedisError

from apgcfg import diffing, exit_codes, metrics_server, replaying, status, supervisor
from apgcfg.api import create_app
from apgcfg.metrics_server import MetricsOptions, MetricsServer
from apgcfg.render import Lines, View, emit, table, to_json, when
from config_core import settings as core_settings
from config_core.errors import ApgConfigError, ConfigError
from config_core.masking import mask_url_credentials
from config_core.service import ConfigService
from config_core.state import apikeys, directory
from config_core.state import sync as sync_state
from workers import env_sync, identity
from workers.redis_client import connect

Handler = Callable[[ConfigService, argparse.Namespace], Awaitable[Any]]

_GLOBAL_ENV = {"redis_url": "CONFIG_REDIS_URL", "environment": "CONFIG_ENVIRONMENT",
               "tenant": "CONFIG_TENANT"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``apgcfg`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        return _run(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "metrics":
        return _metrics(args)
    try:
        result = asyncio.run(_call(args.handler, args))
    except (ApgConfigError, KeyError, RedisError) as exc:
        print(f"apgcfg {args.command}: {_message(exc)}", file=sys.stderr)
        return exit_codes.for_error(exc)
    emit(result, getattr(args, "json", False))
    return exit_codes.OK


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = argparse.ArgumentParser(prog="apgcfg", parents=[common],
                                     description="APG Central Configuration")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", parents=[common],
                              help="run Redis (if needed), a worker, beat and Flower")
    run.add_argument("--flower-port", type=int, default=5555)
    run.add_argument("--no-beat", action="store_true", help="do not start celery beat")
    run.add_argument("--no-flower", action="store_true", help="do not start Flower")
    run.add_argument("--concurrency", type=_positive_int, default=2,
                     help="worker pool processes (default 2)")
    serve = commands.add_parser("serve", parents=[common], help="serve the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=_positive_int, default=8080)
    served = commands.add_parser(
        "metrics", parents=[common],
        help="serve Prometheus /metrics of every namespace (needs APGCFG_METRICS_TOKEN)")
    served.add_argument("--host", help="default: APGCFG_METRICS_HOST, else 127.0.0.1")
    served.add_argument("--port", type=_positive_int,
                        help="default: APGCFG_METRICS_PORT, else 9808")
    for name, (handler, help_text, arguments) in _COMMANDS.items():
        sub = commands.add_parser(name, parents=[common], help=help_text)
        for flags, options in arguments:
            sub.add_argument(*flags, **options)
        sub.set_defaults(handler=handler)
    return parser


def _global_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command (SUPPRESS: a later default never wins)."""
    common = argparse.ArgumentParser(add_help=False)
    for name, env_var in _GLOBAL_ENV.items():
        common.add_argument(f"--{name.replace('_', '-')}", dest=name, default=argparse.SUPPRESS,
                            help=f"default: ${env_var}")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON (for scripts) instead of tables")
    return common


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _run(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    for name, env_var in _GLOBAL_ENV.items():
        if getattr(args, name, None):
            env[env_var] = getattr(args, name)
    options = supervisor.RunOptions(flower_port=args.flower_port, beat=not args.no_beat,
                                    flower=not args.no_flower, concurrency=args.concurrency)
    return supervisor.run(options, env)


async def _call(handler: Handler, args: argparse.Namespace) -> Any:
    service = ConfigService(redis_url=getattr(args, "redis_url", None),
                            environment=getattr(args, "environment", None),
                            tenant=getattr(args, "tenant", None))
    async with service:
        return await handler(service, args)


def _message(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"not found: {exc.args[0] if exc.args else ''}"
    return str(exc) or type(exc).__name__


def parse_value(text: str) -> Any:
    """``text`` as JSON, or the plain string when it is not JSON (``prod-db`` -> "prod-db")."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


# commands ---------------------------------------------------------------------------------------

async def _get(service: ConfigService, args: argparse.Namespace) -> Any:
    value = await service.get_config(args.key, reveal=args.reveal)
    return View(value, value if isinstance(value, str) else to_json(value))


async def _set(service: ConfigService, args: argparse.Namespace) -> dict[str, Any]:
    write = service.set_config_local_only if args.local_only else service.set_config
    result = await write(args.key, parse_value(args.value), changed_by=args.by,
                         reason=args.reason, idempotency_key=args.idempotency_key)
    return dataclasses.asdict(result)


async def _list(service: ConfigService, args: argparse.Namespace) -> View:
    found = await service.get_configs(args.prefix)
    rows = [{"key": key, "value": value} for key, value in found.items()]
    return View(found, table(rows) if rows else "(none)")


async def _history(service: ConfigService, args: argparse.Namespace) -> View:
    entries = await service.history(args.key)
    return View(entries, table(entries, ["version", "timestamp", "changed_by", "reason",
                                         "value", "event_id"]) if entries else "(none)")


async def _deliveries(service: ConfigService, args: argparse.Namespace) -> View:
    rows = await service.get_deliveries(args.event_id)
    shown = [{**row, "updated_at": when(row.get("updated_at"))} for row in rows]
    return View(rows, table(shown, ["connector", "status", "urgency", "attempts",
                                    "updated_at", "last_error"]) if rows else "(none)")


async def _dead(service: ConfigService, args: argparse.Namespace) -> View:
    rows = await service.dead_deliveries(args.limit)
    shown = [{**row, "updated_at": when(row.get("updated_at"))} for row in rows]
    return View(rows, table(shown, ["event_id", "connector", "urgency", "attempts",
                                    "updated_at", "last_error"]) if rows else "(none)")


async def _replay(service: ConfigService, args: argparse.Namespace) -> View:
    return await replaying.replay(service, args.event_id, args.connector, args.since,
                                  args.until, args.limit, args.progress)


async def _status(service: ConfigService, args: argparse.Namespace) -> View:
    return status.view(await status.gather(service, args.timeout_s))


async def _diff(service: ConfigService, args: argparse.Namespace) -> View:
    if args.other_environment or args.other_redis_url:
        if args.from_version is not None or args.to_version is not None:
            raise ConfigError("diff compares two versions (--from/--to) or two environments "
                              "(--other-environment/--other-redis-url), not both")
        other = ConfigService(redis_url=args.other_redis_url or service.redis_url,
                              environment=args.other_environment or service.environment,
                              tenant=service.tenant)
        async with other:
            there = await diffing.current(other, args.key)
        here = await diffing.current(service, args.key)
        return diffing.compare(args.key, here, there,
                               (_where(service), _where(other)))
    if args.from_version is None:
        raise ConfigError("diff needs --from VERSION (or --other-environment NAME)")
    left = await diffing.version_of(service, args.key, args.from_version)
    right = await diffing.version_of(service, args.key, args.to_version)
    return diffing.compare(args.key, left, right,
                           (f"v{left['version']}", f"v{right['version']}"))


def _where(service: ConfigService) -> str:
    return f"{service.namespace.name}@{mask_url_credentials(service.redis_url)}"


async def _rollback(service: ConfigService, args: argparse.Namespace) -> dict[str, Any]:
    return await diffing.rollback(service, args.key, args.to_version, args.by, args.reason)


async def _health(service: ConfigService, args: argparse.Namespace) -> dict[str, Any]:
    return await service.check_integration_health()


async def _apikeys(service: ConfigService, args: argparse.Namespace) -> Any:
    redis, ns = service.store.redis, service.namespace
    if args.action == "create":
        if not args.role:
            raise ConfigError("apikeys create needs --role read|write|admin")
        key, record = await apikeys.create(redis, ns, args.role, args.name or "", args.owner)
        return Lines([json.dumps(record.public()), "store this key now; it is not shown again:",
                      key])
    if args.action == "list":
        return [record.public() for record in await apikeys.listing(redis, ns)]
    if not args.id:
        raise ConfigError(f"apikeys {args.action} needs the key's id (see apikeys list)")
    if args.action == "rotate":
        key, new, old = await apikeys.rotate(redis, ns, args.id, args.overlap_s)
        until = datetime.fromtimestamp(old.expires_at or 0, UTC).isoformat(timespec="seconds")
        return Lines([json.dumps(new.public()), f"key {old.id} keeps working until {until}",
                      "store this key now; it is not shown again:", key])
    return (await apikeys.revoke(redis, ns, args.id)).public()


async def _approvals(service: ConfigService, args: argparse.Namespace) -> Any:
    if args.action == "list":
        return await service.approvals(status=args.status)
    if not args.id:
        raise ConfigError(f"approvals {args.action} needs the request's id (see approvals list)")
    if args.action == "show":
        return await service.approval(args.id)
    if not args.by:
        raise ConfigError(f"approvals {args.action} needs --by EMAIL (one of the approvers)")
    if args.action == "approve":
        return await service.approve(args.id, approver=args.by)
    return await service.reject(args.id, approver=args.by, reason=args.reason)


async def _connectors(service: ConfigService, args: argparse.Namespace) -> Any:
    if args.action == "list":
        found = await service.connectors()
    elif not args.name:
        raise ConfigError(f"connectors {args.action} needs the connector's name "
                          "(see connectors list)")
    elif args.action == "pause":
        found = [await service.pause_connector(args.name, reason=args.reason)]
    else:
        found = [await service.resume_connector(args.name)]
    return View(found, table(found, CONNECTOR_COLUMNS))


CONNECTOR_COLUMNS = ("name", "status", "paused", "waiting", "consecutive_failures",
                     "last_error")


def _serve(args: argparse.Namespace) -> int:
    service = ConfigService(redis_url=getattr(args, "redis_url", None),
                            environment=getattr(args, "environment", None),
                            tenant=getattr(args, "tenant", None))
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="info")
    return 0


def _metrics(args: argparse.Namespace) -> int:
    """Serve every namespace's metrics in the foreground until SIGTERM or Ctrl-C."""
    env = dict(os.environ)
    env.update({name: str(value) for name, value in (("APGCFG_METRICS_HOST", args.host),
                                                      ("APGCFG_METRICS_PORT", args.port))
                if value is not None})
    if not env.get("APGCFG_METRICS_TOKEN"):
        print("apgcfg metrics: set APGCFG_METRICS_TOKEN to the bearer token scrapes must send",
              file=sys.stderr)
        return exit_codes.USAGE
    try:
        options = MetricsOptions.from_env(env)
    except ValueError as exc:
        print(f"apgcfg metrics: {exc}", file=sys.stderr)
        return exit_codes.USAGE
    redis_url = getattr(args, "redis_url", None) or core_settings.redis_url()
    try:
        server = MetricsServer(options, metrics_server.redis_client(redis_url))
    except OSError as exc:
        print(f"apgcfg metrics: {options.host}:{options.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return exit_codes.ERROR
    print(f"apgcfg metrics: serving {server.url} for every namespace "
          "(Authorization: Bearer $APGCFG_METRICS_TOKEN)", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.client.close()
    print("apgcfg metrics: stopped", flush=True)
    return exit_codes.OK


async def _role(service: ConfigService, args: argparse.Namespace) -> dict[str, Any]:
    return {"email": args.email, "role": await service.get_role(args.email)}


async def _identity(service: ConfigService, args: argparse.Namespace) -> dict[str, Any]:
    """Sync in this process, as a worker would, or show the providers' sync status."""
    client = connect(service.redis_url)
    try:
        names = [args.provider] if args.provider else identity.providers(client,
                                                                          service.namespace)
        if args.action == "status":
            return {name: directory.status(client, service.namespace, name)
                    for name in names}
        if not names:
            raise ConfigError("no identity provider is configured (integrations.okta, "
                              "integrations.auth0 or integrations.azure_ad)")
        return {name: await asyncio.to_thread(identity.sync, client, service.namespace, name)
                for name in names}
    finally:
        client.close()


async def _sync(service: ConfigService, args: argparse.Namespace) -> Any:
    """Multi-environment sync: state, conflicts, a run now (in this process), a resolution."""
    client = connect(service.redis_url)
    ns = service.namespace
    try:
        if args.action == "status":
            return env_sync.status(client, ns)
        if args.action == "conflicts":
            return sync_state.conflicts(client, ns)
        if args.action == "resolve":
            if not args.key or not args.take:
                raise ConfigError("sync resolve needs KEY and --take source|target")
            return await asyncio.to_thread(env_sync.resolve, client, ns, args.key, args.take,
                                           args.target)
        settings = env_sync.settings_of(client, ns)
        targets = [args.target] if args.target else sorted(settings.targets if settings else [])
        if not targets:
            raise ConfigError(f"integrations.multi_env_sync names no environment to push to "
                              f"from {ns.environment}")
        return [await asyncio.to_thread(env_sync.run, client, ns, target,
                                        retry_refused=args.retry_refused) for target in targets]
    finally:
        client.close()


_KEY = (("key",), {"help": "configuration key, e.g. app.database.host"})
_EVENT = (("event_id",), {"help": "event id (printed by set)"})

_COMMANDS: dict[str, tuple[Handler, str, list[tuple[tuple[str, ...], dict[str, Any]]]]] = {
    "get": (_get, "print a key's value, secrets masked", [
        _KEY,
        (("--reveal",), {"action": "store_true",
                         "help": "print secrets as stored (for administrators)"}),
    ]),
    "set": (_set, "set a key and emit its change event", [
        _KEY,
        (("value",), {"metavar": "VALUE_JSON", "help": "JSON; anything else is a string"}),
        (("--by",), {"help": "who makes the change"}),
        (("--reason",), {"help": "why"}),
        (("--local-only",), {"action": "store_true", "help": "apply without an event"}),
        (("--idempotency-key",), {"help": "run again with the same key: applied once"}),
    ]),
    "list": (_list, "print every key (under PREFIX) and its value, secrets masked", [
        (("prefix",), {"nargs": "?", "default": "", "metavar": "PREFIX"}),
    ]),
    "history": (_history, "print a key's changes, newest first", [_KEY]),
    "deliveries": (_deliveries, "print the delivery ledger of one event", [_EVENT]),
    "dead": (_dead, "list dead deliveries, newest first", [
        (("--limit",), {"type": _positive_int, "default": 100}),
    ]),
    "replay": (_replay, "deliver an event again, or the dead deliveries of a connector or "
                        "time window", [
        (("event_id",), {"nargs": "?", "help": "event id (printed by set); omit to replay "
                                              "dead deliveries by --connector/--since/--until"}),
        (("--connector",), {"help": "only this connector"}),
        (("--since",), {"help": "dead since: ISO 8601 (UTC), epoch seconds or 30m/2h/1d ago"}),
        (("--until",), {"help": "dead until (same forms as --since)"}),
        (("--limit",), {"type": _positive_int, "default": 10000,
                        "help": "replay at most this many (default 10000)"}),
        (("--progress",), {"action": argparse.BooleanOptionalAction, "default": None,
                           "help": "progress bar on stderr (default: when it is a terminal)"}),
    ]),
    "health": (_health, "check every configured connector", []),
    "status": (_status, "queue depth per urgency, outbox backlog, dead deliveries per "
                        "connector, relays and workers seen", [
        (("--timeout-s",), {"type": float, "default": 1.0,
                            "help": "how long to wait for workers to answer (default 1)"}),
    ]),
    "diff": (_diff, "compare two versions of a key, or the key in two environments", [
        _KEY,
        (("--from",), {"dest": "from_version", "type": int, "metavar": "VERSION"}),
        (("--to",), {"dest": "to_version", "type": int, "metavar": "VERSION",
                     "help": "default: the newest version"}),
        (("--other-environment",), {"metavar": "NAME", "help": "compare with this "
                                                              "environment's current value"}),
        (("--other-redis-url",), {"metavar": "URL", "help": "... in this Redis"}),
    ]),
    "rollback": (_rollback, "set a key back to an earlier version's value (a normal change, "
                            "with its event)", [
        _KEY,
        (("--to",), {"dest": "to_version", "type": int, "metavar": "VERSION",
                     "required": True}),
        (("--by",), {"help": "who makes the change"}),
        (("--reason",), {"help": "why (default: rollback of KEY to version N)"}),
    ]),
    "apikeys": (_apikeys, "create, list, rotate or revoke API keys of the HTTP API", [
        (("action",), {"choices": ["create", "list", "rotate", "revoke"]}),
        (("id",), {"nargs": "?", "help": "key id, for rotate and revoke"}),
        (("--overlap-s",), {"type": float, "default": apikeys.DEFAULT_OVERLAP_S,
                            "help": "rotate: seconds the old key keeps working (default "
                                    f"{apikeys.DEFAULT_OVERLAP_S:g})"}),
        (("--role",), {"choices": ["read", "write", "admin"], "help": "for create"}),
        (("--name",), {"help": "a label, for create"}),
        (("--owner",), {"help": "e-mail the key's changes are attributed to (changed_by)"}),
    ]),
    "approvals": (_approvals, "list, show, approve or reject change requests", [
        (("action",), {"choices": ["list", "show", "approve", "reject"]}),
        (("id",), {"nargs": "?", "help": "request id, for show, approve and reject"}),
        (("--status",), {"choices": ["pending", "approved", "rejected", "expired",
                                     "conflicted"], "help": "list: only these"}),
        (("--by",), {"help": "approve, reject: the approver's e-mail"}),
        (("--reason",), {"help": "reject: why"}),
    ]),
    "sync": (_sync, "multi-environment sync: status, conflicts, run now, resolve a conflict", [
        (("action",), {"choices": ["status", "conflicts", "run", "resolve"]}),
        (("key",), {"nargs": "?", "help": "resolve: the key in conflict"}),
        (("--take",), {"choices": ["source", "target"],
                       "help": "resolve: push this environment's value (source) or keep the "
                               "target's (target)"}),
        (("--target",), {"help": "run, resolve: only this target environment"}),
        (("--retry-refused",), {"action": "store_true",
                                "help": "run: push again versions a target refused"}),
    ]),
    "connectors": (_connectors, "list connectors (health, pause, waiting deliveries), or pause "
                               "or resume one", [
        (("action",), {"choices": ["list", "pause", "resume"]}),
        (("name",), {"nargs": "?", "help": "connector, for pause and resume"}),
        (("--reason",), {"help": "pause: why (shown in list and health)"}),
    ]),
    "role": (_role, "print the role the identity directory gives EMAIL", [
        (("email",), {"help": "user e-mail"}),
    ]),
    "identity": (_identity, "sync identity providers now, or show their sync status", [
        (("action",), {"choices": ["sync", "status"]}),
        (("provider",), {"nargs": "?", "help": "okta, auth0 or azure_ad (default: all)"}),
    ]),
}


if __name__ == "__main__":
    sys.exit(main())
