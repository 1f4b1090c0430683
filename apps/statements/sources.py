"""Lines that other features put on a resident's next statement (a true-up after a utility bill, say).

The close cannot import the features above it (the layers contract), so they register a provider at
start-up, in their AppConfig.ready(). During the close, inside its transaction, each provider is asked
for the month's extra lines per resident; once the statements are made, each line's ``billed`` callback
is told the statement line that carries it, in the same transaction: if the close fails, neither the
lines nor the record of their use remain, and a closed month is never closed again, so a line is billed
exactly once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class ExtraLine:
    kind: str  # a StatementLine.Kind value, e.g. "true_up"
    description: str
    amount: Decimal  # net of tax; negative for a credit
    tax: Decimal = Decimal(0)
    tax_rate: Decimal = Decimal(0)
    window: str = ""
    # Called with (statement_line_pk, statement_pk) once the line is on a finalized statement.
    billed: Callable[[int, int], None] | None = field(default=None, compare=False)


# A provider takes the month being closed (its first day) and the resident ids the close considers, and
# returns extra lines per resident id; it may name residents outside that set (they get a statement too).
Provider = Callable[[date, frozenset[int]], Mapping[int, Iterable[ExtraLine]]]

_providers: list[Provider] = []


def register_extra_lines(provider: Provider) -> None:
    if provider not in _providers:
        _providers.append(provider)


def extra_lines(month: date, resident_ids: frozenset[int]) -> dict[int, list[ExtraLine]]:
    out: dict[int, list[ExtraLine]] = {}
    for provider in list(_providers):
        for resident_id, lines in provider(month, resident_ids).items():
            out.setdefault(resident_id, []).extend(lines)
    return out
