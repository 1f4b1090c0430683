"""Who sees what, on every page that exists. A user of another company or building gets nothing."""

import re

import pytest
from django.core import mail

from apps.accounts.models import User

PUBLIC = "localhost"
MAPLE = "maple-court.localhost"
OAK = "oak-tower.localhost"
HARBOR = "harbor-view.localhost"
TENANT_PAGES = ["/"]


def get(client, host, path="/"):
    return client.get(path, HTTP_HOST=host)


@pytest.mark.django_db
@pytest.mark.parametrize("host", [PUBLIC, MAPLE, OAK, HARBOR])
def test_anonymous_is_sent_to_login(client, world, host):
    response = get(client, host)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert get(client, host, "/accounts/login/").status_code == 200


@pytest.mark.django_db
def test_unknown_host_shows_the_company_site_without_data(client, world):
    client.force_login(world.maple_resident)
    response = get(client, "nowhere.localhost")
    assert response.status_code == 200
    assert b"04A1B2C3D4" not in response.content


@pytest.mark.django_db
def test_manager_sees_every_building_of_the_company_and_nothing_else(client, world):
    client.force_login(world.acme_manager)
    home = get(client, PUBLIC)
    assert home.status_code == 200
    text = home.content.decode()
    assert "Maple Court" in text and "Oak Tower" in text
    assert "Harbor View" not in text
    assert 'href="/go/maple-court/"' in text and 'href="/go/harbor-view/"' not in text
    maple = get(client, MAPLE)
    assert maple.status_code == 200
    assert b"TEST-MAPLE-1" in maple.content and b'id="chargers"' in maple.content
    assert get(client, OAK).status_code == 200
    harbor = get(client, HARBOR)
    assert harbor.status_code == 404
    assert b"TEST-HARBOR-1" not in harbor.content


@pytest.mark.django_db
def test_manager_of_another_company_gets_nothing_of_acme(client, world):
    client.force_login(world.harbor_manager)
    home = get(client, PUBLIC).content.decode()
    assert "Harbor View" in home and "Maple Court" not in home and "Oak Tower" not in home
    for host in (MAPLE, OAK):
        for path in TENANT_PAGES:
            response = get(client, host, path)
            assert response.status_code == 404
            assert b"TEST-MAPLE-1" not in response.content
    assert b"TEST-HARBOR-1" in get(client, HARBOR).content


@pytest.mark.django_db
def test_board_member_sees_the_building_read_only(client, world):
    client.force_login(world.maple_board)
    page = get(client, MAPLE)
    assert page.status_code == 200
    assert b'id="chargers"' in page.content and b'id="units"' in page.content
    assert get(client, OAK).status_code == 404
    assert get(client, HARBOR).status_code == 404
    home = get(client, PUBLIC).content.decode()
    assert "Maple Court" in home and "Oak Tower" not in home


@pytest.mark.django_db
def test_resident_sees_own_unit_and_cards_only(client, world):
    client.force_login(world.maple_resident)
    page = get(client, MAPLE)
    assert page.status_code == 200
    text = page.content.decode()
    assert 'id="residence-101"' in text and "04A1B2C3D4" in text
    assert 'id="chargers"' not in text and 'id="units"' not in text  # the building overview is for board and managers
    for host in (OAK, HARBOR):
        response = get(client, host)
        assert response.status_code == 404
        assert b"0B0B0B0B" not in response.content and b"0C0C0C0C" not in response.content
    home = get(client, PUBLIC).content.decode()
    assert "Maple Court" in home and "Oak Tower" not in home and "Harbor" not in home


