"""Group commit of OCPP frames and meter values: nothing acknowledged is ever lost.

One writer per event loop (a daphne process has one). Consumers hand it rows
and get back a future for the batch that holds them; a handler whose data must
survive awaits that future before the charger gets its answer. So a CALLRESULT
means "committed": a crash after it loses nothing, and a crash before it makes
the charger send the message again (dedup keeps the retry from counting twice).

Batching keeps the cost low with thousands of chargers: a flush takes
everything queued so far (every charger, every schema) and writes it with one
COPY per schema and table in one transaction (apps/core/bulk.py). While a flush runs, new rows
wait for the next one, which starts as soon as this one ends; when the writer
is idle, the first row starts a flush after FLUSH_DELAY (a few milliseconds, to
gather the rows of other chargers that arrive at the same moment).

A failed write is never acknowledged: the waiting futures get the exception,
the consumer answers InternalError and the charger retries. When a schema's
batch fails, each charger's rows are retried on their own, so that one
charger's bad row (or one building's broken schema) does not fail the others.
Frames nobody waits for (answers sent, answers received) are tried again with
the next batch, a few times.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DataError, IntegrityError, InterfaceError, OperationalError, connection, transaction

from apps.charging.services import meter_values_store_many
from apps.core.bulk import copy_rows
from apps.core.tenants import stay_in_schema
from apps.ocpp.models import OcppFrame

logger = logging.getLogger(__name__)

FLUSH_DELAY = 0.005
# A batch slower than this is logged (its chargers' answers waited for it): from the event loop, and in the thread.
SLOW_BATCH_S = 0.25
# Attempts for rows nobody waits for (answers sent and received) before they are given up.
MAX_ATTEMPTS = 3

# One thread (so one database connection) writes the batches of every writer in the process: the
# consumers' own queries keep the database thread of channels, and a flush never queues behind them.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ocpp-group-commit")


# An OcppFrame row, in the order of FRAME_COLUMNS (a tuple: no model instance per frame on the event loop).
Frame = tuple[str, str, int | None, str, str, str, datetime]
FRAME_COLUMNS = ("charge_point_id", "direction", "message_type", "action", "unique_id", "raw", "received_at")


@dataclass
class _Group:
    """The rows of one charger in one batch, and whoever waits for them."""

    charge_point_pk: int | None = None
    frames: list[Frame] = field(default_factory=list)
    meter_values: list[dict] = field(default_factory=list)
    future: asyncio.Future | None = None
    attempts: int = 0


class BatchWriter:
    def __init__(self) -> None:
        # schema -> charge point id -> rows
        self._pending: dict[str, dict[str, _Group]] = defaultdict(dict)
        self._writing: dict[str, dict[str, _Group]] = {}
        self._runner: asyncio.Task | None = None

    def _group(self, schema: str, charge_point_id: str) -> _Group:
        group = self._pending[schema].get(charge_point_id)
        if group is None:
            group = self._pending[schema][charge_point_id] = _Group()
        if group.future is None:
            group.future = asyncio.get_running_loop().create_future()
            # Nobody may await it (a frame sent): do not warn about an exception never retrieved.
            group.future.add_done_callback(_consume_exception)
        self._start()
        return group

    def add_frame(self, schema: str, *, charge_point_id: str, direction: str, raw: str, at: datetime,
                  message_type: int | None, action: str, unique_id: str) -> asyncio.Future:
        """Queue a frame; the future resolves when it is committed (or fails with the write's error)."""
        group = self._group(schema, charge_point_id)
        group.frames.append((charge_point_id, direction, message_type, _storable(action)[:64],
                             _storable(unique_id)[:64], _storable(raw), at))
        return group.future

    def add_meter_values(self, schema: str, charge_point_id: str, charge_point_pk: int,
                         rows: list[dict]) -> asyncio.Future:
        """Queue meter values; await the future before acknowledging them."""
        group = self._group(schema, charge_point_id)
        group.charge_point_pk = charge_point_pk
        group.meter_values.extend(rows)
        return group.future

    def _start(self) -> None:
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            await asyncio.sleep(FLUSH_DELAY)
            while self._pending:
                # Rows that arrived during the last write go at once: they have waited long enough.
                self._writing, self._pending = self._pending, defaultdict(dict)
                await self._write(self._writing)
        finally:
            self._writing = {}
            self._runner = None

    async def _write(self, batch: dict[str, dict[str, _Group]]) -> None:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            errors = await loop.run_in_executor(_executor, _write_batch, batch)
        except Exception as error:  # the executor itself failed: nothing is known to be stored
            logger.exception("group commit failed")
            errors = {(schema, cp_id): error for schema, groups in batch.items() for cp_id in groups}
        took = time.monotonic() - started
        if took >= SLOW_BATCH_S:  # every charger of the batch waited this long for its answer
            logger.warning("group commit: a batch of %d chargers' rows took %.0f ms from the event loop",
                           sum(len(groups) for groups in batch.values()), took * 1000)
        for schema, groups in batch.items():
            for cp_id, group in groups.items():
                error = errors.get((schema, cp_id))
                if group.future is not None and not group.future.done():
                    if error is None:
                        group.future.set_result(None)
                    else:
                        group.future.set_exception(error)
                if error is not None:
                    self._keep_unawaited_frames(schema, cp_id, group)

    def _keep_unawaited_frames(self, schema: str, charge_point_id: str, group: _Group) -> None:
        """A failed charger's frames go again with the next batch, a few times.

        Its meter values are not kept: they were not acknowledged, the charger sends them again.
        """
        group.attempts += 1
        if group.attempts >= MAX_ATTEMPTS or not group.frames:
            logger.error("%s: %d OCPP frames and %d meter values not stored (%s)", charge_point_id,
                         len(group.frames), len(group.meter_values), schema)
            return
        retry = self._pending[schema].setdefault(charge_point_id, _Group())
        retry.frames[:0] = group.frames
        retry.attempts = max(retry.attempts, group.attempts)
        self._start()

    async def flush(self) -> None:
        """Wait until everything queued so far has been written (or has failed)."""
        futures = [group.future for batch in (self._writing, self._pending) for groups in batch.values()
                   for group in groups.values() if group.future is not None]
        if futures:
            await asyncio.gather(*futures, return_exceptions=True)


def _storable(text: str) -> str:
    """PostgreSQL's text holds no NUL character: a frame that carries one (raw, or in a unique id that JSON
    decoded) is logged with JSON's escape for it, instead of failing its charger's batch again and again."""
    return text.replace("\x00", "\\u0000") if "\x00" in text else text


def _consume_exception(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _write_batch(batch: dict[str, dict[str, _Group]]) -> dict[tuple[str, str], Exception]:
    """Write each schema's rows in one transaction; when that fails, each charger's on its own.

    Returns the error of every (schema, charge point id) whose rows are not stored. The thread keeps
    its connection between batches (up to a hundred a second: no reconnect each time, whatever
    DATABASE_CONN_MAX_AGE says). Rows that failed on a connection-level error (the server restarted or
    dropped an idle connection) are tried once more, on a new connection if need be. After a failure that is
    not a bad row, the connection is closed: the next batch does not inherit its state.
    """
    started = time.monotonic()
    errors = _write_schemas(batch)
    took = time.monotonic() - started
    if took >= SLOW_BATCH_S:
        logger.warning("group commit: writing a batch of %d chargers' rows took %.0f ms in the database thread",
                       sum(len(groups) for groups in batch.values()), took * 1000)
    broken = {key for key, error in errors.items() if isinstance(error, OperationalError | InterfaceError)}
    if broken:
        logger.warning("group commit: %d chargers' rows hit a connection error; trying them again", len(broken))
        if not connection.is_usable():
            connection.close()
        retry: dict[str, dict[str, _Group]] = defaultdict(dict)
        for schema, cp_id in broken:
            retry[schema][cp_id] = batch[schema][cp_id]
        errors = {key: error for key, error in errors.items() if key not in broken} | _write_schemas(retry)
    if any(not isinstance(error, DataError | IntegrityError) for error in errors.values()):
        # Not a bad row: whatever the failure left on the connection (a session the server dropped, a search
        # path or transaction state nobody can vouch for) goes with it; the next batch starts on a new one.
        connection.close()
    return errors


def _write_schemas(batch: dict[str, dict[str, _Group]]) -> dict[tuple[str, str], Exception]:
    errors: dict[tuple[str, str], Exception] = {}
    for schema, groups in batch.items():
        try:
            _write_groups(schema, list(groups.values()))
            continue
        except Exception as error:
            if len(groups) == 1:
                logger.exception("%s: storing OCPP frames or meter values failed", schema)
                errors[(schema, next(iter(groups)))] = error
                continue
        for cp_id, group in groups.items():
            try:
                _write_groups(schema, [group])
            except Exception as error:
                logger.exception("%s/%s: storing OCPP frames or meter values failed", schema, cp_id)
                errors[(schema, cp_id)] = error
    return errors


def _write_groups(schema: str, groups: list[_Group]) -> None:
    frames = [frame for group in groups for frame in group.frames]
    stay_in_schema(schema)  # the thread's own connection: no SET search_path per batch of one building
    with transaction.atomic():
        if frames:
            copy_rows(OcppFrame, FRAME_COLUMNS, frames)
        meter_values_store_many([(group.charge_point_pk, group.meter_values) for group in groups
                                 if group.meter_values and group.charge_point_pk is not None])


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchWriter] = weakref.WeakKeyDictionary()


def writer() -> BatchWriter:
    loop = asyncio.get_running_loop()
    found = _writers.get(loop)
    if found is None:
        found = _writers[loop] = BatchWriter()
    return found
