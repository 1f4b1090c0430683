"""Autopay from the resident's page: on with one of the household's saved cards, off (the card stays saved, so it
can be turned on again without entering it). Another household's card, another building's resident: 404."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

from apps.buildings.models import Resident
from apps.core.tenants import in_schema
from apps.payments.models import SavedPaymentMethod
from tests import factories

HOST = "maple-court.localhost"


def client_of(user, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


def household_with_card(world, default: bool) -> tuple[object, Resident, SavedPaymentMethod]:
    n = uuid.uuid4().hex[:6]
    user = factories.resident(world.maple, f"a{n}@maple.test", f"A{n}")
    with in_schema(world.maple.schema_name):
        resident = Resident.objects.get(user=user)
        card = SavedPaymentMethod.objects.create(resident=resident, payment_method_id=f"pm_{n}", brand="visa",
                                                 last4="4242", is_default=default)
    return user, resident, card


def is_default(world, card: SavedPaymentMethod) -> bool:
    with in_schema(world.maple.schema_name):
        return SavedPaymentMethod.objects.get(pk=card.pk).is_default


@pytest.mark.django_db
def test_a_resident_turns_autopay_off_and_on_again_with_the_saved_card(world):
    user, resident, card = household_with_card(world, default=True)
    phone = client_of(user)
    home = phone.get("/me/").content.decode()
    assert "Autopay is on" in home and f'id="autopay-off-{resident.pk}"' in home
    assert phone.post(f"/me/autopay/{resident.pk}/", {"card": "off"}).status_code == 302
    assert is_default(world, card) is False
    home = phone.get("/me/").content.decode()
    assert "Autopay is off." in home and f'id="autopay-on-{card.pk}"' in home
    assert phone.post(f"/me/autopay/{resident.pk}/", {"card": str(card.pk)}).status_code == 302
    assert is_default(world, card) is True
    answer = phone.post(f"/me/autopay/{resident.pk}/", {"card": "maybe"}, follow=True)
    assert "Choose a saved card" in answer.content.decode() and is_default(world, card) is True


@pytest.mark.django_db
def test_nobody_else_changes_a_households_autopay(world):
    _, resident, card = household_with_card(world, default=True)
    other_user, other_resident, other_card = household_with_card(world, default=False)
    # Another household: not their household, and not their card.
    neighbour = client_of(other_user)
    assert neighbour.post(f"/me/autopay/{resident.pk}/", {"card": "off"}).status_code == 404
    assert neighbour.post(f"/me/autopay/{other_resident.pk}/", {"card": str(card.pk)}).status_code == 404
    assert is_default(world, card) is True and is_default(world, other_card) is False
    for outsider in (world.oak_resident, world.harbor_manager, world.acme_manager):
        assert client_of(outsider).post(f"/me/autopay/{resident.pk}/", {"card": "off"}).status_code == 404
    assert is_default(world, card) is True
    assert Client(HTTP_HOST=HOST).post(f"/me/autopay/{resident.pk}/", {"card": "off"}).status_code == 302
    assert is_default(world, card) is True
