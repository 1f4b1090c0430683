"""Staleness alerts, and the raw readings' roll-up and retention (safe to run twice)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.alerts.models import Alert
from apps.core.tenants import in_schema
from apps.electrical import latest, readings, services
from apps.electrical.models import SiteMeterQuarter, SiteMeterReading

pytestmark = pytest.mark.django_db


def store(meter, *points: tuple[datetime, tuple[str, ...]]):
    checked = readings.Checked(tuple(readings.Reading(at, tuple(Decimal(v) for v in values)) for at, values in points))
    return services.site_readings_store(meter=meter, checked=checked, received_at=timezone.now())


def open_alerts():
    return list(Alert.objects.filter(kind=Alert.Kind.SITE_METER_STALE, resolved_at__isnull=True))


def test_a_silent_meter_raises_the_alert_and_readings_coming_back_resolve_it(world, maple_meter,
                                                                              django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    with in_schema(schema):
        now = timezone.now()
        with django_capture_on_commit_callbacks(execute=True):
            store(maple_meter.row, (now - timedelta(seconds=5), ("10", "10", "10")))
        assert services.site_meters_check_stale(schema_name=schema, now=now) == []
        assert open_alerts() == [] and not latest.site_meter_is_stale(schema, now)

        later = now + timedelta(seconds=30)  # 35 s of silence; the limit is 15 s
        assert latest.site_meter_is_stale(schema, later)
        assert services.site_meters_check_stale(schema_name=schema, now=later) == [maple_meter.key]
        (alert,) = open_alerts()
        assert alert.severity == Alert.Severity.CRITICAL and maple_meter.key in alert.message
        assert alert.details["meter"] == maple_meter.key
        services.site_meters_check_stale(schema_name=schema, now=later)  # again: still one alert
        assert len(open_alerts()) == 1

        # Readings come back: the alert is resolved as the fresh reading is committed.
        with django_capture_on_commit_callbacks(execute=True):
            store(maple_meter.row, (timezone.now(), ("12", "12", "12")))
        assert open_alerts() == []
        assert Alert.objects.filter(kind=Alert.Kind.SITE_METER_STALE, resolved_at__isnull=False).count() == 1


def test_the_check_alone_resolves_too_and_a_meter_never_heard_from_is_stale(world, maple_meter,
                                                                            django_capture_on_commit_callbacks):
    schema = world.maple.schema_name
    with in_schema(schema):
        now = timezone.now()
        assert services.site_meters_check_stale(schema_name=schema, now=now + timedelta(seconds=20)) == [
            maple_meter.key]
        assert "no reading yet" in open_alerts()[0].message
        # Redis loses the latest (a restart) after a reading was stored: the check puts it back from the database.
        with django_capture_on_commit_callbacks(execute=True):
            store(maple_meter.row, (now + timedelta(seconds=25), ("3", "3", "3")))
        latest.forget(schema)
        assert services.site_meters_check_stale(schema_name=schema, now=now + timedelta(seconds=30)) == []
        assert open_alerts() == []
        assert latest.site_load_latest(schema).reading.currents_a == (Decimal(3),) * 3


def test_roll_up_keeps_15_minute_peaks_and_means_and_purges_raw_readings_past_retention(world, maple_meter):
    schema = world.maple.schema_name
    now = datetime(2026, 11, 30, 1, 7, 30, tzinfo=UTC)
    with in_schema(schema):
        old_quarter = datetime(2026, 11, 10, 0, 0, tzinfo=UTC)  # 20 days ago
        store(maple_meter.row,
              (old_quarter + timedelta(minutes=1), ("10", "20", "30")),
              (old_quarter + timedelta(minutes=14, seconds=59), ("12.5", "20", "31")),
              (old_quarter + timedelta(minutes=15), ("50", "50", "50")),  # the next quarter
              (datetime(2026, 11, 30, 0, 50, tzinfo=UTC), ("1", "2", "3")),
              (datetime(2026, 11, 30, 0, 51, tzinfo=UTC), ("2", "2", "3")),
              (datetime(2026, 11, 30, 0, 52, tzinfo=UTC), ("2", "2", "3")),
              (datetime(2026, 11, 30, 1, 5, tzinfo=UTC), ("7", "7", "7")))  # the quarter under way: not yet
        first = services.site_readings_roll_up_and_purge(now=now, retention_days=14)
        assert first == services.Housekeeping(quarters_written=3, readings_purged=3)
        quarters = {q.period_start: q for q in SiteMeterQuarter.objects.filter(meter=maple_meter.row)}
        assert sorted(quarters) == [old_quarter, old_quarter + timedelta(minutes=15),
                                    datetime(2026, 11, 30, 0, 45, tzinfo=UTC)]
        q = quarters[old_quarter]
        assert (q.samples, q.peak_l1_a, q.mean_l1_a, q.peak_l3_a, q.mean_l3_a) == (
            2, Decimal("12.5"), Decimal("11.3"), Decimal(31), Decimal("30.5"))  # mean 11.25 rounded up
        recent = quarters[datetime(2026, 11, 30, 0, 45, tzinfo=UTC)]
        assert (recent.samples, recent.peak_l1_a, recent.mean_l1_a) == (3, Decimal(2), Decimal("1.7"))
        assert SiteMeterReading.objects.filter(meter=maple_meter.row).count() == 4

        # Twice: nothing changes.
        assert services.site_readings_roll_up_and_purge(now=now, retention_days=14) == services.Housekeeping(0, 0)
        # A late reading in a kept quarter: that quarter alone is rewritten.
        store(maple_meter.row, (datetime(2026, 11, 30, 0, 59, tzinfo=UTC), ("9", "2", "3")))
        assert services.site_readings_roll_up_and_purge(now=now, retention_days=14) == services.Housekeeping(1, 0)
        recent = SiteMeterQuarter.objects.get(meter=maple_meter.row, period_start=datetime(2026, 11, 30, 0, 45,
                                                                                             tzinfo=UTC))
        assert (recent.samples, recent.peak_l1_a) == (4, Decimal(9))


def test_the_beat_tasks_walk_every_building(world, maple_meter, make_api_meter):
    from apps.electrical import tasks

    harbor_meter = make_api_meter(world.harbor_view)
    with in_schema(world.harbor_view.schema_name):
        store(harbor_meter.row, (timezone.now() - timedelta(hours=1), ("4", "4", "4")))
    with in_schema(world.maple.schema_name):
        type(maple_meter.row).objects.filter(pk=maple_meter.row.pk).update(
            created_at=timezone.now() - timedelta(minutes=5))
    # Maple's meter never reported since it was commissioned 5 minutes ago, Harbor's an hour ago: both stale, each alert in its own building.
    assert tasks.check_site_meters() == 2
    for schema, key in ((world.maple.schema_name, maple_meter.key), (world.harbor_view.schema_name,
                                                                    harbor_meter.key)):
        with in_schema(schema):
            (alert,) = open_alerts()
            assert alert.details["meter"] == key
    with in_schema(world.oak.schema_name):
        assert open_alerts() == []
    assert tasks.roll_up_site_readings() == {"quarters_written": 1, "readings_purged": 0}
    assert tasks.roll_up_site_readings() == {"quarters_written": 0, "readings_purged": 0}
