"""Tariffs in the database: published versions never change, versions take effect at their date, the most
specific assignment wins, and the commissioning file round-trips."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.db import IntegrityError, transaction

from apps.billing import pricing
from apps.billing.models import BillingSettings, Tariff, TariffAssignment, TariffGroup, TariffGroupMember, TariffVersion
from apps.billing.selectors import pricing_tariff, tariff_for, version_in_force
from apps.billing.services import (
    TariffRefused,
    price_quote,
    tariff_publish_version,
    tariff_version_draft,
    tariff_version_edit,
    tariff_version_publish,
)
from apps.buildings.models import Resident
from apps.charging.models import ChargingSession, Connector
from apps.commissioning.schema import CommissioningError
from apps.commissioning.services import commission_text, export_condominium
from apps.core.tenants import in_schema
from apps.tenancy.models import Condominium
from tests.commissioning.examples import BIRCH

LA = ZoneInfo("America/Los_Angeles")
NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def flat(price):
    return {"elements": [{"price_components": [{"type": "ENERGY", "price": price}]}]}


@pytest.fixture
def maple(db, maple_schema):
    with in_schema(maple_schema):
        yield


def test_a_published_version_never_changes(maple):
    tariff = Tariff.objects.create(code="evening", name="Evening")
    v1 = tariff_publish_version(tariff=tariff, effective_from=datetime(2026, 1, 1, tzinfo=LA), document=flat("0.30"),
                                currency="USD", now=NOW)
    assert (v1.number, v1.is_published, v1.document) == (1, True, {"elements": [
        {"price_components": [{"type": "ENERGY", "price": "0.30"}]}]})
    with pytest.raises(TariffRefused, match="published and never changes"):
        tariff_version_edit(version=v1, document=flat("0.10"))
    # Whatever gets past the services, the database refuses.
    with pytest.raises(IntegrityError, match="published and cannot change"), transaction.atomic():
        TariffVersion.objects.filter(pk=v1.pk).update(document=flat("0.10"))
    with pytest.raises(IntegrityError, match="published and cannot change"), transaction.atomic():
        TariffVersion.objects.filter(pk=v1.pk).delete()
    v1.refresh_from_db()
    assert v1.document["elements"][0]["price_components"][0]["price"] == "0.30"


def test_a_draft_can_change_until_it_is_published(maple):
    tariff = Tariff.objects.create(code="draft-test", name="Draft")
    draft = tariff_version_draft(tariff=tariff, effective_from=datetime(2030, 1, 1, tzinfo=LA), document=flat("0.3"),
                                 currency="USD")
    assert version_in_force(tariff, datetime(2031, 1, 1, tzinfo=UTC)) is None  # drafts are never in force
    draft = tariff_version_edit(version=draft, document=flat("0.35"))
    published = tariff_version_publish(version=draft, now=NOW)
    assert version_in_force(tariff, datetime(2031, 1, 1, tzinfo=UTC)) == published
    assert pricing_tariff(published).elements[0].components[0].price == Decimal("0.35")
    with pytest.raises(TariffRefused):
        tariff_version_edit(version=published, document=flat("0.40"))


def test_versions_take_effect_at_their_date(maple):
    tariff = Tariff.objects.create(code="sched", name="Scheduled")
    v1 = tariff_publish_version(tariff=tariff, effective_from=datetime(2026, 1, 1, tzinfo=LA), document=flat("0.30"),
                                currency="USD", now=NOW)
    v2 = tariff_publish_version(tariff=tariff, effective_from=datetime(2027, 1, 1, tzinfo=LA), document=flat("0.34"),
                                currency="USD", now=NOW)
    assert version_in_force(tariff, datetime(2025, 12, 31, tzinfo=LA)) is None
    assert version_in_force(tariff, datetime(2026, 12, 31, 23, 59, tzinfo=LA)) == v1
    assert version_in_force(tariff, datetime(2027, 1, 1, tzinfo=LA)) == v2
    assert v2.number == 2
    with pytest.raises(TariffRefused, match="must be after"):
        tariff_publish_version(tariff=tariff, effective_from=datetime(2026, 6, 1, tzinfo=LA), document=flat("1"),
                               currency="USD", now=NOW)
    with pytest.raises(TariffRefused, match=r"elements\[0\]\.price_components\[0\]\.price: must not be negative"):
        tariff_publish_version(tariff=tariff, effective_from=datetime(2028, 1, 1, tzinfo=LA), document=flat("-1"),
                               currency="USD", now=NOW)


def test_a_new_version_cannot_reach_back_before_sessions_that_started(maple):
    tariff = Tariff.objects.create(code="late", name="Late")
    tariff_publish_version(tariff=tariff, effective_from=datetime(2026, 1, 1, tzinfo=LA), document=flat("0.30"),
                           currency="USD", now=NOW)
    connector = Connector.objects.get(charge_point__charge_point_id="TEST-MAPLE-1", connector_id=1)
    ChargingSession.objects.create(charge_point=connector.charge_point, connector=connector, connector_number=1,
                                   started_at=NOW - timedelta(days=2))
    with pytest.raises(TariffRefused, match="in the past and 1 session"):
        tariff_publish_version(tariff=tariff, effective_from=NOW - timedelta(days=3), document=flat("0.40"),
                               currency="USD", now=NOW)
    later = tariff_publish_version(tariff=tariff, effective_from=NOW + timedelta(days=1), document=flat("0.40"),
                                   currency="USD", now=NOW)
    assert later.number == 2


def test_the_most_specific_assignment_wins(maple):
    """The world's Maple Court: residents for everyone, visitors for visitors and for everyone on connector 2."""
    c1, c2 = (Connector.objects.get(charge_point__charge_point_id="TEST-MAPLE-1", connector_id=n) for n in (1, 2))
    alice = Resident.objects.get(user__email="alice@maple.test").pk

    def code(connector, resident):
        choice = tariff_for(connector_pk=connector.pk, resident_id=resident)
        return choice.tariff.code if choice else None

    assert code(c1, alice) == "residents"  # 6: everyone anywhere
    assert code(c1, None) == "visitors"  # 5: visitors anywhere
    assert code(c2, alice) == "visitors"  # 3: everyone on this connector
    staff = Tariff.objects.create(code="staff", name="Staff")
    group = TariffGroup.objects.create(code="staff", name="Staff")
    TariffGroupMember.objects.create(group=group, resident_id=alice)
    TariffAssignment.objects.create(tariff=staff, audience="group", group=group)
    assert code(c1, alice) == "staff"  # 4: her group anywhere
    assert code(c2, alice) == "visitors"  # 3 still beats 4
    assert code(c1, None) == "visitors"
    dc_res = Tariff.objects.create(code="c2-residents", name="Connector 2, residents")
    TariffAssignment.objects.create(tariff=dc_res, audience="residents", connector=c2)
    assert code(c2, alice) == "c2-residents"  # 2
    assert code(c2, None) == "visitors"
    c2_staff = Tariff.objects.create(code="c2-staff", name="Connector 2, staff")
    TariffAssignment.objects.create(tariff=c2_staff, audience="group", group=group, connector=c2)
    assert code(c2, alice) == "c2-staff"  # 1
    assert "precedence 1 of 6" in tariff_for(connector_pk=c2.pk, resident_id=alice).reason
    # One tariff per target.
    with pytest.raises(IntegrityError), transaction.atomic():
        TariffAssignment.objects.create(tariff=staff, audience="everyone")


