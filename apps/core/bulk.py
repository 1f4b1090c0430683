"""Rows written with PostgreSQL's COPY: for tables that take many small rows at a steady rate.

``bulk_create`` compiles an INSERT and quotes every value in Python (on PostgreSQL, into arrays for
UNNEST): for the group commit of OCPP frames and meter values that was most of the writer thread's CPU,
taken from the event loop that shares the interpreter (docs/benchmarks.md, "Runs Y").
COPY sends the rows in PostgreSQL's text format, encoded by psycopg's C code, with no SQL to compile.

- ``copy_rows``: every row inserted; what the table refuses fails the whole call, as an INSERT would.
- ``copy_new_rows``: rows that duplicate a stored one (a unique constraint) are skipped, as
  ``bulk_create(ignore_conflicts=True)`` would; through a temporary staging table of the session, since COPY
  itself has no ON CONFLICT. Returns how many were new.

Both run in the caller's schema (the connection's search path) and transaction; errors are Django's
(``django.db.OperationalError``...), as from the ORM. Rows are tuples in the order of ``columns``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.db import connection, models, transaction
from psycopg import sql


def copy_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert the rows into the model's table."""
    with connection.cursor() as cursor, connection.wrap_database_errors:
        _copy(cursor.cursor, sql.Identifier(model._meta.db_table), _names(columns), rows)


def copy_new_rows(model: type[models.Model], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Insert the rows the table does not hold yet (by its unique constraints); how many were inserted."""
    table = sql.Identifier(model._meta.db_table)
    staging = sql.Identifier(f"staging_{model._meta.db_table}")
    names = _names(columns)
    # The staging table lives as long as the database session; each call leaves it empty (its rows are moved
    # out, or rolled back with a failed transaction). It is created in the same transaction as its use, so it
    # also works behind a pooler that hands out connections per transaction.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor, connection.wrap_database_errors:
        raw = cursor.cursor
        raw.execute(sql.SQL("CREATE TEMPORARY TABLE IF NOT EXISTS {} AS SELECT {} FROM {} WITH NO DATA").format(
            staging, names, table))
        _copy(raw, staging, names, rows)
        raw.execute(sql.SQL("WITH moved AS (DELETE FROM {} RETURNING {}) "
                            "INSERT INTO {} ({}) SELECT {} FROM moved ON CONFLICT DO NOTHING").format(
            staging, names, table, names, names))
        return int(raw.rowcount)


def _names(columns: Sequence[str]) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, columns))


def _copy(raw: Any, table: sql.Identifier, names: sql.Composed, rows: Iterable[Sequence[Any]]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(table, names)
    with raw.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
