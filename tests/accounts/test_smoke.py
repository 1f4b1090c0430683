import pytest


@pytest.mark.django_db
def test_resident_sees_own_building_only(client, world):
    client.force_login(world.maple_resident)
    ok = client.get("/", HTTP_HOST="maple-court.localhost")
    assert ok.status_code == 200
    assert b"04A1B2C3D4" in ok.content
    assert client.get("/", HTTP_HOST="oak-tower.localhost").status_code == 404