# --- the commissioning file ------------------------------------------------------------------------


def apply(text):
    return commission_text(text, source="birch.yaml", invite=False)


def birch_versions(code):
    condo = Condominium.objects.get(slug="test-birch")
    with in_schema(condo.schema_name):
        return [(v.number, v.effective_from.astimezone(LA).date().isoformat(),
                 v.document["elements"][0]["price_components"][0]["price"])
                for v in TariffVersion.objects.filter(tariff__code=code).order_by("number")]


def test_commissioning_publishes_versions_and_never_edits_one(db, world):
    report = apply(BIRCH)
    assert "tariff residents v1 (from 2026-01-01T00:00:00-08:00)" in report.created
    assert birch_versions("residents") == [(1, "2026-01-01", "0.18")]
    assert not apply(BIRCH).changed  # the same file again: nothing
    # A changed price on the published version is refused, naming the place; nothing changes.
    changed = BIRCH.replace("price_components: [{type: ENERGY, price: 0.18}]",
                            "price_components: [{type: ENERGY, price: 0.20}]")
    with pytest.raises(CommissioningError) as refused:
        apply(changed)
    [problem] = refused.value.problems
    assert problem.format("birch.yaml").startswith("birch.yaml: tariffs[0].versions[0] (line ")
    assert "published and never changes" in problem.message
    assert birch_versions("residents") == [(1, "2026-01-01", "0.18")]
    # The new price as a new version, effective at the given date: published next to the first.
    new_version = BIRCH.replace(
        "      - effective_from: 2026-01-01         # local midnight, America/Los_Angeles\n",
        "      - effective_from: 2030-01-01\n"
        "        elements:\n"
        "          - label: night\n"
        "            restrictions: {start_time: \"22:00\", end_time: \"07:00\"}\n"
        "            price_components: [{type: ENERGY, price: 0.20}]\n"
        "          - label: day\n"
        "            price_components: [{type: ENERGY, price: 0.34}]\n"
        "      - effective_from: 2026-01-01         # local midnight, America/Los_Angeles\n",
    )
    report = apply(new_version)
    assert report.created == ["tariff residents v2 (from 2030-01-01T00:00:00-08:00)"]
    assert birch_versions("residents") == [(1, "2026-01-01", "0.18"), (2, "2030-01-01", "0.20")]
    # The export writes every version; applied again it changes nothing.
    exported = export_condominium("test-birch")
    assert "effective_from: 2030-01-01" in exported and "applies_to" in exported
    assert not apply(exported).changed
    # Leaving the old version out of the file keeps it (history); assignments follow the file.
    condo = Condominium.objects.get(slug="test-birch")
    with in_schema(condo.schema_name):
        assert TariffAssignment.objects.filter(tariff__code="visitors", connector__isnull=False).count() == 1


