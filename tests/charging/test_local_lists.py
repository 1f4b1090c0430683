"""Asking for a local-list sync: charging (and the card changes below it) queue the OCPP app's task, once the
change commits, without importing it; a broker that is down fails neither the change nor the request."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from apps.buildings import services as buildings
from apps.buildings.models import IdTag, Resident
from apps.charging import local_lists
from apps.core.tenants import in_schema
from apps.ocpp import tasks
from tests import factories


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str, list[int] | None]]:
    """The syncs asked for, in place of the Celery task the OCPP app names at start-up."""
    assert local_lists._sync_queue == tasks.sync_local_lists.delay
    calls: list[tuple[str, list[int] | None]] = []
    monkeypatch.setattr(local_lists, "_sync_queue", lambda schema, pks: calls.append((schema, pks)))
    return calls


@pytest.fixture
def resident_pk(db, world) -> int:
    tag = f"Q{uuid.uuid4().hex[:12].upper()}"
    factories.resident(world.maple, f"{tag.lower()}@maple.test", tag[:8], id_tags=(tag,))
    with in_schema(world.maple.schema_name):
        return Resident.objects.get(id_tags__id_tag=tag).pk


def test_a_card_change_queues_a_sync_of_the_building_once_it_commits(maple_schema, resident_pk, queued,
                                                                     django_capture_on_commit_callbacks):
    with in_schema(maple_schema), django_capture_on_commit_callbacks(execute=True):
        buildings.id_tag_add(resident_id=resident_pk, id_tag="q-new-card")
        assert queued == []  # not before the commit
    assert queued == [(maple_schema, None)]


def test_a_charger_sync_names_the_charger(maple_schema, db, queued, django_capture_on_commit_callbacks):
    with in_schema(maple_schema), django_capture_on_commit_callbacks(execute=True):
        local_lists.local_list_request_sync(charge_point_pks=[7, 8])
    assert queued == [(maple_schema, [7, 8])]


def test_a_broker_that_is_down_fails_neither_the_change_nor_the_request(maple_schema, resident_pk, monkeypatch,
                                                                       django_capture_on_commit_callbacks):
    def broker_down(schema: str, pks: list[int] | None) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(local_lists, "_sync_queue", broker_down)
    with in_schema(maple_schema), django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        buildings.id_tag_add(resident_id=resident_pk, id_tag="q-kept-card")
    assert len(callbacks) == 1
    with in_schema(maple_schema):
        assert IdTag.objects.filter(id_tag="Q-KEPT-CARD").exists()
