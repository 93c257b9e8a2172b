"""Which class implements each connector: built-ins by name, custom ones by class path."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from config_core.errors import ConfigError
from connectors.base import AsyncConnector, BaseConnector

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


def class_path(cls: type) -> str:
    """The importable dotted path of ``cls``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def load(path: str) -> type[BaseConnector]:
    """Import the connector class at ``path`` (``package.module.ClassName``)."""
    module_name, _, attr = path.rpartition(".")
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


def check_importable(cls: type) -> str:
    """Return the class path of ``cls`` if a worker could import it, else raise ``ConfigError``."""
    path = class_path(cls)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        raise ConfigError(
            f"connector class {cls.__qualname__} is defined in {cls.__module__!r}"
            " (or inside a function); workers cannot import it. Move it into an importable module."
        )
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

    def check_importable(self, cls: type) -> str:
        return check_importable(cls)

    def is_connector(self, obj: object) -> bool:
        return isinstance(obj, BaseConnector)

    def wrap_async(self, connector: Any) -> AsyncConnector:
        return AsyncConnector(connector)
