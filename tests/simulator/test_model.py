"""The pure charger/EV model: deterministic integer energy, limits followed, per-phase currents."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from apps.simulator.model import ChargerSim, Message
from tests.simulator.helpers import T0, charger, ev


class CentralSystem:
    """Answers the charger the way the platform would: tags accepted, transaction ids 1, 2, 3..."""

    def __init__(self, sim: ChargerSim):
        self.sim = sim
        self.sent: list[Message] = []
        self.next_id = 1

    def deliver(self, messages: list[Message]) -> None:
        for message in messages:
            self.sent.append(message)
            if message.action == "Authorize":
                self.deliver(self.sim.authorized(message.connector_id, "Accepted"))
            elif message.action == "StartTransaction":
                self.next_id += 1
                self.deliver(self.sim.transaction_started(message.tx_ref, self.next_id - 1, "Accepted"))

    def run(self, until: timedelta, step_s: int = 1) -> None:
        t = T0
        while t < T0 + until:
            t = min(t + timedelta(seconds=step_s), T0 + until)
            self.deliver(self.sim.advance(t))

    def actions(self, action: str) -> list[Message]:
        return [m for m in self.sent if m.action == action]

    def last_sample(self) -> dict[tuple[str, str], str]:
        values = self.actions("MeterValues")[-1].payload["meter_value"][0]["sampled_value"]
        return {(v["measurand"], v.get("phase", "")): v["value"] for v in values}


def test_an_hour_at_32_a_single_phase_is_exactly_7360_wh_in_integers():
    cs = CentralSystem(charger(ev(minutes=60)))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(minutes=61), step_s=7)
    start = cs.actions("StartTransaction")[0].payload
    stop = cs.actions("StopTransaction")[0].payload
    assert isinstance(stop["meter_stop"], int)
    assert stop["meter_stop"] - start["meter_start"] == 32 * 230  # 7360 Wh: 32 A x 230 V x 1 h
    assert stop["reason"] == "EVDisconnected"
    assert cs.sim.resolve(cs.actions("StopTransaction")[0])["transaction_id"] == 1
    statuses = [m.payload["status"] for m in cs.actions("StatusNotification")]
    assert statuses == ["Preparing", "Charging", "Available"]


def test_the_result_does_not_depend_on_how_often_the_clock_is_read():
    runs = []
    for step in (1, 13, 600):
        cs = CentralSystem(charger(ev(minutes=300, battery_kwh=40, soc=60, amps="16")))
        cs.deliver(cs.sim.advance(T0))
        cs.run(timedelta(minutes=301), step_s=step)
        runs.append([(m.action, m.payload) for m in cs.sent])
    assert runs[0] == runs[1] == runs[2]


def test_meter_values_carry_integer_wh_and_per_phase_currents_on_three_phases():
    cs = CentralSystem(charger(ev(amps="16", phases=3), phases=3, interval=15))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(minutes=5))
    sample = cs.last_sample()
    assert sample[("Current.Import", "L1")] == sample[("Current.Import", "L2")] == sample[("Current.Import", "L3")] \
        == "16.0"
    assert sample[("Power.Active.Import", "")] == str(16 * 230 * 3)
    register = sample[("Energy.Active.Import.Register", "")]
    assert register == str(int(register))
    assert int(register) == 1_000_000 + 16 * 230 * 3 * 300 // 3600
    assert len(cs.actions("MeterValues")) == 20  # every 15 s for 5 minutes
    times = [m.payload["meter_value"][0]["timestamp"] for m in cs.actions("MeterValues")]
    assert times[0] == "2026-03-02T18:00:15Z"


def tx_default(limit: str, unit: str = "A", stack: int = 0, purpose: str = "TxDefaultProfile", profile_id: int = 1,
               periods=None) -> dict:
    return {
        "charging_profile_id": profile_id, "stack_level": stack, "charging_profile_purpose": purpose,
        "charging_profile_kind": "Absolute",
        "charging_schedule": {"charging_rate_unit": unit, "charging_schedule_period": periods or [
            {"start_period": 0, "limit": float(limit)}]},
    }


def test_follows_a_current_limit_and_pauses_below_six_amps():
    cs = CentralSystem(charger(ev(minutes=120), interval=60))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(minutes=2))
    assert cs.last_sample()[("Current.Import", "L1")] == "32.0"
    status, messages = cs.sim.set_charging_profile(1, tx_default("10.5"))
    assert status == "Accepted"
    cs.deliver(messages)
    cs.deliver(cs.sim.advance(T0 + timedelta(minutes=3)))
    assert cs.last_sample()[("Current.Import", "L1")] == "10.5"
    assert cs.last_sample()[("Power.Active.Import", "")] == "2415"
    status, messages = cs.sim.set_charging_profile(1, tx_default("4", stack=1, profile_id=2))
    cs.deliver(messages)
    assert cs.actions("StatusNotification")[-1].payload["status"] == "SuspendedEVSE"
    before = cs.sim.connectors[1].register_wh
    cs.deliver(cs.sim.advance(T0 + timedelta(minutes=10)))
    assert cs.sim.connectors[1].register_wh == before
    assert cs.last_sample()[("Current.Import", "L1")] == "0.0"
    status, messages = cs.sim.clear_charging_profile(profile_id=2)
    cs.deliver(messages)
    assert status == "Accepted"
    assert cs.actions("StatusNotification")[-1].payload["status"] == "Charging"
    assert cs.sim.connectors[1].current_a == Decimal("10.5")


def test_a_power_limit_in_watts_and_the_charger_wide_maximum_both_apply():
    cs = CentralSystem(charger(ev(amps="32", phases=3), phases=3))
    cs.deliver(cs.sim.advance(T0))
    cs.deliver(cs.sim.set_charging_profile(1, tx_default("11040", unit="W"))[1])  # 16 A on 3 phases
    assert cs.sim.connectors[1].current_a == Decimal("16.0")
    cs.deliver(cs.sim.set_charging_profile(0, tx_default("12", purpose="ChargePointMaxProfile", profile_id=9))[1])
    assert cs.sim.connectors[1].current_a == Decimal("12.0")
    assert cs.sim.set_charging_profile(1, tx_default("12", purpose="ChargePointMaxProfile"))[0] == "Rejected"


def test_a_tx_profile_needs_a_transaction_and_ends_with_it():
    sim = charger(ev(minutes=30, arrive_s=600))
    assert sim.set_charging_profile(1, tx_default("8", purpose="TxProfile"))[0] == "Rejected"
    cs = CentralSystem(sim)
    cs.run(timedelta(minutes=11))
    assert sim.set_charging_profile(1, tx_default("8", purpose="TxProfile"))[0] == "Accepted"
    assert sim.connectors[1].current_a == Decimal("8.0")
    cs.run(timedelta(minutes=45))
    assert sim.profiles.profiles[1] == []


def test_schedule_periods_change_the_limit_over_time():
    cs = CentralSystem(charger(ev(minutes=120)))
    cs.deliver(cs.sim.advance(T0))
    cs.deliver(cs.sim.set_charging_profile(1, tx_default("0", periods=[
        {"start_period": 0, "limit": 16}, {"start_period": 600, "limit": 8}]))[1])
    assert cs.sim.connectors[1].current_a == Decimal("16.0")
    cs.deliver(cs.sim.advance(T0 + timedelta(minutes=11)))
    assert cs.sim.connectors[1].current_a == Decimal("8.0")


def test_charging_tapers_above_80_percent_and_stops_when_full():
    cs = CentralSystem(charger(ev(minutes=600, battery_kwh=10, soc=79)))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(minutes=5))
    assert cs.sim.connectors[1].current_a < Decimal("32")
    cs.run(timedelta(minutes=590), step_s=60)
    connector = cs.sim.connectors[1]
    assert connector.ev_energy_wh == 10_000
    assert connector.status == "SuspendedEV"
    assert connector.power_w == 0


def test_remote_stop_then_the_ev_leaves():
    cs = CentralSystem(charger(ev(minutes=30)))
    cs.deliver(cs.sim.advance(T0))
    assert cs.sim.remote_stop(99)[0] == "Rejected"
    status, messages = cs.sim.remote_stop(1)
    cs.deliver(messages)
    assert status == "Accepted"
    assert cs.actions("StopTransaction")[0].payload["reason"] == "Remote"
    assert cs.actions("StatusNotification")[-1].payload["status"] == "Finishing"
    cs.run(timedelta(minutes=31), step_s=60)
    assert cs.actions("StatusNotification")[-1].payload["status"] == "Available"
    assert len(cs.actions("StopTransaction")) == 1


def test_a_refused_tag_does_not_charge_and_remote_start_can_start_it():
    sim = charger(ev(minutes=30))
    messages = sim.advance(T0)
    assert [m.action for m in messages] == ["StatusNotification", "Authorize"]
    assert sim.authorized(1, "Invalid") == []
    assert sim.connectors[1].status == "Preparing"
    status, messages = sim.remote_start("APP-TOKEN", 1)
    assert status == "Accepted"
    assert messages[0].action == "StartTransaction" and messages[0].payload["id_tag"] == "APP-TOKEN"


def test_a_start_refused_by_the_central_system_stops_deauthorized():
    sim = charger(ev(minutes=30))
    sim.advance(T0)
    start = sim.authorized(1, "Accepted")[0]
    messages = sim.transaction_started(start.tx_ref, 7, "Blocked")
    stop = next(m for m in messages if m.action == "StopTransaction")
    assert stop.payload["reason"] == "DeAuthorized"
    assert sim.resolve(stop)["transaction_id"] == 7


def test_offline_transaction_messages_are_kept_and_resolved_later():
    sim = charger(ev(minutes=10), interval=60)
    sim.advance(T0)
    start = sim.authorized(1, "Accepted")[0]
    messages = sim.advance(T0 + timedelta(minutes=11))
    kept = [m for m in messages if m.transactional]
    # samples at 1..9 minutes; at 10 minutes the EV leaves (StopTransaction carries the final register)
    assert [m.action for m in kept] == ["MeterValues"] * 9 + ["StopTransaction"]
    assert sim.resolve(kept[0])["transaction_id"] == -1  # no answer yet
    sim.transaction_started(start.tx_ref, 42, "Accepted")
    assert {sim.resolve(m)["transaction_id"] for m in kept} == {42}
    assert not [m for m in messages if m.action == "StatusNotification" and m.transactional]


def test_configuration_and_triggers():
    sim = charger(connectors=2)
    known, unknown = sim.get_configuration(["MeterValueSampleInterval", "NoSuchKey"])
    assert known == [{"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}]
    assert unknown == ["NoSuchKey"]
    assert sim.change_configuration("NumberOfConnectors", "4") == "Rejected"
    assert sim.change_configuration("NoSuchKey", "1") == "NotSupported"
    assert sim.change_configuration("MeterValuesSampledData", "Energy.Active.Import.Register,Temperature") \
        == "Rejected"
    assert sim.change_configuration("MeterValuesSampledData", "Energy.Active.Import.Register,Current.Import") \
        == "Accepted"
    status, messages = sim.trigger("StatusNotification", None)
    assert status == "Accepted" and [m.payload["connector_id"] for m in messages] == [0, 1, 2]
    assert sim.trigger("MeterValues", 2)[1][0].payload["meter_value"][0]["sampled_value"][0]["context"] == "Trigger"


def test_change_availability_and_unlock():
    cs = CentralSystem(charger(ev(minutes=30), connectors=2))
    cs.deliver(cs.sim.advance(T0))
    status, messages = cs.sim.change_availability(2, "Inoperative")
    assert status == "Accepted" and messages[0].payload["status"] == "Unavailable"
    assert cs.sim.change_availability(1, "Inoperative")[0] == "Scheduled"
    status, messages = cs.sim.unlock_connector(1)
    cs.deliver(messages)
    assert status == "Unlocked"
    assert cs.actions("StopTransaction")[0].payload["reason"] == "UnlockCommand"
    assert cs.sim.connectors[1].status == "Unavailable"


def test_remote_start_with_a_charging_profile_applies_it_to_the_new_transaction():
    sim = charger(ev(minutes=30))
    sim.advance(T0)
    sim.authorized(1, "Invalid")
    relative = tx_default("12", purpose="TxProfile")
    relative["charging_profile_kind"] = "Relative"
    status, messages = sim.remote_start("APP-TOKEN", 1, relative)
    assert status == "Accepted"
    sim.transaction_started(messages[0].tx_ref, 5, "Accepted")
    assert sim.connectors[1].current_a == Decimal("12.0")
    sim.remote_stop(5)
    status, messages = sim.remote_start("APP-TOKEN", 1, tx_default("9", purpose="TxProfile"))  # Absolute, from now
    sim.transaction_started(messages[0].tx_ref, 6, "Accepted")
    assert sim.connectors[1].current_a == Decimal("9.0")


def delayed(low: int, high: int, charge_point_id: str = "SIM-1") -> ChargerSim:
    sim = charger(ev(minutes=120), interval=60)
    sim.config = replace(sim.config, profile_delay_s=(low, high), charge_point_id=charge_point_id)
    return sim


def tx_profile(limit: str, profile_id: int = 5) -> dict:
    return {**tx_default(limit, purpose="TxProfile", profile_id=profile_id), "charging_profile_kind": "Relative"}


def test_a_profile_is_answered_at_once_and_followed_after_the_charger_s_delay():
    cs = CentralSystem(delayed(3, 3))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(seconds=30))
    assert cs.sim.connectors[1].current_a == Decimal("32.0")
    status, messages = cs.sim.set_charging_profile(1, tx_profile("10"))
    assert status == "Accepted" and messages == []
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=32)))
    assert cs.sim.connectors[1].current_a == Decimal("32.0")  # 2 s later: not yet
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=33)))
    assert cs.sim.connectors[1].current_a == Decimal("10.0")  # 3 s later: followed
    # A profile it would refuse is refused at once, delay or not.
    assert cs.sim.set_charging_profile(1, tx_default("12", purpose="ChargePointMaxProfile"))[0] == "Rejected"


def test_profiles_are_followed_in_the_order_received_whatever_their_delays():
    """A 16 A profile that takes 5 s, then a 0 A one a second later that takes 1 s: the car ends at 0 A, as a real
    charger would leave it (it applies its profiles in order; only the car is slow), not at the 16 A that landed
    last. The other order let a gun draw 15.5 A for minutes while the platform believed it paused."""
    charge_point_id = next(f"SIM-{n}" for n in range(1000)
                           if delayed(1, 5, f"SIM-{n}").profile_delay(0) == 5
                           and delayed(1, 5, f"SIM-{n}").profile_delay(1) == 1)
    cs = CentralSystem(delayed(1, 5, charge_point_id))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(seconds=30))
    assert cs.sim.set_charging_profile(1, tx_profile("16"))[0] == "Accepted"
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=31)))
    assert cs.sim.set_charging_profile(1, tx_profile("0", profile_id=6))[0] == "Accepted"
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=33)))
    assert cs.sim.connectors[1].current_a == Decimal("32.0")  # neither followed yet: the first takes 5 s
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=36)))
    assert cs.sim.connectors[1].current_a == Decimal("0")
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=60)))
    assert cs.sim.connectors[1].current_a == Decimal("0") and cs.sim.pending_profiles == []


def test_the_delays_stay_in_their_range_and_repeat_from_run_to_run():
    sim = delayed(1, 5)
    delays = [sim.profile_delay(n) for n in range(200)]
    assert set(delays) == {1, 2, 3, 4, 5}
    assert delays == [delayed(1, 5).profile_delay(n) for n in range(200)]
    assert delays != [delayed(1, 5, "SIM-2").profile_delay(n) for n in range(200)]  # chargers differ
    with pytest.raises(ValueError, match="profile_delay_s"):
        replace(sim.config, profile_delay_s=(5, 1))


def test_a_delayed_tx_profile_for_a_transaction_that_ended_is_dropped():
    cs = CentralSystem(delayed(4, 4))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(seconds=10))
    assert cs.sim.set_charging_profile(1, tx_profile("8"))[0] == "Accepted"
    transaction_id = cs.sim.connectors[1].tx.transaction_id
    cs.deliver(cs.sim.remote_stop(transaction_id)[1])
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=20)))
    assert cs.sim.pending_profiles == [] and cs.sim.profiles.profiles.get(1, []) == []


@pytest.mark.parametrize("speed", [1, 60])
def test_a_lease_lasts_its_real_seconds_whatever_the_simulation_s_speed(speed):
    """The platform puts a lease in a relative TxProfile (16 A for 120 s, then a 6 A floor) and renews it on its
    own, real, clock: at speed N the simulated charger counts the schedule in real seconds too, or the lease
    would end after 2 real seconds at 60x, long before any renewal."""
    config = replace(charger(ev(minutes=24 * 60)).config, schedule_speed=speed)
    cs = CentralSystem(ChargerSim(config, [ev(minutes=24 * 60)], T0, registers_wh={1: 1_000_000}))
    cs.deliver(cs.sim.advance(T0))
    cs.run(timedelta(seconds=10))
    leased = {**tx_profile("16"), "charging_schedule": {"charging_rate_unit": "A", "charging_schedule_period": [
        {"start_period": 0, "limit": 16.0}, {"start_period": 120, "limit": 6.0}]}}
    assert cs.sim.set_charging_profile(1, leased)[0] == "Accepted"
    before_floor = T0 + timedelta(seconds=119 * speed)
    cs.deliver(cs.sim.advance(before_floor))
    assert cs.sim.connectors[1].current_a == Decimal("16.0")
    cs.deliver(cs.sim.advance(T0 + timedelta(seconds=121 * speed)))
    assert cs.sim.connectors[1].current_a == Decimal("6.0")


def test_the_schedule_speed_must_be_positive():
    with pytest.raises(ValueError, match="schedule_speed"):
        replace(charger(ev()).config, schedule_speed=0)
