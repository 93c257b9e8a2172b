"""The GitHub connector's settings, declared as data, and the checks they run when stored."""

from __future__ import annotations

import re
from typing import Any

from connectors.errors import Misconfigured
from connectors.settings import ENV_REF_RE, Setting, http_url

TRACKING, INFRASTRUCTURE = "config-tracking", "infrastructure"
ROLES = (TRACKING, INFRASTRUCTURE)
"""The ``repositories`` entries the connector knows (the guide's two)."""

DEPLOY = "deploy"
TRIGGERS = (DEPLOY,)
"""The ``workflow_triggers`` entries the connector knows."""

DEFAULT_API_URL = "https://api.github.com"
"""github.com's REST API; GitHub Enterprise Server is ``https://HOST/api/v3``."""

DEFAULT_WORKFLOW_REF = "main"
"""Branch (or tag) a workflow dispatch runs on unless ``workflow_ref`` is set."""

LABEL_LIMIT = 50
"""GitHub's maximum length of a label name."""

_LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
_REPO_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
_WORKFLOW_FILE_RE = re.compile(r"^(?:\.github/workflows/)?([A-Za-z0-9._-]+\.ya?ml)$")
_REF_RE = re.compile(r"^[^\s~^:?*\[\\]{1,255}$")


def check_token(value: str) -> str | None:
    """A non-empty token without whitespace (any kind: classic, fine-grained, App)."""
    return None if value and not any(c.isspace() for c in value) else \
        "must be a non-empty token without spaces"


def check_organization(value: str) -> str | None:
    """A GitHub login: letters, digits and single inner hyphens, at most 39 characters."""
    return None if _LOGIN_RE.match(value) else "must be a GitHub organization login"


def check_repositories(value: dict[str, Any]) -> str | None:
    """Known entries only, each ``owner/repo`` (or a bare ``repo`` under ``organization``)."""
    for role, repo in value.items():
        if role not in ROLES:
            return f"has unknown entry {role!r}; known: {list(ROLES)}"
        if not isinstance(repo, str) or not (ENV_REF_RE.match(repo) or _repo_ok(repo)):
            return f"entry {role!r} must be 'owner/repo' (or 'repo' with organization set)"
    return None


def _repo_ok(text: str) -> bool:
    owner, slash, name = text.rpartition("/")
    if slash and not _LOGIN_RE.match(owner):
        return False
    return bool(_REPO_RE.match(name)) and name not in (".", "..")


def check_labels(value: list[Any]) -> str | None:
    """Label names: non-empty strings of at most 50 characters, no commas."""
    for label in value:
        if not isinstance(label, str) or not label.strip() or "," in label:
            return "must be a list of non-empty label names without commas"
        if len(label) > LABEL_LIMIT:
            return f"entry {label[:20]!r}... is longer than GitHub's {LABEL_LIMIT} characters"
    return None


def check_workflow_triggers(value: dict[str, Any]) -> str | None:
    """Known entries only, each a workflow id or its file (``deploy.yml`` or its path)."""
    for name, workflow in value.items():
        if name not in TRIGGERS:
            return f"has unknown entry {name!r}; known: {list(TRIGGERS)}"
        if workflow_id(workflow) is None:
            return (f"entry {name!r} must be a workflow id or a file such as "
                    "'.github/workflows/deploy-config.yml'")
    return None


def workflow_id(value: Any) -> str | None:
    """What the API takes as ``workflow_id``: the number, or the file's base name."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if not isinstance(value, str):
        return None
    if value.isdigit() and int(value) > 0:
        return value
    match = _WORKFLOW_FILE_RE.match(value)
    return match.group(1) if match else None


def check_ref(value: str) -> str | None:
    """A branch or tag name: no spaces or characters git forbids in refs."""
    if _REF_RE.match(value) and not value.startswith(("-", "/")) and ".." not in value:
        return None
    return "must be a branch or tag name"


SETTINGS = (
    Setting("token", required=True, secret=True, check=check_token, aliases=("api_key",),
            doc="Personal access token or App token: Issues write on config-tracking, "
                "Actions write on infrastructure."),
    Setting("organization", check=check_organization,
            doc="Owner of repositories given as a bare `repo` name."),
    Setting("repositories", kind=dict, check=check_repositories,
            doc='"config-tracking" and "infrastructure" → "owner/repo".'),
    Setting("auto_create_issues", kind=bool, default=False,
            doc="Open an issue in config-tracking for each change, deletion and error."),
    Setting("issue_labels", kind=list, check=check_labels,
            doc="Labels put on every issue (the fingerprint label is added)."),
    Setting("workflow_triggers", kind=dict, check=check_workflow_triggers,
            doc='"deploy" → workflow file or id in infrastructure, dispatched per change.'),
    Setting("api_url", default=DEFAULT_API_URL, check=http_url,
            doc="REST API root; GitHub Enterprise Server: `https://HOST/api/v3`."),
    Setting("workflow_ref", default=DEFAULT_WORKFLOW_REF, check=check_ref,
            doc="Branch or tag the deploy workflow is dispatched on."),
)


def config_problem(config: dict[str, Any]) -> str | None:
    """A problem between settings (a complete config), as ``<setting> <text>``, or None."""
    repos = config.get("repositories") or {}
    if config.get("auto_create_issues") and TRACKING not in repos:
        return f"repositories needs a {TRACKING!r} entry when auto_create_issues is true"
    if (config.get("workflow_triggers") or {}).get(DEPLOY) and INFRASTRUCTURE not in repos:
        return f"repositories needs an {INFRASTRUCTURE!r} entry for workflow_triggers"
    for role, repo in repos.items():
        if isinstance(repo, str) and "/" not in repo and not ENV_REF_RE.match(repo) \
                and not config.get("organization"):
            return f"repositories[{role!r}] is a bare name; set organization or use owner/repo"
    return None


def repository(config: dict[str, Any], role: str) -> str:
    """The ``owner/repo`` of ``role``; ``Misconfigured`` when it cannot be used."""
    repo = (config.get("repositories") or {}).get(role)
    if not isinstance(repo, str) or not repo:
        raise Misconfigured(f"integrations.github.repositories has no {role!r} entry")
    if "/" not in repo:
        if not config.get("organization"):
            raise Misconfigured(f"integrations.github.repositories[{role!r}] is a bare name "
                                "and organization is not set")
        repo = f"{config['organization']}/{repo}"
    if not _repo_ok(repo) or "/" not in repo:
        raise Misconfigured(f"integrations.github.repositories[{role!r}] is not owner/repo")
    return repo
