"""``apgcfg replay``: deliver again one event, or every dead delivery of a connector or window.

``replay EVENT_ID [--connector NAME]`` sends one event again (any status). Without an event id,
``--connector`` and/or ``--since`` / ``--until`` select dead deliveries by connector and by the
time they went dead, and each is replayed through the outbox, like every event; delivered ones
are never sent twice by a bulk replay. A progress bar goes to stderr (on a terminal, or with
``--progress``).
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from apgcfg.render import Progress, View, table, when
from config_core.errors import ConfigError
from config_core.service import ConfigService
from config_core.state import ledger

_AGO_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """Epoch seconds from ``2026-12-05T10:00:00Z`` (ISO 8601, UTC when no offset), ``1764928800``
    (epoch seconds) or ``30m`` / ``2h`` / ``1d`` (that long ago)."""
    text = text.strip()
    ago = _AGO_RE.match(text)
    if ago:
        return (now or time.time()) - float(ago.group(1)) * _UNIT_S[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"time {text!r} is not ISO 8601 (2026-12-05T10:00:00Z), epoch "
                          "seconds or a duration ago (30m, 2h, 1d)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def dead_selected(service: ConfigService, connector: str | None, since: float | None,
                        until: float | None, limit: int) -> list[dict[str, Any]]:
    """Dead deliveries that went dead in [since, until] (of ``connector`` only), oldest first."""
    members = await service.store.redis.zrangebyscore(
        ledger.dead_key(service.namespace), "-inf" if since is None else since,
        "+inf" if until is None else until, withscores=True)
    found = []
    for member, score in members:
        event_id, _, name = member.rpartition(":")
        if connector is None or name == connector:
            found.append({"event_id": event_id, "connector": name, "dead_at": score})
    return found[:limit]


async def replay(service: ConfigService, event_id: str | None, connector: str | None,
                 since: str | None, until: str | None, limit: int,
                 progress: bool | None) -> View:
    """Request the replays; the result lists what was requested."""
    if event_id:
        if since or until:
            raise ConfigError("replay takes an EVENT_ID or --since/--until, not both")
        await service.replay(event_id, connector)
        data = {"requested": 1, "deliveries": [{"event_id": event_id, "connector": connector}]}
        return View(data, f"replay requested: event {event_id} ({connector or 'every connector'})")
    if not (connector or since or until):
        raise ConfigError("replay needs an EVENT_ID, --connector NAME or --since/--until")
    start = parse_time(since) if since else None
    end = parse_time(until) if until else None
    if start is not None and end is not None and start > end:
        raise ConfigError(f"--since {since!r} is after --until {until!r}")
    selected = await dead_selected(service, connector, start, end, limit)
    bar = Progress("replay", len(selected), sys.stderr.isatty() if progress is None else progress)
    for delivery in selected:
        await service.replay(delivery["event_id"], delivery["connector"])
        bar.advance()
    bar.close()
    data = {"requested": len(selected), "connector": connector, "since": start, "until": end,
            "deliveries": selected}
    rows = [{**d, "dead_at": when(d["dead_at"])} for d in selected]
    text = f"replay requested for {len(selected)} dead deliveries"
    return View(data, text + ("\n" + table(rows) if rows else ""))
