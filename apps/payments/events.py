"""What payments tell the features above them (statements), without importing them (the layers in pyproject.toml).

A payment succeeded, failed, was refunded (or its refund failed) or disputed: listeners get a
``PaymentEvent`` naming the payment's ``reference`` (e.g. ``statement:42``), so a statement can mark itself
paid, reopen, or start the overdue process. Listeners are called once per fact, inside the transaction that
records it and in the building's schema: what they write commits (or not) together with the payment. They must not call
out to other systems; queue work with ``transaction.on_commit``.

Nothing here changes a resident's account standing: whether a failed or disputed payment makes the
account overdue (and the cards Blocked) is decided by statements, through apps.buildings.services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

PaymentEventKind = Literal["succeeded", "failed", "refunded", "refund_failed", "disputed", "dispute_closed"]


@dataclass(frozen=True)
class PaymentEvent:
    kind: PaymentEventKind
    schema_name: str
    payment_id: int
    resident_id: int
    purpose: str
    reference: str
    amount: Decimal  # the payment's amount; for refunded / disputed: the amount refunded / disputed now
    currency: str
    detail: str = ""  # failure reason, refund reason, dispute status (won / lost / ...)


_listeners: list[Callable[[PaymentEvent], None]] = []


def on_payment_event(listener: Callable[[PaymentEvent], None]) -> None:
    """Have ``listener`` called for every payment event (register it in your AppConfig.ready())."""
    if listener not in _listeners:
        _listeners.append(listener)


def remove_listener(listener: Callable[[PaymentEvent], None]) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def payment_event(event: PaymentEvent) -> None:
    for listener in list(_listeners):
        listener(event)
