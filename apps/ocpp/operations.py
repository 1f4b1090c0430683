"""Remote operations: a person's command to a charger, sent and recorded (call inside the building's schema).

    operation = operation_run(user=request.user, charge_point_id="TEST-MAPLE-1", action="Reset",
                              payload={"type": "Soft"}, via="console")
    operation.outcome, operation.answer   # "accepted", {"status": "Accepted"}

The record is written and committed before the command goes (``pending``): a process that dies while waiting
for the answer leaves the attempt on record. The answer, or why there is none, completes it. An answer whose
``status`` is one of OCPP's refusals (``Rejected``, ``NotSupported``, ``UnlockFailed``...) is ``refused``; one
without a status (GetConfiguration, GetLocalListVersion...) or with an accepting one is ``accepted``.

``CONSOLE_OPERATIONS`` are what the console offers, each with the OCPP payload made from the connector it is
asked for; the commands API (apps/ocpp/api.py) sends any action the platform may send, recorded the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.ocpp import commands
from apps.ocpp.models import RemoteOperation

ACCEPTING = frozenset({"Accepted", "Unlocked", "Scheduled"})


@dataclass(frozen=True)
class ConsoleOperation:
    """One operation the console offers: its words for people, the OCPP action and how its payload is made."""

    key: str
    label: Any  # what the menu and the confirmation say (a lazily translated text)
    action: str
    payload: Callable[[int, int | None], dict[str, Any]]  # (connector number, transaction id) -> payload
    needs_session: bool = False
    whole_charger: bool = False


CONSOLE_OPERATIONS: dict[str, ConsoleOperation] = {op.key: op for op in (
    ConsoleOperation("stop", _("Stop the session"), "RemoteStopTransaction",
                     lambda _n, tx: {"transactionId": tx}, needs_session=True),
    ConsoleOperation("unlock", _("Unlock the connector"), "UnlockConnector", lambda n, _tx: {"connectorId": n}),
    ConsoleOperation("unavailable", _("Take the connector out of service"), "ChangeAvailability",
                     lambda n, _tx: {"connectorId": n, "type": "Inoperative"}),
    ConsoleOperation("available", _("Put the connector back in service"), "ChangeAvailability",
                     lambda n, _tx: {"connectorId": n, "type": "Operative"}),
    ConsoleOperation("status", _("Ask for its status again"), "TriggerMessage",
                     lambda n, _tx: {"requestedMessage": "StatusNotification", "connectorId": n}),
    ConsoleOperation("soft_reset", _("Restart the charger (soft reset)"), "Reset", lambda _n, _tx: {"type": "Soft"},
                     whole_charger=True),
    ConsoleOperation("hard_reset", _("Restart the charger (hard reset)"), "Reset", lambda _n, _tx: {"type": "Hard"},
                     whole_charger=True),
    ConsoleOperation("clear_cache", _("Clear the charger's authorization cache"), "ClearCache",
                     lambda _n, _tx: {}, whole_charger=True),
)}


def operation_run(*, user, charge_point_id: str, action: str, payload: dict[str, Any], via: str,
                  schema_name: str, connector_number: int | None = None, timeout: float | None = None
                  ) -> RemoteOperation:
    """Record, send and complete one operation; never raises for what the charger or the network did."""
    with transaction.atomic():
        operation = RemoteOperation.objects.create(
            requested_at=timezone.now(), user_id=user.pk, user_email=user.email, via=via,
            charge_point_id=charge_point_id, connector_number=connector_number, action=action, payload=payload)
    outcome, answer, error = RemoteOperation.Outcome.ACCEPTED, {}, ""
    try:
        answer = commands.send_command_sync(charge_point_id, action, payload, timeout, schema_name=schema_name)
    except commands.ChargerNotConnected:
        outcome, error = RemoteOperation.Outcome.NOT_CONNECTED, "the charger is not connected"
    except commands.CommandTimeout as exc:
        outcome, error = RemoteOperation.Outcome.TIMEOUT, str(exc)
    except commands.InvalidCommand as exc:
        outcome, error = RemoteOperation.Outcome.INVALID, f"{exc.error_code}: {exc.description}"
    except commands.CommandRejected as exc:
        outcome, error = RemoteOperation.Outcome.ERROR, f"{exc.error_code}: {exc.description}"
    else:
        status = answer.get("status") if isinstance(answer, dict) else None
        if status is not None and status not in ACCEPTING:
            outcome = RemoteOperation.Outcome.REFUSED
    operation.outcome, operation.answer, operation.error = outcome, answer or {}, error[:300]
    operation.finished_at = timezone.now()
    operation.save(update_fields=["outcome", "answer", "error", "finished_at"])
    return operation


def operations_recent(limit: int = 200) -> list[RemoteOperation]:
    return list(RemoteOperation.objects.order_by("-requested_at", "-id")[:limit])
