"""Commissioning against the real database: create, re-run, update, retire, refuse, export."""

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth.hashers import check_password
from django.core.management import CommandError, call_command
from django.db import connection
from django_tenants.utils import schema_exists

from apps.accounts.models import CompanyMembership, CondominiumMembership, User
from apps.buildings.models import IdTag, Resident
from apps.charging.models import ChargePoint, Connector
from apps.commissioning.schema import CommissioningError, load
from apps.commissioning.services import commission_building, commission_text, export_condominium, schema_name_for
from apps.core.tenants import in_schema
from apps.electrical.models import Circuit, SiteMeter
from apps.tenancy.models import ChargerRegistration, Condominium, Domain
from tests import factories
from tests.commissioning.examples import BIRCH


def apply(text: str):
    # Invitations have their own tests (tests/accounts/test_invitations.py); here they would
    # only add on-commit callbacks to the ones some tests count.
    return commission_text(text, source="birch.yaml", invite=False)


@pytest.fixture
def birch(db):
    report = apply(BIRCH)
    return Condominium.objects.get(slug="test-birch"), report


def test_creates_the_building(birch):
    condo, report = birch
    assert report.changed
    assert condo.schema_name == "condo_test_birch" and schema_exists(condo.schema_name)
    assert condo.timezone == "America/Los_Angeles" and condo.currency == "USD"
    assert Domain.objects.get(domain="test-birch.localhost").tenant == condo
    reg = ChargerRegistration.objects.get(charge_point_id="BIRCH-CAB-A")
    assert reg.condominium == condo
    assert "demo-cab-a-secret" not in reg.password_hash
    assert check_password("demo-cab-a-secret", reg.password_hash)
    assert not check_password("wrong", reg.password_hash)
    bob = User.objects.get(email="bob@birch.test")
    assert set(CondominiumMembership.objects.filter(user=bob).values_list("role", flat=True)) == {"board", "resident"}
    assert CompanyMembership.objects.filter(user__email="manager@birch-pm.example", company__slug="birch-pm").exists()
    with in_schema(condo.schema_name):
        cabinet = Circuit.objects.get(key="cabinet-a")
        assert cabinet.parent.key == "garage-panel" and cabinet.parent.parent.key == "supply"
        assert cabinet.max_power_w == 20000 and cabinet.max_current_a == (Decimal(32),) * 3
        supply = Circuit.objects.get(key="supply")
        assert supply.derate == Decimal("0.800") and supply.margin_a == Decimal(5)
        assert SiteMeter.objects.get(key="birch-main").token_hash.startswith("sha256$")
        assert Connector.objects.filter(charge_point__charge_point_id="BIRCH-CAB-A").count() == 6
        gun = Connector.objects.get(charge_point__charge_point_id="BIRCH-CAB-A", connector_id=2)
        assert (gun.phase_rotation, gun.parking_spot.label, gun.parking_spot.unit.number) == ("L2", "P02", "102")
        dc = Connector.objects.get(charge_point__charge_point_id="BIRCH-DC-1")
        assert dc.is_dc and dc.max_power_w == 30000 and dc.efficiency == Decimal("0.930")
        alice_tag = IdTag.objects.get(id_tag="04A1B2C3D4")
        assert alice_tag.resident.user.email == "alice@birch.test" and alice_tag.parent_id_tag == "UNIT-101"


def test_running_twice_changes_nothing(birch):
    condo, _ = birch
    with in_schema(condo.schema_name):
        before = {cp.pk: cp.updated_at for cp in ChargePoint.objects.all()}
        connectors_before = {c.pk: c.updated_at for c in Connector.objects.all()}
    second = apply(BIRCH)
    assert not second.changed, second.lines()
    assert second.lines() == ["no changes"]
    with in_schema(condo.schema_name):
        assert {cp.pk: cp.updated_at for cp in ChargePoint.objects.all()} == before
        assert {c.pk: c.updated_at for c in Connector.objects.all()} == connectors_before


