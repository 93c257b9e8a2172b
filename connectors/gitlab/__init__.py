"""GitLab: a commit and a merge request per changed key, and pipelines per change (REST v4).

``payloads`` holds the pure builders (event and config in, request bodies out), ``api`` the
calls through the shared HTTP client and GitLab's error mapping, ``connector`` the connector.
"""

from connectors.gitlab.connector import GitLabConnector

__all__ = ["GitLabConnector"]
