"""Batched, append-only writes of OCPP frames and meter values.

One writer per event loop (a daphne process has one). Consumers hand it rows;
it inserts them with one bulk INSERT per schema and table every FLUSH_DELAY
seconds, so thousands of chargers do not cost one query per message. A failed
write keeps the rows and tries again; a consumer that closes awaits ``flush``
so that nothing it received is left behind.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import defaultdict
from datetime import datetime

from channels.db import database_sync_to_async
from django.db import transaction
from django_tenants.utils import schema_context

from apps.charging.services import meter_values_store
from apps.ocpp.models import OcppFrame

logger = logging.getLogger(__name__)

FLUSH_DELAY = 0.2
RETRY_DELAY = 2.0


class BatchWriter:
    def __init__(self) -> None:
        self._frames: dict[str, list[OcppFrame]] = defaultdict(list)
        self._meter_values: dict[tuple[str, int], list[dict]] = defaultdict(list)
        self._lock = asyncio.Lock()
        self._scheduled: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    def add_frame(self, schema: str, *, charge_point_id: str, direction: str, raw: str, at: datetime,
                  message_type: int | None, action: str, unique_id: str) -> None:
        self._frames[schema].append(OcppFrame(
            charge_point_id=charge_point_id, direction=direction, raw=raw, received_at=at,
            message_type=message_type, action=action[:64], unique_id=unique_id[:64],
        ))
        self._schedule()

    def add_meter_values(self, schema: str, charge_point_pk: int, rows: list[dict]) -> None:
        if rows:
            self._meter_values[(schema, charge_point_pk)].extend(rows)
            self._schedule()

    def _schedule(self, delay: float = FLUSH_DELAY) -> None:
        if self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self._scheduled = None
        task = asyncio.ensure_future(self.flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def flush(self) -> None:
        async with self._lock:
            frames, self._frames = self._frames, defaultdict(list)
            meter_values, self._meter_values = self._meter_values, defaultdict(list)
            if not frames and not meter_values:
                return
            try:
                await database_sync_to_async(_write)(frames, meter_values)
            except Exception:
                logger.exception("writing OCPP frames or meter values failed; retrying")
                for schema, rows in frames.items():
                    for row in rows:
                        row.pk = None
                    self._frames[schema][:0] = rows
                for k, rows in meter_values.items():
                    self._meter_values[k][:0] = rows
                self._schedule(RETRY_DELAY)
                raise


def _write(frames: dict[str, list[OcppFrame]], meter_values: dict[tuple[str, int], list[dict]]) -> None:
    """Insert the batches, removing each from its dict once stored (what is left failed)."""
    for schema in list(frames):
        with schema_context(schema), transaction.atomic():
            OcppFrame.objects.bulk_create(frames[schema], batch_size=500)
        del frames[schema]
    for schema, charge_point_pk in list(meter_values):
        with schema_context(schema), transaction.atomic():
            meter_values_store(charge_point_pk, meter_values[(schema, charge_point_pk)])
        del meter_values[(schema, charge_point_pk)]


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BatchWriter] = weakref.WeakKeyDictionary()


def writer() -> BatchWriter:
    loop = asyncio.get_running_loop()
    found = _writers.get(loop)
    if found is None:
        found = _writers[loop] = BatchWriter()
    return found