def test_a_changed_file_updates_and_retires_without_losing_history(birch):
    condo, _ = birch
    with in_schema(condo.schema_name):
        dc_pk = ChargePoint.objects.get(charge_point_id="BIRCH-DC-1").pk
    edited = (
        BIRCH.replace(
            "{id: 2, max_current_a: 32, phases: 1, phase_rotation: L2, parking_spot: P02}",
            "{id: 2, max_current_a: 16, phases: 1, phase_rotation: L3, parking_spot: P02}",
        )
        .replace("BIRCH-DC-1", "BIRCH-DC-2")  # the charger, and its tariff's target
        .replace('password: "demo-cab-a-secret"', 'password: "a-new-cabinet-secret"')
    )
    report = apply(edited)
    assert "charger registration BIRCH-DC-1" in report.retired
    assert "charger BIRCH-DC-1" in report.retired
    assert any(line.startswith("connector BIRCH-CAB-A#2 (") for line in report.updated)
    assert not ChargerRegistration.objects.filter(charge_point_id="BIRCH-DC-1").exists()
    assert check_password(
        "a-new-cabinet-secret", ChargerRegistration.objects.get(charge_point_id="BIRCH-CAB-A").password_hash
    )
    with in_schema(condo.schema_name):
        gun = Connector.objects.get(charge_point__charge_point_id="BIRCH-CAB-A", connector_id=2)
        assert gun.max_current_a == Decimal(16) and gun.phase_rotation == "L3"
        old = ChargePoint.objects.get(pk=dc_pk)  # still there, with its connectors
        assert old.removed_at is not None and not old.enabled
        assert old.connectors.get().removed_at is not None
        assert ChargePoint.objects.filter(charge_point_id="BIRCH-DC-2", removed_at__isnull=True).exists()
    # Putting it back revives the same row.
    apply(BIRCH)
    with in_schema(condo.schema_name):
        revived = ChargePoint.objects.get(charge_point_id="BIRCH-DC-1")
        assert revived.pk == dc_pk and revived.removed_at is None and revived.enabled


def test_people_removed_from_the_file_lose_their_roles_and_cards(birch):
    condo, _ = birch
    edited = BIRCH.replace(
        '  - {email: dana@birch.test, name: Dana Kowalski, unit: "202", roles: [resident], id_tags: ["04D4D4D4D4"]}\n',
        "",
    ).replace("roles: [resident, board], id_tags", "roles: [resident], id_tags")
    report = apply(edited)
    assert "resident dana@birch.test" in report.retired
    assert "board bob@birch.test" in report.retired
    assert not CondominiumMembership.objects.filter(user__email="dana@birch.test", condominium=condo).exists()
    with in_schema(condo.schema_name):
        assert not Resident.objects.get(user__email="dana@birch.test").is_active
        tag = IdTag.objects.get(id_tag="04D4D4D4D4")
        assert tag.status == IdTag.Status.BLOCKED
    apply(BIRCH)  # back in the file: card active again
    with in_schema(condo.schema_name):
        assert IdTag.objects.get(id_tag="04D4D4D4D4").status == IdTag.Status.ACTIVE


def test_refused_file_changes_nothing(db, world):
    # TEST-HARBOR-1 is registered to harbor-view: the whole file must be refused, nothing created.
    text = BIRCH.replace("BIRCH-DC-1", "TEST-HARBOR-1")
    with pytest.raises(CommissioningError) as info:
        apply(text)
    assert (
        info.value.problems[0]
        .format("birch.yaml")
        .startswith(
            "birch.yaml: chargers[1].id (line 29): charger 'TEST-HARBOR-1' is registered to condominium 'harbor-view'"
        )
    )
    assert not Condominium.objects.filter(slug="test-birch").exists()
    assert not schema_exists("condo_test_birch")
    assert not User.objects.filter(email__endswith="@birch.test").exists()


def test_a_failure_half_way_rolls_back_the_new_schema(db):
    # A domain already used by another building: detected before anything is written...
    text = BIRCH.replace("domains: [test-birch.localhost]", "domains: [test-birch.localhost, maple-court.localhost]")
    with pytest.raises(CommissioningError, match=r"maple-court\.localhost already leads to condominium 'maple-court'"):
        apply(text)
    assert not schema_exists("condo_test_birch")


def test_company_cannot_take_another_companys_building(birch):
    with pytest.raises(CommissioningError, match="condominium 'test-birch' belongs to company 'birch-pm'"):
        apply(BIRCH.replace("{slug: birch-pm,", "{slug: other-pm,"))


