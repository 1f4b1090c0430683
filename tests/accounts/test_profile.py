"""A person's own profile: their name and language. The language they choose is the one the pages speak from then
on, whatever the browser asks for; a language the platform does not speak is refused with the reason. Nobody sees
anyone else's profile, and on a building's site only its people have one."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User

MAPLE = "maple-court.localhost"


def client_of(user, host: str = MAPLE) -> Client:
    client = Client(HTTP_HOST=host, HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_a_resident_chooses_spanish_and_the_pages_speak_it(world):
    client = client_of(world.maple_resident)
    page = client.get("/accounts/profile/")
    assert page.status_code == 200 and "alice@maple.test" in page.content.decode()
    assert "Log out" in client.get("/me/").content.decode()
    answer = client.post("/accounts/profile/", {"name": "Alice Martín", "preferred_language": "es"})
    assert answer.status_code == 302 and answer["Location"] == "/accounts/profile/"
    user = User.objects.get(pk=world.maple_resident.pk)
    assert (user.name, user.preferred_language) == ("Alice Martín", "es")
    home = client.get("/me/")  # the browser still asks for English
    assert "Mi carga" in home.content.decode() and home["Content-Language"] == "es"
    client.post("/accounts/profile/", {"name": "Alice", "preferred_language": "fr"})
    assert "Ma recharge" in client.get("/me/").content.decode()
    client.post("/accounts/profile/", {"name": "Alice", "preferred_language": ""})  # back to the browser's
    assert "My charging" in client.get("/me/").content.decode()


@pytest.mark.django_db
def test_a_language_the_platform_does_not_speak_is_refused_with_the_reason(world):
    client = client_of(world.maple_resident)
    answer = client.post("/accounts/profile/", {"name": "Alice", "preferred_language": "de"})
    assert answer.status_code == 400 and "de is not one of the available choices" in answer.content.decode()
    assert User.objects.get(pk=world.maple_resident.pk).preferred_language == ""


@pytest.mark.django_db
def test_people_of_other_buildings_get_nothing_and_strangers_log_in_first(world):
    for stranger in (world.oak_resident, world.harbor_manager):
        client = client_of(stranger)
        assert client.get("/accounts/profile/").status_code == 404
        assert client.post("/accounts/profile/", {"name": "X", "preferred_language": "fr"}).status_code == 404
        assert User.objects.get(pk=stranger.pk).preferred_language == ""
    # Their own profile on their own site, and on the company's site.
    assert client_of(world.oak_resident, "oak-tower.localhost").get("/accounts/profile/").status_code == 200
    assert client_of(world.harbor_manager, "localhost").get("/accounts/profile/").status_code == 200
    answer = Client(HTTP_HOST=MAPLE).get("/accounts/profile/")
    assert answer.status_code == 302 and "/accounts/login/" in answer["Location"]
