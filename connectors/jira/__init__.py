"""Jira: one issue per configuration event that needs attention (see ``payload``).

No duplicates: each issue carries the label ``apgcfg-<event_id>``; after an unknown outcome (the
create's answer was lost, or the worker died) the connector finds the issue again with a JQL
search before it would create another.
"""

from connectors.jira.connector import JiraConnector
from connectors.jira.payload import build_payload

__all__ = ["JiraConnector", "build_payload"]
