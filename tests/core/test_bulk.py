"""Rows written with COPY arrive exactly as given, in the building whose schema is in use, and only once."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction

from apps.charging.models import ChargePoint, MeterValue
from apps.charging.services import METER_VALUE_COLUMNS
from apps.core.bulk import copy_new_rows, copy_rows
from apps.core.tenants import in_schema
from apps.ocpp.framelog import FRAME_COLUMNS
from apps.ocpp.models import OcppFrame

pytestmark = pytest.mark.usefixtures("committed")

AT = datetime(2026, 12, 1, 3, 4, 5, 678901, tzinfo=UTC)


def _frame(cp_id: str, raw: str, unique_id: str = "1") -> tuple:
    return (cp_id, "in", 2, "MeterValues", unique_id, raw, AT)


def _value(cp_pk: int, wh: int, *, phase: str = "") -> tuple:
    """A sample whose time tells it apart (the unique constraint does not include the value)."""
    return (cp_pk, 1, None, 77, "Energy.Active.Import.Register", phase, "Wh", "Sample.Periodic", "",
            Decimal(wh) / 1000, wh, _at(wh), AT)


def _at(wh: int) -> datetime:
    return AT + timedelta(seconds=wh)


def _staged() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_temp.staging_charging_metervalue")
        return cursor.fetchone()[0]


def test_frames_arrive_verbatim_in_the_building_in_use_only(world):
    cp_id = f"BULK-{uuid.uuid4().hex[:8]}"
    # What COPY's text format escapes (tab, newline, backslash, its own \N) and what it does not need to.
    raws = ['[2,"1","Heartbeat",{}]', 'a\tb\nc\\d', "\\N", "", "é ✓ 漢字 \U0001f50c"]
    with in_schema(world.maple.schema_name):
        copy_rows(OcppFrame, FRAME_COLUMNS, [_frame(cp_id, raw, str(n)) for n, raw in enumerate(raws)])
        stored = list(OcppFrame.objects.filter(charge_point_id=cp_id).order_by("unique_id")
                      .values_list("raw", "received_at", "message_type", "direction", "action"))
    assert [row[0] for row in stored] == raws
    assert {row[1:] for row in stored} == {(AT, 2, "in", "MeterValues")}
    for other in (world.harbor_view, world.oak):
        with in_schema(other.schema_name):
            assert not OcppFrame.objects.filter(charge_point_id=cp_id).exists()


def test_a_row_the_table_refuses_fails_the_whole_copy_with_djangos_error(world):
    cp_id = f"BULK-{uuid.uuid4().hex[:8]}"
    with in_schema(world.maple.schema_name):
        with pytest.raises(DataError, match="NUL"):
            copy_rows(OcppFrame, FRAME_COLUMNS, [_frame(cp_id, "fine"), _frame(cp_id, "nul \x00 inside")])
        assert not OcppFrame.objects.filter(charge_point_id=cp_id).exists()


def test_new_values_are_stored_exactly_and_a_resent_one_once(world):
    with in_schema(world.maple.schema_name):
        cp = ChargePoint.objects.order_by("pk").first()
        base = 10_000_000 + uuid.uuid4().int % 1_000_000 * 10  # its own samples
        first = [_value(cp.pk, base), _value(cp.pk, base + 1, phase="L1")]
        assert copy_new_rows(MeterValue, METER_VALUE_COLUMNS, first) == 2
        # Sent again after a reconnect, with one new value: only the new one counts.
        assert copy_new_rows(MeterValue, METER_VALUE_COLUMNS, [*first, _value(cp.pk, base + 2)]) == 1
        stored = list(MeterValue.objects.filter(charge_point=cp, normalized__gte=base, normalized__lte=base + 2)
                      .order_by("normalized").values_list("normalized", "value", "phase", "session_id",
                                                          "sampled_at", "received_at", "location"))
        assert stored == [(base, Decimal(base) / 1000, "", None, _at(base), AT, ""),
                          (base + 1, Decimal(base + 1) / 1000, "L1", None, _at(base + 1), AT, ""),
                          (base + 2, Decimal(base + 2) / 1000, "", None, _at(base + 2), AT, "")]
        assert _staged() == 0
    with in_schema(world.harbor_view.schema_name):
        assert not MeterValue.objects.filter(normalized__gte=base, normalized__lte=base + 2).exists()


def test_the_staging_table_is_left_empty_by_a_failure_and_serves_every_building(world):
    with in_schema(world.maple.schema_name):
        cp = ChargePoint.objects.order_by("pk").first()
        base = 20_000_000 + uuid.uuid4().int % 1_000_000 * 10
        with pytest.raises(DataError), transaction.atomic():
            copy_new_rows(MeterValue, METER_VALUE_COLUMNS, [_value(cp.pk, base), (*_value(cp.pk, base + 1)[:4],
                                                           "bad\x00measurand", *_value(cp.pk, base + 1)[5:])])
        assert _staged() == 0 and not MeterValue.objects.filter(charge_point=cp, normalized=base).exists()
        # Two calls in one transaction: the second starts from an empty staging table.
        with transaction.atomic():
            assert copy_new_rows(MeterValue, METER_VALUE_COLUMNS, [_value(cp.pk, base)]) == 1
            assert copy_new_rows(MeterValue, METER_VALUE_COLUMNS, [_value(cp.pk, base), _value(cp.pk, base + 1)]) == 1
    with in_schema(world.harbor_view.schema_name):
        other = ChargePoint.objects.order_by("pk").first()
        assert copy_new_rows(MeterValue, METER_VALUE_COLUMNS, [_value(other.pk, base)]) == 1
        assert MeterValue.objects.filter(charge_point=other, normalized=base).count() == 1
    with in_schema(world.maple.schema_name):
        assert MeterValue.objects.filter(charge_point=cp, normalized__in=[base, base + 1]).count() == 2
