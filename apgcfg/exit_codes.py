"""Exit codes of ``apgcfg``, the same for every command, so that scripts can branch on them."""

from __future__ import annotations

from config_core.errors import ConfigError

OK = 0
"""Done (for ``diff``: also when the two sides differ; the output says how)."""

ERROR = 1
"""Could not be done: Redis unreachable, an event not recorded, a sync failed, ..."""

USAGE = 2
"""Bad command line or bad input: an unknown option, an invalid key or value, a refused change
(argparse's own code for usage errors is 2 as well)."""

NOT_FOUND = 3
"""What was asked for does not exist: a key, a version, an event, a change request, an API key."""


class NotFound(KeyError):
    """Something named on the command line does not exist."""


def for_error(exc: BaseException) -> int:
    """The exit code of a command that raised ``exc``."""
    if isinstance(exc, KeyError):
        return NOT_FOUND
    if isinstance(exc, ConfigError):
        return USAGE
    return ERROR
