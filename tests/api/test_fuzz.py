"""Schemathesis against the running server (a real daphne): every operation of the OpenAPI description, with
generated query parameters, valid and not, for a manager of the building: never a 500, and every answer of a
documented status matches its schema. The same operations for a resident of another building: only 404."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from asgiref.sync import sync_to_async
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.api.test_api import HOST, token_of
from tests.servers import daphne_running

EXAMPLES = 40  # per operation and mode


@pytest.fixture(scope="module")
def daphne(tmp_path_factory, _test_database_only):
    with daphne_running(tmp_path_factory) as server:
        yield server


def _operations(daphne):
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{daphne.port}/api/schema/?format=json",
                                           headers={"Host": HOST})
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.path.startswith("/api/v1/")]


def _fuzz(operation, base_url: str, headers: dict, check) -> int:
    return sum(_fuzz_mode(operation, base_url, headers, check, mode)
               for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE))


def _fuzz_mode(operation, base_url: str, headers: dict, check, mode) -> int:
    seen = {"n": 0}
    session = requests.Session()

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), derandomize=True)
    def run(case):
        response = case.call(base_url=base_url, headers=headers, session=session)
        check(case, response)
        seen["n"] += 1

    run()
    return seen["n"]


async def test_no_request_makes_the_api_answer_500_and_answers_match_the_schema(daphne, world, committed):
    token = await sync_to_async(token_of)(world.acme_manager)
    operations = await sync_to_async(_operations)(daphne)
    assert {op.path for op in operations} >= {"/api/v1/chargers/", "/api/v1/sessions/", "/api/v1/statements/",
                                                "/api/v1/tariffs/", "/api/v1/site-meter-readings/"}

    def check(case, response):
        assert response.status_code < 500, f"{case.method} {case.formatted_path} {case.query}: {response.text[:300]}"
        if response.status_code == 200:
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])

    tried = {}
    for operation in operations:
        tried[operation.path] = await sync_to_async(_fuzz)(operation, f"http://127.0.0.1:{daphne.port}",
                                                           {"Host": HOST, "Authorization": f"Token {token}"}, check)
    # Sessions and readings take parameters: both valid and invalid ones were sent.
    assert tried["/api/v1/sessions/"] > EXAMPLES and tried["/api/v1/site-meter-readings/"] > EXAMPLES


async def test_a_resident_of_another_building_reaches_no_operation(daphne, world, committed):
    token = await sync_to_async(token_of)(world.oak_resident)
    operations = await sync_to_async(_operations)(daphne)

    def check(case, response):
        assert response.status_code == 404, f"{case.method} {case.formatted_path} {case.query}: {response.status_code}"

    for operation in operations:
        await sync_to_async(_fuzz)(operation, f"http://127.0.0.1:{daphne.port}",
                                   {"Host": HOST, "Authorization": f"Token {token}"}, check)