def test_export_round_trips(birch):
    text = export_condominium("test-birch")
    assert "demo-cab-a-secret" not in text and "demo-meter-token" not in text
    spec = load(text, "export.yaml")
    assert [c.id for c in spec.chargers] == ["BIRCH-CAB-A", "BIRCH-DC-1"]
    assert spec.electrical.supply.derate == Decimal("0.8")
    report = commission_building(spec, source="export.yaml")
    assert not report.changed, report.lines()


def test_commands(birch, tmp_path, capsys):
    out = tmp_path / "birch.yaml"
    call_command("export_condominium", "test-birch", "--output", str(out))
    call_command("commission", str(out))
    assert "no changes" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(BIRCH.replace("max_current_a: 100}", "max_current_a: -1}"))
    with pytest.raises(CommandError) as info:
        call_command("commission", str(bad))
    message = str(info.value)
    assert f"{bad} was refused; nothing was changed" in message
    assert f"{bad}: electrical.circuits[0].max_current_a[0] (line 16): input should be greater than 0" in message
    with pytest.raises(CommandError, match="cannot read the file"):
        call_command("commission", str(tmp_path / "missing.yaml"))
    huge = tmp_path / "huge.yaml"
    huge.write_text(BIRCH + "#" * (1024 * 1024))
    with pytest.raises(CommandError, match=r"huge\.yaml: \(top level\): the file is [\d,]+ bytes; the limit is 1,048,576"):
        call_command("commission", str(huge))
    with pytest.raises(CommandError, match="no condominium with slug 'nope'"):
        call_command("export_condominium", "nope")
    assert connection.schema_name == "public"


