"""Which class implements each connector: built-ins by name, custom ones by class path."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from config_core import settings
from config_core.errors import ConfigError
from connectors.base import AsyncConnector, BaseConnector
from connectors.settings import http_url

BUILTIN: dict[str, str] = {
    "discord": "connectors.discord.DiscordConnector",
    "slack": "connectors.slack.SlackConnector",
    "zendesk": "connectors.zendesk.ZendeskConnector",
    "jira": "connectors.jira.JiraConnector",
    "github": "connectors.github.GitHubConnector",
    "gitlab": "connectors.gitlab.GitLabConnector",
    "jenkins": "connectors.jenkins.JenkinsConnector",
    "okta": "connectors.okta.OktaConnector",
    "auth0": "connectors.auth0.Auth0Connector",
    "azure_ad": "connectors.azure_ad.AzureADConnector",
    "newrelic": "connectors.new_relic.NewRelicConnector",
    "splunk": "connectors.splunk.SplunkConnector",
    "email": "connectors.email.EmailConnector",
}
"""Registry key → importable class path of every connector shipped with the project."""


IN_PROCESS: dict[str, type[BaseConnector]] = {}
"""Class path → class of connectors registered in eager mode whose class no other process can
import (defined in ``__main__`` or inside a function): eager deliveries run in the process that
registered them, so ``load`` finds them here before importing by path."""


def class_path(cls: type) -> str:
    """The importable dotted path of ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def load(path: str) -> type[BaseConnector]:
    """The connector class at ``path`` (``package.module.ClassName``): registered in this
    process (eager mode), or imported."""
    if path in IN_PROCESS:
        return IN_PROCESS[path]
    module_name, _, attr = path.rpartition(".")
    if module_name == "__main__" or "<locals>" in path:
        raise ConfigError(f"connector class {path!r} was registered by a script in eager mode; "
                          "only that process can build it (move it into an importable module)")
    if not module_name:
        raise ConfigError(f"connector class path {path!r} must be 'package.module.ClassName'")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot import connector class {path!r}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseConnector)):
        raise ConfigError(f"{path!r} is not a BaseConnector subclass")
    return cls


def path_to_store(cls: type) -> str:
    """The class path to store for ``cls``, which workers import to build the connector.

    A class no other process can import (defined in ``__main__`` or inside a function) is
    accepted in eager mode only, where deliveries run in this process: it is kept in
    ``IN_PROCESS``. Otherwise it is refused with a ``ConfigError`` saying so.
    """
    path = class_path(cls)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        if not settings.eager():
            raise ConfigError(
                f"connector class {cls.__qualname__} is defined in {cls.__module__!r} (or inside "
                "a function), which worker processes cannot import: move it into an importable "
                "module on the workers' path. Eager mode (CELERY_TASK_ALWAYS_EAGER=1, for "
                "scripts and tests) delivers in this process and accepts it.")
        if not issubclass(cls, BaseConnector):
            raise ConfigError(f"{path!r} is not a BaseConnector subclass")
        IN_PROCESS[path] = cls
        return path
    if load(path) is not cls:
        raise ConfigError(f"{path!r} does not import as the class being registered")
    return path


def receives_events(name: str) -> bool:
    """False for a built-in connector that is only read from (an identity provider)."""
    try:
        cls = builtin_class(name)
    except ConfigError:
        return True  # let the delivery report what is wrong with it
    return cls is None or cls.receives_events


def always_batched(name: str) -> bool:
    """True for a built-in connector that sends every event in batches (Splunk HEC)."""
    try:
        cls = builtin_class(name)
    except ConfigError:
        return False
    return cls is not None and cls.batched


def may_batch(name: str) -> bool:
    """True for a built-in connector with a batch policy: it may hold events for a batch
    (chat digests, New Relic) when ``integrations.batching`` asks for it."""
    try:
        cls = builtin_class(name)
    except ConfigError:
        return False
    return cls is not None and (cls.batched
                                or cls.batch_policy is not BaseConnector.batch_policy)


def builtin_class(name: str) -> type[BaseConnector] | None:
    """The built-in connector class registered under ``name``, if any."""
    path = BUILTIN.get(name)
    return load(path) if path else None


class Catalog:
    """The connector catalog ``config_core`` uses (see ``config_core.hooks``)."""

    builtin: Mapping[str, str] = BUILTIN

    def builtin_class(self, name: str) -> type[BaseConnector] | None:
        return builtin_class(name)

    def load(self, path: str) -> type[BaseConnector]:
        return load(path)

    def path_to_store(self, cls: type) -> str:
        return path_to_store(cls)

    def is_connector(self, obj: object) -> bool:
        return isinstance(obj, BaseConnector)

    def wrap_async(self, connector: Any) -> AsyncConnector:
        return AsyncConnector(connector)

    def endpoint_problem(self, url: str) -> str | None:
        return http_url(url)