@pytest.mark.django_db
def test_admin_site_is_for_platform_staff_only(client, world):
    client.force_login(world.acme_manager)
    response = get(client, PUBLIC, "/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert get(client, MAPLE, "/admin/").status_code == 404  # not routed on a building's host


@pytest.mark.django_db
def test_login_with_email_and_password(client, world):
    response = client.post(
        "/accounts/login/", {"username": "ALICE@maple.test", "password": "correct-horse-battery"}, HTTP_HOST=MAPLE
    )
    assert response.status_code == 302 and response["Location"] == "/"
    assert b"04A1B2C3D4" in get(client, MAPLE).content
    client.post("/accounts/logout/", HTTP_HOST=MAPLE)
    assert get(client, MAPLE).status_code == 302


@pytest.mark.django_db
def test_repeated_failures_lock_the_login(client, world, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        failed = client.post("/accounts/login/", {"username": "alice@maple.test", "password": "wrong"}, HTTP_HOST=MAPLE)
        assert failed.status_code == 200 and b"correct" in failed.content.lower()
    locked = client.post("/accounts/login/", {"username": "alice@maple.test", "password": "wrong"}, HTTP_HOST=MAPLE)
    assert locked.status_code == 429
    assert b"Too many failed log-in attempts" in locked.content
    # While locked, even the right password is refused.
    right = client.post(
        "/accounts/login/", {"username": "alice@maple.test", "password": "correct-horse-battery"}, HTTP_HOST=MAPLE
    )
    assert right.status_code == 429
    assert get(client, MAPLE).status_code == 302


@pytest.mark.django_db
def test_password_reset_by_email(client, world):
    response = client.post("/accounts/password-reset/", {"email": "olga@oak.test"}, HTTP_HOST=OAK)
    assert response.status_code == 302
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["olga@oak.test"]
    link = re.search(r"http://oak-tower\.localhost(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    form = client.get(link, HTTP_HOST=OAK, follow=True)
    assert form.status_code == 200 and b"new_password1" in form.content
    done = client.post(
        form.redirect_chain[-1][0],
        {"new_password1": "a-fresh-long-passphrase", "new_password2": "a-fresh-long-passphrase"},
        HTTP_HOST=OAK,
    )
    assert done.status_code == 302
    login = client.post(
        "/accounts/login/", {"username": "olga@oak.test", "password": "a-fresh-long-passphrase"}, HTTP_HOST=OAK
    )
    assert login.status_code == 302
    # An unknown address gets the same answer and no e-mail.
    client.post("/accounts/password-reset/", {"email": "nobody@oak.test"}, HTTP_HOST=OAK)
    assert len(mail.outbox) == 1


@pytest.mark.django_db
def test_healthz(client, world):
    assert get(client, PUBLIC, "/healthz").json() == {"status": "ok"}


@pytest.mark.django_db
def test_login_carries_over_to_a_buildings_site_once(client, world):
    from django.test import Client

    client.force_login(world.acme_manager)
    response = get(client, PUBLIC, "/go/maple-court/")
    assert response.status_code == 302
    target = response["Location"]
    assert target.startswith("http://maple-court.localhost/accounts/handoff/?ticket=")
    path = target.removeprefix("http://maple-court.localhost")
    building = Client()
    landed = building.get(path, HTTP_HOST=MAPLE)
    assert landed.status_code == 302 and landed["Location"] == "/"
    assert b"TEST-MAPLE-1" in get(building, MAPLE).content
    # Single use: the same ticket again, in another browser, leads to the login page.
    again = Client().get(path, HTTP_HOST=MAPLE)
    assert again.status_code == 302 and again["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_ticket_works_only_for_its_building_and_its_person(client, world):
    from django.test import Client

    client.force_login(world.acme_manager)
    path = get(client, PUBLIC, "/go/maple-court/")["Location"].removeprefix("http://maple-court.localhost")
    elsewhere = Client().get(path, HTTP_HOST=OAK)  # a maple ticket presented to oak-tower
    assert elsewhere.status_code == 302 and elsewhere["Location"].startswith("/accounts/login/")
    forged = Client().get(path[:-3] + "xyz", HTTP_HOST=MAPLE)
    assert forged.status_code == 302 and forged["Location"].startswith("/accounts/login/")
    # Another company's manager cannot ask for a ticket to Acme's buildings.
    client.force_login(world.harbor_manager)
    assert get(client, PUBLIC, "/go/maple-court/").status_code == 404
    assert get(client, PUBLIC, "/go/oak-tower/").status_code == 404
    assert get(client, PUBLIC, "/go/harbor-view/").status_code == 302
    # A resident of one building cannot ask for another.
    client.force_login(world.maple_resident)
    assert get(client, PUBLIC, "/go/oak-tower/").status_code == 404


@pytest.mark.django_db
def test_alerts_and_refused_connections_reach_only_that_buildings_managers(client, world):
    from django.utils import timezone

    from apps.alerts.services import alert_raise
    from apps.core.tenants import in_schema
    from apps.tenancy.models import ConnectionAttempt

    with in_schema(world.maple.schema_name):
        alert_raise(kind="connector_faulted", message="GroundFailure on connector 2", charge_point_id="TEST-MAPLE-1",
                    connector_number=2)
    now = timezone.now()
    ConnectionAttempt.objects.create(charge_point_id="TEST-MAPLE-1", remote_address="192.0.2.7",
                                     reason="wrong-credentials", condominium=world.maple, first_at=now, last_at=now)
    client.force_login(world.acme_manager)
    page = get(client, MAPLE).content.decode()
    assert "GroundFailure on connector 2" in page and "192.0.2.7" in page
    oak = get(client, OAK).content.decode()
    assert "GroundFailure" not in oak and "192.0.2.7" not in oak
    client.force_login(world.maple_board)
    assert "GroundFailure on connector 2" in get(client, MAPLE).content.decode()
    for outsider, host in ((world.harbor_manager, MAPLE), (world.maple_resident, MAPLE), (world.harbor_manager, HARBOR)):
        client.force_login(outsider)
        text = get(client, host).content.decode()
        assert "GroundFailure" not in text and "192.0.2.7" not in text


@pytest.mark.django_db
def test_charger_commands_only_for_the_companys_managers(client, world):
    url = "/api/ocpp/chargers/TEST-MAPLE-1/commands/Reset"
    body = {"data": '{"type": "Soft"}', "content_type": "application/json", "HTTP_HOST": PUBLIC}
    assert client.post(url, **body).status_code == 302  # anonymous: to the login page
    for outsider in (world.harbor_manager, world.maple_board, world.maple_resident, world.oak_resident):
        client.force_login(outsider)
        refused = client.post(url, **body)
        assert refused.status_code == 404, outsider
        assert b"TEST-MAPLE-1" not in refused.content
    # Platform staff (the admin site) are not managers of the company: nothing, like any stranger.
    staff = User.objects.create_user("staff@platform.test", "x", is_staff=True)
    client.force_login(staff)
    refused = client.post(url, **body)
    assert refused.status_code == 404 and b"TEST-MAPLE-1" not in refused.content
    # A superuser and the company's manager pass the check; the charger is not connected in this test.
    for allowed in (User.objects.create_superuser("root@platform.test", "x"), world.acme_manager):
        client.force_login(allowed)
        answer = client.post(url + "?timeout=1", **body)
        assert answer.status_code == 409 and answer.json() == {"error": "charger not connected"}
    assert client.post("/api/ocpp/chargers/NO-SUCH-CHARGER/commands/Reset", **body).status_code == 404
    # Bad requests say what is wrong.
    bad_json = client.post(url, data="{not json", content_type="application/json", HTTP_HOST=PUBLIC)
    assert bad_json.status_code == 400 and "JSON object" in bad_json.json()["error"]
    for timeout in ("nan", "0", "999", "soon"):
        bad_timeout = client.post(f"{url}?timeout={timeout}", **body)
        assert bad_timeout.status_code == 400 and "timeout" in bad_timeout.json()["error"]
    not_ours = client.post("/api/ocpp/chargers/TEST-MAPLE-1/commands/BootNotification", **body)
    assert not_ours.status_code == 400 and not_ours.json()["error"] == "NotSupported"


@pytest.mark.django_db
def test_building_page_shows_live_charging_from_the_live_state(client, world):
    from asgiref.sync import async_to_sync

    from apps.ocpp import live

    async_to_sync(live.update)(
        "TEST-MAPLE-1", {"status:1": "Charging", "power_w:1": "7360", "session_energy_wh:1": "2415"}
    )
    try:
        client.force_login(world.acme_manager)
        page = get(client, MAPLE).content.decode()
        assert "#1 (P01) Charging · 7.4 kW · 2.42 kWh" in page
        client.force_login(world.harbor_manager)
        assert "7.4 kW" not in get(client, HARBOR).content.decode()
    finally:
        live._sync().delete(live.key("TEST-MAPLE-1"))
