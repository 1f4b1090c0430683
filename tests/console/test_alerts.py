"""The alerts inbox: managers acknowledge and resolve (saying what was done), board members read, nobody else
sees anything; new alerts are mailed once to the managers whose preferences ask for their kind."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.alerts import services
from apps.alerts.models import Alert
from apps.console.tasks import email_new_alerts_now
from apps.core.tenants import in_schema

HOST = "maple-court.localhost"


def client_of(user, host: str = HOST) -> Client:
    client = Client(HTTP_HOST=host)
    client.force_login(user)
    return client


def raise_in(world, kind=Alert.Kind.CHARGER_OFFLINE, cp="TEST-MAPLE-1", message="TEST-MAPLE-1 is offline") -> Alert:
    with in_schema(world.maple.schema_name):
        return services.alert_raise(kind=kind, charge_point_id=cp, message=message)


def alert(world, pk: int) -> Alert:
    with in_schema(world.maple.schema_name):
        return Alert.objects.get(pk=pk)


@pytest.mark.django_db
def test_a_manager_acknowledges_then_resolves_with_a_note_and_the_board_reads_it(world):
    offline = raise_in(world)
    manager = client_of(world.acme_manager)
    page = manager.get("/alerts/").content.decode()
    assert f'data-alert="{offline.pk}"' in page and f'id="ack-{offline.pk}"' in page
    assert manager.post(f"/alerts/{offline.pk}/acknowledge").status_code == 302
    seen = alert(world, offline.pk)
    assert seen.acknowledged_by == "manager@acme.test" and seen.acknowledged_at and seen.resolved_at is None
    assert f'data-alert="{offline.pk}"' not in manager.get("/alerts/").content.decode()  # no longer new
    assert f'data-alert="{offline.pk}"' in manager.get("/alerts/?state=acknowledged").content.decode()
    refused = manager.post(f"/alerts/{offline.pk}/resolve", {"note": "  "})
    assert refused.status_code == 400 and "a note is required" in refused.content.decode()
    assert alert(world, offline.pk).resolved_at is None
    assert manager.post(f"/alerts/{offline.pk}/resolve", {"note": "Breaker reset"}).status_code == 302
    done = alert(world, offline.pk)
    assert (done.resolved_by, done.resolution_note) == ("manager@acme.test", "Breaker reset") and done.resolved_at
    again = manager.post(f"/alerts/{offline.pk}/resolve", {"note": "twice"})
    assert again.status_code == 400 and alert(world, offline.pk).resolution_note == "Breaker reset"
    # Should it go offline again, a new alert opens; the closed one keeps its history.
    assert raise_in(world).pk != offline.pk
    board = client_of(world.maple_board)
    history = board.get("/alerts/?state=resolved").content.decode()
    assert "Breaker reset" in history and "ack-" not in history and "resolve-" not in history
    assert board.post(f"/alerts/{offline.pk}/acknowledge").status_code == 404
    assert board.get("/alerts/preferences").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["maple_resident", "oak_resident", "harbor_manager"])
def test_residents_and_people_of_other_buildings_get_nothing(world, who):
    offline = raise_in(world)
    client = client_of(getattr(world, who))
    assert client.get("/alerts/").status_code == 404
    assert client.post(f"/alerts/{offline.pk}/acknowledge").status_code == 404
    assert client.post(f"/alerts/{offline.pk}/resolve", {"note": "x"}).status_code == 404
    assert client.post("/alerts/preferences", {"email": ["charger_offline"]}).status_code == 404
    assert alert(world, offline.pk).acknowledged_at is None and alert(world, offline.pk).resolved_at is None
    assert Client(HTTP_HOST=HOST).get("/alerts/").status_code == 302  # to the login


@pytest.mark.django_db
def test_new_alerts_are_mailed_once_to_the_managers_who_want_their_kind(world, mailoutbox):
    offline = raise_in(world)
    assert email_new_alerts_now() == 1
    [mail] = mailoutbox
    assert mail.to == ["manager@acme.test"] and "Maple Court" in mail.subject and "Charger offline" in mail.subject
    assert "TEST-MAPLE-1 is offline" in mail.body and f"http://{HOST}:" in mail.body and "/alerts/" in mail.body
    raise_in(world)  # seen again: the same alert, already mailed
    assert email_new_alerts_now() == 0 and len(mailoutbox) == 1
    assert alert(world, offline.pk).emailed_at is not None
    # A held session waits for the inbox unless the manager asks for it; they do, and turn off chargers offline.
    raise_in(world, kind=Alert.Kind.SESSION_REVIEW, cp="", message="session 7 needs review")
    assert email_new_alerts_now() == 0
    manager = client_of(world.acme_manager)
    assert manager.post("/alerts/preferences", {"email": ["session_review"]}).status_code == 302
    with in_schema(world.maple.schema_name):
        chosen = services.email_preferences(world.acme_manager.pk)
        assert chosen["session_review"] is True and chosen["charger_offline"] is False
    raise_in(world, kind=Alert.Kind.SESSION_REVIEW, cp="", message="session 8 needs review")  # same subject
    raise_in(world, kind=Alert.Kind.CHARGER_OFFLINE, cp="TEST-MAPLE-2", message="TEST-MAPLE-2 is offline")
    # The review alert had been handled (mailed to nobody, then); chargers offline are no longer wanted.
    assert email_new_alerts_now() == 0
    with in_schema(world.maple.schema_name):
        services.alert_raise(kind=Alert.Kind.SESSION_REVIEW, charge_point_id="X", message="session 9 needs review")
    assert email_new_alerts_now() == 1 and "session 9" in mailoutbox[-1].body
    assert "preferences" in manager.get("/alerts/preferences").content.decode()


@pytest.mark.django_db
def test_an_alert_older_than_the_window_is_not_mailed_late_and_a_failed_send_is_tried_again(world, mailoutbox,
                                                                                        settings):
    old = raise_in(world)
    with in_schema(world.maple.schema_name):
        Alert.objects.filter(pk=old.pk).update(raised_at=timezone.now() - timedelta(hours=7))
    assert email_new_alerts_now() == 0 and mailoutbox == []
    fresh = raise_in(world, cp="TEST-MAPLE-9", message="TEST-MAPLE-9 is offline")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 9, 2  # nothing listens there
    assert email_new_alerts_now() == 0  # logged; the claim is given back
    assert alert(world, fresh.pk).emailed_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert email_new_alerts_now() == 1 and "TEST-MAPLE-9" in mailoutbox[-1].body


@pytest.mark.django_db
def test_unknown_kinds_are_refused(world):
    with in_schema(world.maple.schema_name), pytest.raises(services.AlertRefused, match="unknown kinds"):
        services.email_preferences_save(user_id=world.acme_manager.pk, wanted={"charger_offline", "fire"})
