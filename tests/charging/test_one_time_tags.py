"""One-time tags (a visitor's): Accepted at their own charger and connector only, until they expire, and only
for one StartTransaction; revoked ones are refused. Rule stated, then each way out of it tried."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from apps.charging import selectors, services
from apps.charging.models import OneTimeTag
from apps.charging.one_time_tags import one_time_tag_issue, one_time_tag_revoke
from apps.core.tenants import in_schema
from tests import factories


@pytest.fixture
def maple(db, world):
    with in_schema(world.maple.schema_name):
        yield world.maple


def test_a_one_time_tag_is_accepted_there_once_and_nowhere_else(maple):
    here = factories.charger(maple, f"OT-{uuid.uuid4().hex[:10].upper()}")
    there = factories.charger(maple, f"OT-{uuid.uuid4().hex[:10].upper()}")
    now = datetime.now(UTC)
    tag = one_time_tag_issue(charge_point_pk=here.pk, connector_number=1, expires_at=now + timedelta(minutes=5))
    assert tag.id_tag.startswith("V") and len(tag.id_tag) == 16

    def status(charger, connector=None):
        return selectors.authorize_id_tag(tag.id_tag.lower(), charge_point_pk=charger.pk,
                                          connector_number=connector).status

    assert status(here) == status(here, 1) == "Accepted"
    assert status(here, 2) == "Invalid"  # another connector of the charger
    assert status(there) == status(there, 1) == "Invalid"  # another charger

    def start(connector, minutes_ago):
        return services.session_start(charge_point_pk=here.pk, connector_number=connector, id_tag=tag.id_tag,
                                      meter_start=0, timestamp=now - timedelta(minutes=minutes_ago), received_at=now)

    first = start(1, 2)
    assert first.decision.status == "Accepted" and not first.retried
    used = OneTimeTag.objects.get(pk=tag.pk)
    assert used.used_at is not None and used.session_id == first.session_pk
    assert start(1, 2).decision.status == "Accepted" and start(1, 2).retried  # the same start, retried
    assert start(1, 1).decision.status == "Invalid"  # a second session with the tag
    assert status(here, 1) == "Invalid"
    assert not one_time_tag_revoke(id_tag=tag.id_tag)  # used: nothing to revoke


def test_expired_and_revoked_tags_are_refused(maple):
    charger = factories.charger(maple, f"OT-{uuid.uuid4().hex[:10].upper()}")
    now = datetime.now(UTC)
    old = one_time_tag_issue(charge_point_pk=charger.pk, connector_number=1, expires_at=now - timedelta(seconds=1))
    assert selectors.authorize_id_tag(old.id_tag, charge_point_pk=charger.pk).status == "Expired"
    revoked = one_time_tag_issue(charge_point_pk=charger.pk, connector_number=1, expires_at=now + timedelta(hours=1))
    assert one_time_tag_revoke(id_tag=revoked.id_tag)
    assert selectors.authorize_id_tag(revoked.id_tag, charge_point_pk=charger.pk).status == "Invalid"
    assert selectors.authorize_id_tag("VNOSUCHTAG", charge_point_pk=charger.pk).status == "Invalid"
