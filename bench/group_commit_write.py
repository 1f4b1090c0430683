"""The group commit's write of one batch: COPY (apps/core/bulk.py, what the writer does) against the ORM's
bulk_create (what it did before 4024a65), CPU and wall time per batch.

Run bench/setup_bench.py first (any number of chargers), then, with the same environment:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/hoa_bench_2k REDIS_URL=redis://127.0.0.1:6379/8 \
    HOA_ENV=development .venv/bin/python bench/group_commit_write.py --frames 4 --values 6 --batches 300

Each batch is what the writer commits for a few chargers at once: ``--frames`` frames and ``--values`` meter
values, in one transaction of the bench building. The rows are deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")

import django

django.setup()

from django.db import transaction  # noqa: E402

from apps.charging.models import ChargePoint, MeterValue  # noqa: E402
from apps.charging.services import METER_VALUE_COLUMNS  # noqa: E402
from apps.core.bulk import copy_new_rows, copy_rows  # noqa: E402
from apps.core.tenants import all_condominiums, stay_in_schema  # noqa: E402
from apps.ocpp.framelog import FRAME_COLUMNS  # noqa: E402
from apps.ocpp.models import OcppFrame  # noqa: E402

RAW = ('[2,"123","MeterValues",{"connectorId":1,"transactionId":5,"meterValue":[{"timestamp":'
       '"2026-12-01T03:00:00Z","sampledValue":[{"value":"1000","measurand":"Energy.Active.Import.Register",'
       '"unit":"Wh"}]}]}]')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--values", type=int, default=6)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args()
    stay_in_schema(all_condominiums()[0].schema_name)
    cp_pk = ChargePoint.objects.order_by("pk").values_list("pk", flat=True).first()
    tag = f"GCW-{uuid.uuid4().hex[:8]}"
    start = datetime(2000, 1, 1, tzinfo=UTC)
    counter = iter(range(10**9))

    def batch() -> tuple[list[tuple], list[tuple]]:
        now = datetime.now(UTC)
        frames = [(tag, "in", 2, "MeterValues", str(k), RAW, now) for k in range(args.frames)]
        values = []
        for _ in range(args.values):
            n = next(counter)
            values.append((cp_pk, 1, None, 77, "Energy.Active.Import.Register", "", "Wh", "Sample.Periodic", tag[:16],
                           Decimal(n) / 1000, n, start + timedelta(seconds=n), now))
        return frames, values

    def orm() -> None:
        frames, values = batch()
        with transaction.atomic():
            OcppFrame.objects.bulk_create([OcppFrame(**dict(zip(FRAME_COLUMNS, f, strict=True))) for f in frames],
                                          batch_size=1000)
            MeterValue.objects.bulk_create([MeterValue(**dict(zip(METER_VALUE_COLUMNS, v, strict=True)))
                                            for v in values], ignore_conflicts=True, batch_size=1000)

    def copy() -> None:
        frames, values = batch()
        with transaction.atomic():
            copy_rows(OcppFrame, FRAME_COLUMNS, frames)
            copy_new_rows(MeterValue, METER_VALUE_COLUMNS, values)

    runs: list[tuple[str, Callable[[], None]]] = [("bulk_create", orm), ("COPY", copy)] * 2
    try:
        for name, write in runs:
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(args.batches):
                write()
            print(f"{name:12} {args.frames} frames + {args.values} values: "
                  f"{1000 * (time.process_time() - cpu) / args.batches:.2f} ms CPU, "
                  f"{1000 * (time.perf_counter() - wall) / args.batches:.2f} ms wall per batch", flush=True)
    finally:
        OcppFrame.objects.filter(charge_point_id=tag).delete()
        MeterValue.objects.filter(location=tag[:16]).delete()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
