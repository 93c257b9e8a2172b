"""Hooks the layers above register, so that ``config_core`` imports neither of them.

``config_core`` is the bottom layer: ``connectors`` and ``workers`` import it, never the other
way round. What the service needs from them comes through here:

- the connector catalog (which connector classes exist, how to load and check one), registered
  by ``connectors`` when it is imported;
- the inline dispatcher of eager mode (``CELERY_TASK_ALWAYS_EAGER=1``: relay and deliver each
  change inside the writer), registered by ``workers`` when it is imported.

Both packages are also declared as entry points (``apgcfg.connectors``,
``apgcfg.inline_dispatch``), so a script that imports only ``config_core`` finds them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol

from config_core.errors import IntegrationError
from config_core.state.keys import Namespace

InlineDispatch = Callable[[str, Namespace], None]
"""Relay and deliver every waiting event of a namespace (redis URL, namespace), in this thread."""



class ConnectorCatalog(Protocol):
    """What the service asks of the connectors package."""

    builtin: Mapping[str, str]
    """Registry key → class path of every built-in connector."""

    def builtin_class(self, name: str) -> Any: ...

    def load(self, path: str) -> Any: ...

    def path_to_store(self, cls: type) -> str:
        """The class path to register ``cls`` under (``ConfigError`` when workers could not
        build it; a class of ``__main__`` is kept in memory in eager mode)."""

    def is_connector(self, obj: object) -> bool: ...

    def wrap_async(self, connector: Any) -> Any: ...

    def endpoint_problem(self, url: str) -> str | None:
        """Why ``url`` may not be called (not http(s), an internal address not allowed), as
        the connectors' outbound policy judges it; None when it may."""


INLINE_GROUP = "apgcfg.inline_dispatch"
CATALOG_GROUP = "apgcfg.connectors"

_inline: InlineDispatch | None = None
_catalog: ConnectorCatalog | None = None


def register_catalog(catalog: ConnectorCatalog) -> None:
    """Called by ``connectors`` on import."""
    global _catalog
    _catalog = catalog


def catalog() -> ConnectorCatalog:
    """The connector catalog, loading the ``connectors`` package if nobody has."""
    if _catalog is None:
        _load(CATALOG_GROUP)
    if _catalog is None:
        raise IntegrationError("the connectors package is not installed or not importable")
    return _catalog


def register_inline_dispatch(dispatch: InlineDispatch) -> None:
    """Called by ``workers`` on import."""
    global _inline
    _inline = dispatch


def inline_dispatch() -> InlineDispatch:
    """The registered inline dispatcher, loading the ``workers`` package if nobody has."""
    if _inline is None:
        _load(INLINE_GROUP)
    if _inline is None:
        raise IntegrationError(
            "eager mode (CELERY_TASK_ALWAYS_EAGER=1) delivers inline through the workers "
            "package, which is not installed or not importable here")
    return _inline


def _load(group: str) -> None:
    for entry in entry_points(group=group):
        entry.load()  # importing the package registers its hook
