"""What happens after a month closed (called on commit): each statement is rendered and mailed by a worker."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def period_closed(schema_name: str, period_id: int) -> None:
    from apps.statements.tasks import queue_autopay, queue_deliveries

    try:
        queue_deliveries(schema_name, period_id)
        queue_autopay(schema_name, period_id)
    except Exception:
        # The broker is down: the statements are made and safe; `manage.py deliver_statements` (or the
        # next close run) sends what was not sent.
        log.exception("could not queue the statements of period %s in %s", period_id, schema_name)
