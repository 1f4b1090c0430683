"""The simulator against the real central system: daphne in a subprocess, the test database, real websockets."""

from __future__ import annotations

import itertools
import time
from decimal import Decimal

import pytest
from django.core.management import CommandError

from apps.buildings.models import Resident
from apps.charging.models import ChargePoint, ChargingSession, MeterValue
from apps.core.tenants import in_schema
from apps.ocpp.commands import CommandError as OcppCommandError
from apps.ocpp.commands import send_command_sync
from tests import factories
from tests.helpers import wait_for
from tests.simulator.running import Background, simulate

PASSWORD = "sim-secret-000001"

COMMISSIONING = """\
company: {{slug: acme, name: Acme Property Management}}
condominium:
  slug: maple-court
  name: Maple Court
  domains: [maple-court.localhost]
  timezone: America/Los_Angeles
  currency: USD
electrical:
  supply: {{voltage_v: 230, phases: 3, max_current_a: 200}}
chargers:
  - id: {charger}
    password: "{password}"
    circuit: supply
    connectors:
      - {{id: 1, max_current_a: 32, phases: 1}}
      - {{id: 2, max_current_a: 32, phases: 1}}
"""

SCENARIO = """\
description: two EVs, one after the other on connector 2
arrivals: {enabled: false}
meter_value_interval_s: 15
evs:
  - {charger: %(charger)s, connector: 1, arrive_after_min: 0, stay_min: 6, battery_kwh: 60, soc_percent: 30,
     max_current_a: 16, phases: 1, id_tag: 04a1b2c3d4}
  - {charger: %(charger)s, connector: 2, arrive_after_min: 1, stay_min: 4, max_current_a: 32, id_tag: %(tag)s}
  - {charger: %(charger)s, connector: 2, arrive_after_min: 6, stay_min: 30, max_current_a: 32, id_tag: %(tag)s}
"""


def resident_tag(world, unique_id: str) -> str:
    """A resident of maple-court of this test's own (residents may not charge at two connectors at once)."""
    tag = f"SIM{unique_id}"
    factories.resident(world.maple, f"sim-{unique_id.lower()}@maple.test", f"S{unique_id}", id_tags=(tag,))
    return tag


@pytest.mark.timeout(120)
def test_simulated_chargers_charge_through_the_real_central_system(world, committed, daphne, tmp_path, unique_id):
    charger = f"SIM-E2E-{unique_id}"
    factories.charger(world.maple, charger, PASSWORD, connectors=2)
    commissioning = tmp_path / "maple-court.yaml"
    commissioning.write_text(COMMISSIONING.format(charger=charger, password=PASSWORD))
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO % {"charger": charger, "tag": resident_tag(world, unique_id)})

    # The platform is not up yet when the simulator starts (the demo starts them together): the charger
    # retries with backoff, charges offline meanwhile and sends what it kept once connected.
    daphne.stop()
    # 15 real seconds at 60x: 15 simulated minutes. Connector 1 charges 6 minutes; connector 2 twice.
    run = Background("--condominium", "maple-court", "--charger", charger, "--url", daphne.url,
                     "--commissioning-file", str(commissioning), "--scenario", str(scenario),
                     "--speed", "60", "--duration", "15", "--seed", "7")
    time.sleep(2)  # the point: the platform stays down while the simulator starts and charges offline
    daphne.start()
    output = run.join(40)
    assert "1 chargers" in output
    assert "StartTransaction 3" in output
    assert " 0 refused, 0 errors answered" in output, output

    def stored():
        with in_schema(world.maple.schema_name):
            sessions = list(ChargingSession.objects.filter(charge_point__charge_point_id=charger)
                            .order_by("connector_number", "started_at"))
            done = [s for s in sessions if s.stopped_at is not None]
            return sessions if len(sessions) == 3 and len(done) == 2 else None

    first, second, third = wait_for(stored, what="three sessions, two of them stopped")
    assert first.id_tag == "04A1B2C3D4" and first.authorization_status == "Accepted"
    with in_schema(world.maple.schema_name):
        assert first.resident_id == Resident.objects.get(user=world.maple_resident).pk
    # 16 A x 230 V for 6 minutes = 368 Wh, counted from the integer registers.
    assert first.meter_stop_wh - first.meter_start_wh == 368
    assert first.energy_wh == 368
    assert first.stop_reason == "EVDisconnected"
    # 32 A x 230 V for 4 minutes = 490 Wh at most: the platform's safe default (TxDefaultProfile, sent once
    # the charger is connected and its configuration read) may hold the last seconds of it lower.
    second_wh = second.meter_stop_wh - second.meter_start_wh
    assert 32 * 230 * 4 * 60 // 3600 - 30 <= second_wh <= 32 * 230 * 4 * 60 // 3600
    assert second.energy_wh == second_wh
    assert third.stopped_at is None  # still plugged in when the run ended
    assert not first.needs_review and not second.needs_review

    with in_schema(world.maple.schema_name):
        cp = ChargePoint.objects.get(charge_point_id=charger)
        assert cp.vendor == "HOA Charging" and cp.serial_number == f"SIM-{charger}"[:25]
        # The platform asked for per-phase currents every 15 s after boot, and the charger accepted.
        assert "Current.Import" in cp.configuration["MeterValuesSampledData"]["value"]
        # Currents come once the platform has configured the measurands after boot (the charger starts with
        # the energy register only); the third EV charges on after that, at its 32 A.
        third_currents = set(MeterValue.objects.filter(session_id=third.pk, measurand="Current.Import", phase="L1")
                             .values_list("value", flat=True))
        assert third_currents == {32}
        values = MeterValue.objects.filter(session_id=first.pk)
        assert set(values.filter(measurand="Current.Import", phase="L1").values_list("value", flat=True)) <= {16}
        registers = list(values.filter(measurand="Energy.Active.Import.Register", context="Sample.Periodic")
                         .order_by("sampled_at").values_list("normalized", flat=True))
        assert len(registers) >= 20  # every 15 s for 6 minutes
        assert registers == sorted(registers)
        assert MeterValue.objects.filter(session_id=third.pk, measurand="Power.Active.Import",
                                         normalized=32 * 230).exists()


