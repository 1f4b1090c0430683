"""Querysets compiled to SQL once per process, for the few queries that every charger's reconnect runs.

Django compiles a queryset again each time it runs. For a small indexed query that costs the process more
CPU than PostgreSQL spends answering it: in a reconnect storm the OCPP database thread spent more of its
time compiling the same two queries (the charger's registration, its context with three subqueries) than
waiting for the server (docs/benchmarks.md, "The reconnect's queries"). ``CompiledValues`` builds the
queryset once, with marker strings in place of its parameters, keeps the SQL, and runs it with the real
values:

    registration = CompiledValues(lambda cp_id: Registration.objects.filter(key=cp_id).values("a", "b"))
    rows = registration.rows("CP-1")        # [{"a": ..., "b": ...}]

Only for querysets whose SQL does not depend on the values: each parameter must reach the SQL unchanged
(``exact``, ``iexact`` and ``Value(...)`` do; ``contains`` wraps it; a list's length or a None would change the
SQL itself), which compiling checks. Table names stay unqualified, so a query runs in the schema the
connection is in, like the queryset it came from. Values come back as the database driver gives them:
JSON as parsed JSON, no model field conversions (decimals and dates as the driver reads them).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.db.models import QuerySet


class CompiledValues:
    """A ``.values(...)`` queryset built by ``build(*parameters)``, compiled at its first use."""

    def __init__(self, build: Callable[..., QuerySet], *, parameters: int = 1) -> None:
        self._build = build
        self._parameters = parameters
        self._compiled: tuple[str, list[Any], list[int], list[str]] | None = None
        self._lock = threading.Lock()

    def _compile(self) -> tuple[str, list[Any], list[int], list[str]]:
        with self._lock:
            if self._compiled is None:
                markers = [f"\x1fparameter {n}\x1f" for n in range(self._parameters)]
                queryset = self._build(*markers)
                query = queryset.query
                if not query.values_select and not query.annotation_select:
                    raise TypeError("CompiledValues needs a .values(...) queryset")
                sql, params = query.sql_with_params()
                params = list(params)
                slots = []
                for marker in markers:
                    found = [i for i, p in enumerate(params) if p == marker]
                    if len(found) != 1:
                        raise ValueError(f"a parameter does not reach the SQL unchanged, once: {sql}")
                    slots.append(found[0])
                names = [*query.extra_select, *query.values_select, *query.annotation_select]
                self._compiled = sql, params, slots, names
        return self._compiled

    def rows(self, *values: Any) -> list[dict[str, Any]]:
        sql, template, slots, names = self._compiled or self._compile()
        params = list(template)
        for slot, value in zip(slots, values, strict=True):
            params[slot] = value
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def first(self, *values: Any) -> dict[str, Any] | None:
        found = self.rows(*values)
        return found[0] if found else None


def json_value(raw: Any) -> Any:
    """A JSON column or JSON array element as read by a raw cursor: Django has the driver return JSON as text."""
    return json.loads(raw) if isinstance(raw, str | bytes) else raw
