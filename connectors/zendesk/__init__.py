"""Zendesk Support: tickets for failed validations, schema errors, security violations and
critical (high-urgency) changes, from the guide's ``ticket_templates``.

``payload`` builds the ticket (pure), ``templates`` holds the templates and setting checks,
``connector`` sends. Each ticket carries ``external_id`` = the event id, so a retry whose earlier
attempt's outcome is unknown finds it (``GET /api/v2/tickets.json?external_id=``) instead of
opening a second one.
"""

from connectors.zendesk.connector import ZendeskConnector, error_text, ticket_ref
from connectors.zendesk.payload import build_ticket, comment_body, custom_field_values, ticket_kind
from connectors.zendesk.templates import (
           DEFAULT_TEMPLATES,
           PRIORITIES,
           TICKET_TYPES,
           check_templates,
           render_subject,
           template_for,
)

__all__ = ["DEFAULT_TEMPLATES", "PRIORITIES", "TICKET_TYPES", "ZendeskConnector",
           "build_ticket", "check_templates", "comment_body", "custom_field_values",
           "error_text", "render_subject", "template_for", "ticket_kind", "ticket_ref"]
