"""New people choose their password from an invitation: commissioning -> real SMTP -> link -> login."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core.management import CommandError, call_command
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.accounts.models import CondominiumMembership, User
from apps.accounts.services import invitation_url, invite_new_people
from apps.accounts.tokens import invitation_tokens
from tests.servers import free_port

WILLOW = """
company: {slug: test-willow-pm, name: Willow Property}
condominium:
  slug: test-willow
  name: Willow House
  domains: [test-willow.localhost]
  timezone: Europe/Madrid
  currency: EUR
  locale: es
electrical:
  supply: {voltage_v: 230, phases: 3, max_current_a: 63}
units:
  - {number: "1A"}
people:
  - {email: Rosa@Willow.test, name: Rosa Diaz, unit: "1A", roles: [resident], language: es}
  - {email: manon@willow.test, name: Manon Blanc, roles: [board], language: fr}
  - {email: boss@willow-pm.test, name: Wil Boss, roles: [manager]}
"""
PASSWORD = "a-long-fresh-passphrase-9"
LINK = re.compile(r"https?://\S+/accounts/invitation/\S+/")


def commission(tmp_path, capture, text=WILLOW, *extra):
    path = tmp_path / "willow.yaml"
    path.write_text(text)
    with capture(execute=True):
        call_command("commission", *extra, str(path))


def link_in(message) -> tuple[str, str]:
    """(host, path) of the invitation link in an e-mail."""
    url = LINK.search(message.get_content()).group(0)
    parts = urlsplit(url)
    return parts.netloc, parts.path


def choose_password(client, host, path, password=PASSWORD):
    form = client.get(path, HTTP_HOST=host, follow=True)
    assert form.status_code == 200 and b"new_password1" in form.content, form.content
    return client.post(
        form.redirect_chain[-1][0], {"new_password1": password, "new_password2": password}, HTTP_HOST=host
    )


def logs_in(client, host, email, password=PASSWORD) -> bool:
    response = client.post("/accounts/login/", {"username": email, "password": password}, HTTP_HOST=host)
    return response.status_code == 302


@pytest.mark.django_db
def test_commissioning_invites_new_people_who_choose_a_password_and_log_in(
    client, world, smtp_inbox, tmp_path, django_capture_on_commit_callbacks
):
    commission(tmp_path, django_capture_on_commit_callbacks)
    assert sorted(m["To"] for m in smtp_inbox.messages) == ["boss@willow-pm.test", "manon@willow.test", "rosa@willow.test"]

    [mail] = smtp_inbox.to("rosa@willow.test")
    assert mail["Content-Language"] == "es"  # her language; the text comes from the es catalogue once filled
    assert "Willow House" in mail["Subject"] and "Rosa Diaz" in mail.get_content()
    host, path = link_in(mail)
    assert host.split(":")[0] == "test-willow.localhost"  # a resident starts from her building's own site
    assert smtp_inbox.to("manon@willow.test")[0]["Content-Language"] == "fr"
    boss_host, _ = link_in(smtp_inbox.to("boss@willow-pm.test")[0])
    assert boss_host.split(":")[0] == "localhost"  # a manager starts from the company site

    rosa = User.objects.get(email="rosa@willow.test")
    assert not rosa.has_usable_password() and rosa.invited_at is not None
    # Before choosing a password nobody can log in as her.
    assert client.post("/accounts/login/", {"username": "rosa@willow.test", "password": ""}, HTTP_HOST=host).status_code == 200

    done = choose_password(client, host, path)
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    login = client.post("/accounts/login/", {"username": "Rosa@willow.test", "password": PASSWORD}, HTTP_HOST=host)
    assert login.status_code == 302 and login["Location"] == "/"
    assert client.get("/", HTTP_HOST=host).status_code == 200
    # Her login gives her nothing in another company's building.
    assert client.get("/", HTTP_HOST="maple-court.localhost").status_code == 404

    # One-time: the same link no longer works, for her or anybody.
    client.post("/accounts/logout/", HTTP_HOST=host)
    again = client.get(path, HTTP_HOST=host, follow=True)
    assert b"new_password1" not in again.content
    assert b"This invitation has expired or was already used" in again.content

    # Running the same file again invites nobody twice.
    commission(tmp_path, django_capture_on_commit_callbacks)
    assert len(smtp_inbox.messages) == 3


@pytest.mark.django_db
def test_a_link_is_for_its_own_person_only(client, world, smtp_inbox, tmp_path, django_capture_on_commit_callbacks):
    commission(tmp_path, django_capture_on_commit_callbacks)
    host, path = link_in(smtp_inbox.to("rosa@willow.test")[0])
    _, _, _, uidb64, token, _ = path.split("/")
    # Rosa's token with another building's resident's id: no form, Alice's password unchanged.
    alice = world.maple_resident
    other = f"/accounts/invitation/{urlsafe_base64_encode(force_bytes(alice.pk))}/{token}/"
    response = client.get(other, HTTP_HOST="maple-court.localhost", follow=True)
    assert b"new_password1" not in response.content
    alice.refresh_from_db()
    assert alice.check_password("correct-horse-battery")
    # A password-reset token is not an invitation, and the reverse.
    reset_token = default_token_generator.make_token(User.objects.get(email="rosa@willow.test"))
    assert b"new_password1" not in client.get(f"/accounts/invitation/{uidb64}/{reset_token}/", HTTP_HOST=host, follow=True).content
    assert b"new_password1" not in client.get(f"/accounts/reset/{uidb64}/{token}/", HTTP_HOST=host, follow=True).content


@pytest.mark.django_db
def test_the_link_expires_after_the_configured_days(client, world, settings, smtp_inbox):
    settings.INVITATION_VALID_DAYS = 7
    person = User.objects.create_user("late@maple.test", None, name="Late Comer")
    CondominiumMembership.objects.create(user=person, condominium=world.maple, role="board")
    now = invitation_tokens._num_seconds(invitation_tokens._now())
    uidb64 = urlsafe_base64_encode(force_bytes(person.pk))

    def token_issued(seconds_ago: int) -> str:
        return invitation_tokens._make_token_with_timestamp(person, now - seconds_ago, invitation_tokens.secret)

    fresh_enough = client.get(f"/accounts/invitation/{uidb64}/{token_issued(7 * 86400 - 60)}/",
                              HTTP_HOST="maple-court.localhost", follow=True)
    assert b"new_password1" in fresh_enough.content
    expired = client.get(f"/accounts/invitation/{uidb64}/{token_issued(7 * 86400 + 60)}/",
                         HTTP_HOST="maple-court.localhost", follow=True)
    assert b"new_password1" not in expired.content and b"expired" in expired.content


@pytest.mark.django_db
def test_invite_command_sends_again_and_names_an_unknown_address(client, world, smtp_inbox, capsys):
    person = User.objects.create_user("newcomer@oak.test", None, name="New Comer")
    CondominiumMembership.objects.create(user=person, condominium=world.oak, role="resident")
    call_command("invite", "NEWCOMER@oak.test")
    assert "invited newcomer@oak.test (en)" in capsys.readouterr().out
    [mail] = smtp_inbox.to("newcomer@oak.test")
    host, path = link_in(mail)
    assert host.split(":")[0] == "oak-tower.localhost"
    assert choose_password(client, host, path).status_code == 302
    assert logs_in(client, host, "newcomer@oak.test")
    with pytest.raises(CommandError, match=r"no person with the e-mail address 'nobody@oak\.test'"):
        call_command("invite", "nobody@oak.test")
    person.is_active = False
    person.save()
    with pytest.raises(CommandError, match=r"newcomer@oak\.test is deactivated"):
        call_command("invite", "newcomer@oak.test")
    assert len(smtp_inbox.messages) == 1


@pytest.mark.django_db
def test_a_failed_e_mail_leaves_the_person_to_be_invited_next_time(world, settings, smtp_inbox):
    person = User.objects.create_user("unlucky@maple.test", None)
    CondominiumMembership.objects.create(user=person, condominium=world.maple, role="board")
    working_port = settings.EMAIL_PORT
    settings.EMAIL_PORT = free_port()  # nothing listens there
    failed = invite_new_people(emails=["unlucky@maple.test"])
    assert failed.invited == [] and failed.failed[0].startswith("unlucky@maple.test: ")
    person.refresh_from_db()
    assert person.invited_at is None
    settings.EMAIL_PORT = working_port
    assert invite_new_people(emails=["unlucky@maple.test"]).invited == ["unlucky@maple.test"]
    assert invite_new_people(emails=["unlucky@maple.test"]).invited == []  # already invited
    assert len(smtp_inbox.to("unlucky@maple.test")) == 1


@pytest.mark.django_db
def test_people_with_a_password_are_not_invited(world, smtp_inbox):
    assert invite_new_people(emails=["alice@maple.test", "olga@oak.test"]).invited == []
    assert smtp_inbox.messages == []


@pytest.mark.django_db
def test_forgot_password_works_for_people_without_a_password_yet(client, world, smtp_inbox):
    person = User.objects.create_user("lost-invitation@maple.test", None)
    CondominiumMembership.objects.create(user=person, condominium=world.maple, role="resident")
    response = client.post("/accounts/password-reset/", {"email": "Lost-Invitation@maple.test"},
                           HTTP_HOST="maple-court.localhost")
    assert response.status_code == 302
    [mail] = smtp_inbox.to("lost-invitation@maple.test")
    path = re.search(r"http://maple-court\.localhost(/accounts/reset/\S+)", mail.get_content()).group(1)
    assert choose_password(client, "maple-court.localhost", path).status_code == 302
    assert logs_in(client, "maple-court.localhost", "lost-invitation@maple.test")
    # A deactivated person still gets nothing.
    person.is_active = False
    person.save()
    client.post("/accounts/password-reset/", {"email": "lost-invitation@maple.test"}, HTTP_HOST="maple-court.localhost")
    assert len(smtp_inbox.messages) == 1


def test_links_use_the_public_url_scheme_and_port(settings, db, world):
    settings.PUBLIC_URL = "https://localhost"
    url = invitation_url(world.maple_resident, "maple-court.localhost")
    assert url.startswith("https://maple-court.localhost/accounts/invitation/")