def test_commissioning_refuses_bad_prices_and_targets_with_their_place(db, world):
    bad = (BIRCH.replace("price: 0.32", "price: -0.32")
           .replace('{start_time: "22:00", end_time: "07:00"}', "{start_time: 22:00, end_time: \"07:00\"}")
           .replace("{charger: BIRCH-DC-1, connector: 1}", "{charger: BIRCH-DC-1, connector: 7}")
           .replace("{who: visitors}", "{group: nobody}"))
    with pytest.raises(CommissioningError) as refused:
        apply(bad)
    text = str(refused.value)
    assert "tariffs[0].versions[0].elements[1].price_components[0].price (line" in text
    assert "must not be negative" in text
    assert "tariffs[0].versions[0].elements[0].restrictions.start_time" in text and "quotes" in text
    assert "tariffs[1].applies_to[1].connector" in text and "has no connector 7" in text
    assert "tariffs[1].applies_to[0].group" in text and "no tariff group 'nobody'" in text
    assert not Condominium.objects.filter(slug="test-birch").exists()


def test_commissioning_groups_and_tax_display(db, world):
    text = BIRCH.replace("billing: {prices_include_tax: false}", """billing: {prices_include_tax: true}
tariff_groups:
  - {code: ev-club, name: EV club, members: [chen@birch.test]}""").replace(
        "      - {who: everyone}                    # the building's default\n",
        "      - {who: everyone}                    # the building's default\n      - {group: ev-club}\n")
    apply(text)
    condo = Condominium.objects.get(slug="test-birch")
    with in_schema(condo.schema_name):
        member = TariffGroupMember.objects.select_related("resident__user", "group").get()
        assert (member.resident.user.email, member.group.code) == ("chen@birch.test", "ev-club")
        assert TariffAssignment.objects.get(group__code="ev-club").tariff.code == "residents"
        assert BillingSettings.objects.get().prices_include_tax
    exported = export_condominium("test-birch")
    assert "ev-club" in exported and "prices_include_tax: true" in exported
    assert not apply(exported).changed
    with pytest.raises(CommissioningError, match="not a resident in this file"):
        apply(text.replace("members: [chen@birch.test]", "members: [frank@birch.test]"))


def test_pricing_reads_what_commissioning_stored(db, world, maple_schema):
    with in_schema(maple_schema):
        version = version_in_force(Tariff.objects.get(code="residents"), NOW)
        tariff = pricing_tariff(version)
    session = pricing.SessionInput(datetime(2026, 3, 10, 9, tzinfo=LA), datetime(2026, 3, 10, 12, tzinfo=LA),
                                   1_000_000, 1_012_345)
    assert pricing.price_session(tariff, session, tz=LA).total == Decimal("3.95")


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(("example", "session_at", "kwh", "total", "tax"), [
    # Oak Tower: $0.29/kWh and a $0.50 session fee.
    ("oak-tower", datetime(2026, 3, 10, 9, tzinfo=LA), 10, Decimal("3.40"), Decimal("0.00")),
    # Harbor View: tax included; a weekday evening is peak ($0.42), 6.25 % of it is tax.
    ("harbor-view", datetime(2026, 3, 10, 17, tzinfo=ZoneInfo("America/New_York")), 10, Decimal("4.20"),
     Decimal("0.25")),
])
def test_the_example_buildings_tariffs_apply_and_price(db, world, example, session_at, kwh, total, tax):
    slug = f"test-{example}"
    text = ((EXAMPLES / f"{example}.yaml").read_text().replace(example, slug).replace("OAK-", "TOAK-")
            .replace("HARBOR-", "THARBOR-").replace("@example.com", f"@{slug}.test")
            .replace("oak-main", "toak-main").replace("harbor-main", "tharbor-main"))
    report = apply(text)
    assert any(line.startswith("tariff residents v1") for line in report.created)
    condo = Condominium.objects.get(slug=slug)
    with in_schema(condo.schema_name):
        connector = Connector.objects.order_by("pk").first()
        quote = price_quote(connector=connector, resident_id=None, as_resident=True, energy_wh=kwh * 1000,
                            start=session_at, duration=timedelta(hours=2))
    assert (quote.tariff_code, quote.priced.total, quote.priced.tax) == ("residents", total, tax)
    assert not apply(text).changed
