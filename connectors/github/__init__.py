"""GitHub: issues for configuration changes and workflow dispatches for deploys (REST API)."""

from connectors.github.connector import GitHubConnector

__all__ = ["GitHubConnector"]