def test_card_changes_bring_the_chargers_local_lists_up_to_date(birch, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as unchanged:
        apply(BIRCH)
    assert unchanged == []
    with django_capture_on_commit_callbacks() as blocked:
        apply(BIRCH.replace('id_tags: ["04D4D4D4D4"]', "id_tags: []"))
    assert len(blocked) == 1  # one sync request for the building, sent once the change commits
    with django_capture_on_commit_callbacks() as charger_only:
        apply(BIRCH.replace('id_tags: ["04D4D4D4D4"]', "id_tags: []").replace("max_current_a: 100}", "max_current_a: 90}"))
    assert charger_only == []


# --- people of other companies -----------------------------------------------------------


def test_a_file_cannot_rename_or_take_over_another_companys_people(db, world):
    acme_manager = world.acme_manager  # manager@acme.test, manager of company "acme"
    name_before, password_before = acme_manager.name, acme_manager.password
    text = BIRCH.replace(
        "{email: manager@birch-pm.example, name: Maria Manager, roles: [manager]}",
        "{email: Manager@Acme.test, name: Mallory Takeover, roles: [manager]}",
    ).replace("{email: alice@birch.test,", "{email: hana@harbor.test,")
    assert "Manager@Acme.test" in text and "hana@harbor.test" in text
    with pytest.raises(CommissioningError) as info:
        apply(text)
    lines = str(info.value).splitlines()
    assert any(
        line.startswith("birch.yaml: people[0].email (line ")
        and "manager@acme.test is a person of another company; this file would change their name and a role (manager)"
        in line
        for line in lines
    ), lines
    assert any("people[1].email" in line and "hana@harbor.test is a person of another company" in line for line in lines)
    acme_manager.refresh_from_db()
    assert (acme_manager.name, acme_manager.password) == (name_before, password_before)
    assert set(CompanyMembership.objects.filter(user=acme_manager).values_list("company__slug", flat=True)) == {"acme"}
    assert not CondominiumMembership.objects.filter(user__email="hana@harbor.test", condominium__slug="test-birch").exists()
    assert not Condominium.objects.filter(slug="test-birch").exists()


def test_a_file_cannot_take_over_a_platform_administrator(db, world):
    User.objects.create_superuser("root@platform.test", "x-long-admin-password", name="Root")
    text = BIRCH.replace("{email: alice@birch.test,", "{email: root@platform.test,")
    with pytest.raises(CommissioningError, match=r"root@platform\.test is a platform administrator"):
        apply(text)
    assert not CondominiumMembership.objects.filter(user__email="root@platform.test").exists()


def test_a_person_of_two_companies_set_up_by_an_admin_keeps_working(birch, world):
    condo, _ = birch
    # An admin gave Acme's manager a board role in Birch: the file that lists them unchanged still applies.
    acme_manager = world.acme_manager
    CondominiumMembership.objects.create(user=acme_manager, condominium=condo, role="board")
    text = BIRCH.replace(
        "  - {email: frank@birch.test,",
        f"  - {{email: manager@acme.test, name: {acme_manager.name}, roles: [board]}}\n  - {{email: frank@birch.test,",
    )
    report = apply(text)
    assert not report.changed, report.lines()
    # Renaming them is still refused.
    with pytest.raises(CommissioningError, match="would change their name"):
        apply(text.replace(f"name: {acme_manager.name}, roles: [board]", "name: Someone Else, roles: [board]"))


def test_charger_passwords_are_16_characters_or_a_hash_of_the_chargers_own_cost(db):
    from django.contrib.auth.hashers import make_password

    def refused(replacement: str) -> str:
        with pytest.raises(CommissioningError) as error:
            apply(BIRCH.replace('password: "demo-cab-a-secret"', replacement))
        return str(error.value)

    assert "chargers[0].password" in refused('password: "short-secret"')
    assert "at least 16 characters" in refused('password: "short-secret"')
    people_hash = make_password("a-perfectly-long-password")  # a people's hash: a million rounds per reconnect
    assert "chargers[0].password_hash" in refused(f'password_hash: "{people_hash}"')
    assert "chargers' passwords use charger_pbkdf2_sha256" in refused(f'password_hash: "{people_hash}"')
    cheap = "charger_pbkdf2_sha256$1000$salt$" + "A" * 44
    assert "1000 iterations; chargers' passwords use 20000" in refused(f'password_hash: "{cheap}"')
    assert "not a password hash" in refused('password_hash: "plain-text-is-no-hash"')
    charger_hash = make_password("a-perfectly-long-password", hasher="charger_pbkdf2_sha256")
    apply(BIRCH.replace('password: "demo-cab-a-secret"', f'password_hash: "{charger_hash}"'))
    registration = ChargerRegistration.objects.get(charge_point_id="BIRCH-CAB-A")
    assert registration.password_hash == charger_hash and registration.password_weak is None


def test_the_tests_own_additions_are_what_a_commissioning_file_makes(db, world):
    """The session's buildings are commissioned (tests/conftest.py), and tests/factories.py adds chargers and
    people the way commissioning does: the building, exported with them and applied again, changes nothing."""
    for condo in (world.maple, world.oak, world.harbor_view):
        assert condo.schema_name == schema_name_for(condo.slug)
    suffix = uuid.uuid4().hex[:8].upper()
    factories.charger(world.oak, f"FACT-{suffix}")
    factories.charger(world.oak, f"FACT-WEAK-{suffix}", "short-pw-1", connectors=1)
    factories.resident(world.oak, f"fact-{suffix.lower()}@oak.test", f"F{suffix}", id_tags=(f"f{suffix}",))
    factories.board_member(world.oak, f"fact-board-{suffix.lower()}@oak.test")
    exported = export_condominium("oak-tower")
    assert f"FACT-{suffix}" in exported and f"fact-{suffix.lower()}@oak.test" in exported
    report = commission_text(exported, source="oak-tower.yaml", invite=False)
    assert not report.changed, report.lines()


def test_a_modbus_site_meter_round_trips_with_its_register_map(db):
    meter = ('site_meter: {id: birch-main, source: modbus, stale_after_s: 20, modbus: {host: 10.1.2.3, unit_id: 4, '
             'profile: custom, interval_s: 1.5, timeout_s: 0.5, registers: {function: holding, type: int32, '
             'word_order: little, quantity: power_w, addresses: [18, 20, 22], scale: 0.1}}}')
    text = BIRCH.replace('site_meter: {id: birch-main, source: api, token: "demo-meter-token", stale_after_s: 15}',
                         meter)
    assert meter in text
    apply(text)
    with in_schema("condo_test_birch"):
        stored = SiteMeter.objects.get(key="birch-main")
    assert stored.settings["modbus"]["registers"]["scale"] == "0.1"
    assert stored.settings["modbus"]["interval_s"] == "1.5"
    exported = export_condominium("test-birch")
    spec = load(exported, "export.yaml")
    assert spec.electrical.site_meter.modbus.registers.addresses == [18, 20, 22]
    assert spec.electrical.site_meter.modbus.timeout_s == Decimal("0.5")
    report = commission_building(spec, source="export.yaml")
    assert not report.changed, report.lines()
