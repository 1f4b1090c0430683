"""OCPP 1.6 validation with a fast path (apps/ocpp/schemas.py) and keys converted once (apps/ocpp/payloads.py).

The rule: the fast path changes nothing a charger sees. Every payload gets exactly the ocpp package's
verdict, the same error type and the same words, and the handlers get exactly the package's keys. Proven
on thousands of mutated payloads of every action a charger sends and of every answer the platform gives.
"""

from __future__ import annotations

import copy
import random

import pytest
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.exceptions import OCPPError
from ocpp.messages import Call, CallResult, MessageType, validate_payload
from ocpp.v16 import call_result
from ocpp.v16.datatypes import IdTagInfo
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus

from apps.ocpp import payloads, schemas
from tests.ocpp.helpers import CHARGER_CALLS, NASTY_VALUES, mutate

TAG_INFO = {"status": "Accepted", "expiryDate": "2026-02-01T00:00:00Z", "parentIdTag": "BUILDING"}
# What the platform answers, one valid payload per action.
ANSWERS = {
    "BootNotification": {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"},
    "Heartbeat": {"currentTime": "2026-01-01T00:00:00Z"},
    "StatusNotification": {},
    "Authorize": {"idTagInfo": TAG_INFO},
    "StartTransaction": {"transactionId": 7, "idTagInfo": TAG_INFO},
    "StopTransaction": {"idTagInfo": TAG_INFO},
    "MeterValues": {},
    "DataTransfer": {"status": "Accepted", "data": "x"},
    "DiagnosticsStatusNotification": {},
    "FirmwareStatusNotification": {},
}
# Where two Draft 4 implementations could differ: integral floats, the length limits, enumerations' case.
BOUNDARY_VALUES = [1.0, 0.0, -1.0, 2.5, "x" * 20, "x" * 21, "x" * 25, "x" * 26, "x" * 50, "x" * 51, "x" * 255,
                   "x" * 256, "x" * 500, "x" * 501, "accepted", "ACCEPTED", "Accepted", "Available", "L1", "l1"]


def _mutations(seed: dict, rng: random.Random):
    """Mutations of ``seed``: nasty and boundary values, removed keys, and now and then a key no schema has."""
    for _ in range(300):
        payload = mutate(seed, rng)
        if rng.random() < 0.5:
            paths = list(_dict_paths(payload))
            path = rng.choice(paths)
            target = payload
            for part in path:
                target = target[part]
            if rng.random() < 0.15:
                target["unknownKey"] = 1
            elif target:
                target[rng.choice(sorted(target))] = copy.deepcopy(rng.choice(BOUNDARY_VALUES))
        yield payload


def _dict_paths(value, path=()):
    if isinstance(value, dict):
        yield path
        for key, item in value.items():
            yield from _dict_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _dict_paths(item, (*path, index))


async def _verdict(validate, message) -> tuple[str, str] | None:
    try:
        await validate(message)
    except OCPPError as error:
        return type(error).__name__, str(error)
    return None


async def _package(message):
    return await validate_payload(message, schemas.OCPP_VERSION)


@pytest.mark.parametrize("kind", ["charger calls", "platform answers"])
async def test_every_payload_gets_the_ocpp_packages_verdict_word_for_word(kind):
    seeds = CHARGER_CALLS if kind == "charger calls" else ANSWERS
    rng = random.Random(20261201)
    fast_accepted = refused = 0
    for action, seed in sorted(seeds.items()):
        for payload in [seed, *_mutations(seed, rng)]:
            if kind == "charger calls":
                message = Call(unique_id="1", action=action, payload=payload)
            else:
                message = CallResult(unique_id="1", action=action, payload=payload)
            ours = await _verdict(schemas.validate, copy.deepcopy(message))
            theirs = await _verdict(_package, copy.deepcopy(message))
            assert ours == theirs, (action, payload)
            fast_accepted += schemas.fast_accepts(message)
            refused += theirs is not None
    # Not vacuous: both paths were taken, thousands of times.
    assert fast_accepted > 500 and refused > 1000, (fast_accepted, refused)


def test_the_fast_path_covers_what_chargers_send_and_leaves_the_decimal_schemas_to_the_package():
    for action in CHARGER_CALLS:
        assert schemas.compiled(MessageType.Call, action) is not None, action
        assert schemas.compiled(MessageType.CallResult, action) is not None, action
    for message_type_id, action in schemas.DECIMAL_SCHEMAS:
        assert schemas.compiled(message_type_id, action) is None
    assert schemas.compiled(MessageType.Call, "NoSuchAction") is None


async def test_a_charging_limit_of_one_decimal_is_valid_as_the_package_reads_it():
    # 21.4 is no multiple of 0.1 in binary floating point: only the package's decimal reading takes it.
    profile = {"connectorId": 1, "csChargingProfiles": {
        "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute", "chargingSchedule": {
            "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 21.4}]}}}
    await schemas.validate(Call(unique_id="1", action="SetChargingProfile", payload=profile))


def test_keys_are_converted_as_the_ocpp_package_converts_them():
    rng = random.Random(7)
    for seed in [*CHARGER_CALLS.values(), *ANSWERS.values()]:
        for payload in [seed, *(mutate(seed, rng) for _ in range(50))]:
            assert payloads.to_snake(payload) == camel_to_snake_case(payload)
            snake = camel_to_snake_case(payload)
            assert payloads.to_camel(snake) == snake_to_camel_case(snake)
    answers = [
        call_result.BootNotification(current_time="2026-01-01T00:00:00Z", interval=300,
                                     status=RegistrationStatus.accepted),
        call_result.StartTransaction(transaction_id=7, id_tag_info=IdTagInfo(status=AuthorizationStatus.accepted)),
        call_result.MeterValues(),
    ]
    for answer in answers:
        assert payloads.response_payload(answer) == snake_to_camel_case(remove_nones(serialize_as_dict(answer)))
    assert payloads.response_payload(answers[1]) == {"transactionId": 7, "idTagInfo": {"status": "Accepted"}}


def test_the_keys_remembered_are_bounded():
    payloads.snake_key.cache_clear()
    for n in range(payloads.KEYS_REMEMBERED + 100):
        payloads.snake_key(f"junkKey{n}")
    assert payloads.snake_key.cache_info().currsize == payloads.KEYS_REMEMBERED
    assert payloads.snake_key("chargePointVendor") == "charge_point_vendor"


def test_nasty_values_include_what_the_schemas_must_refuse():
    # Guard for the fuzz corpus the tests above share with tests/ocpp/test_hostile.py.
    assert any(isinstance(v, bool) for v in NASTY_VALUES) and "x" * 5000 in NASTY_VALUES