def test_a_charger_missing_from_the_commissioning_file_is_a_clear_error(world, committed, tmp_path, unique_id):
    charger = f"SIM-NOPW-{unique_id}"
    factories.charger(world.maple, charger, PASSWORD, connectors=1)
    commissioning = tmp_path / "maple-court.yaml"
    commissioning.write_text(COMMISSIONING.format(charger="SOMEONE-ELSE", password=PASSWORD))
    with pytest.raises(CommandError, match=f"no charger '{charger}' in chargers; the simulator needs its password"):
        simulate("--condominium", "maple-court", "--charger", charger, "--commissioning-file", str(commissioning))
    hashed = COMMISSIONING.format(charger=charger, password=PASSWORD).replace(
        f'password: "{PASSWORD}"', 'password_hash: "pbkdf2_sha256$1$x$y"')
    commissioning.write_text(hashed)
    with pytest.raises(CommandError, match=r"chargers\[0\] .* has only password_hash"):
        simulate("--condominium", "maple-court", "--charger", charger, "--commissioning-file", str(commissioning))
    with pytest.raises(CommandError, match="no condominium 'no-such-building'"):
        simulate("--condominium", "no-such-building")


@pytest.mark.timeout(150)
def test_commands_from_the_platform_are_obeyed_and_a_server_restart_loses_nothing(
    world, committed, daphne, tmp_path, unique_id
):
    charger = f"SIM-CMD-{unique_id}"
    factories.charger(world.maple, charger, PASSWORD, connectors=2)
    commissioning = tmp_path / "maple-court.yaml"
    commissioning.write_text(COMMISSIONING.format(charger=charger, password=PASSWORD))
    scenario = tmp_path / "scenario.yaml"
    tag = resident_tag(world, unique_id)
    scenario.write_text(f"arrivals: {{enabled: false}}\nevs:\n  - {{charger: {charger}, connector: 1, stay_min: 600,"
                        f" max_current_a: 32, id_tag: {tag}}}\n")
    # 10x: a MeterValues every 1.5 s of real time (the platform asks for 15 s).
    run = Background("--condominium", "maple-court", "--charger", charger, "--url", daphne.url,
                     "--commissioning-file", str(commissioning), "--scenario", str(scenario),
                     "--speed", "10", "--duration", "90", "--report-every", "5")
    try:
        _commands_and_restart(world, charger, daphne)
    except AssertionError as failure:
        output = run.join(30, stop=True)
        raise AssertionError(f"{failure}\nsimulator said:\n{output}\ndaphne said:\n{daphne.read_log()}") from None
    output = run.join(30, stop=True)
    assert "2 connections" in output, output


def _commands_and_restart(world, charger: str, daphne) -> None:

    def open_session():
        with in_schema(world.maple.schema_name):
            return ChargingSession.objects.filter(charge_point__charge_point_id=charger, stopped_at__isnull=True).first()

    session = wait_for(open_session, 20, what="the EV charging")

    def latest_current() -> Decimal | None:
        with in_schema(world.maple.schema_name):
            value = MeterValue.objects.filter(session_id=session.pk, measurand="Current.Import", phase="L1") \
                .order_by("-sampled_at").first()
            return value.value if value else None

    wait_for(lambda: latest_current() == 32, 15, what="32 A reported")
    answer = send_command_sync(charger, "SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative", "transactionId": session.transaction_id,
        "chargingSchedule": {"chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10}]},
    }}, schema_name=world.maple.schema_name)
    assert answer == {"status": "Accepted"}
    wait_for(lambda: latest_current() == 10, 15, what="the 10 A profile followed")

    # The server goes away for a few seconds: the charger keeps metering and sends it all afterwards.
    daphne.restart(down_for=4)
    wait_for(lambda: _connected(charger, world.maple.schema_name), 30, what="the charger reconnected")
    answer = send_command_sync(charger, "RemoteStopTransaction", {"transactionId": session.transaction_id},
                               schema_name=world.maple.schema_name)
    assert answer == {"status": "Accepted"}

    def stopped():
        with in_schema(world.maple.schema_name):
            return ChargingSession.objects.filter(pk=session.pk, stopped_at__isnull=False).first()

    done = wait_for(stopped, 15, what="the session stopped")
    assert done.stop_reason == "Remote"
    with in_schema(world.maple.schema_name):
        times = list(MeterValue.objects.filter(
            session_id=session.pk, measurand="Energy.Active.Import.Register", context="Sample.Periodic",
        ).order_by("sampled_at").values_list("sampled_at", flat=True))
        assert done.energy_wh == done.meter_stop_wh - done.meter_start_wh > 0
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(times)}
    assert gaps == {15}, f"samples missing across the restart: {sorted(gaps)}"
    assert len(times) >= 5


def _connected(charge_point_id: str, schema_name: str) -> bool:
    try:
        send_command_sync(charge_point_id, "GetLocalListVersion", {}, timeout=2, schema_name=schema_name)
    except OcppCommandError:
        return False
    return True
