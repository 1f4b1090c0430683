"""A queryset compiled once and run with new values gives what the queryset gives, in the schema it runs in."""

from __future__ import annotations

import pytest

from apps.charging.models import ChargePoint
from apps.core.compiled import CompiledValues
from apps.core.tenants import in_schema

pytestmark = pytest.mark.usefixtures("committed")

BY_ID = CompiledValues(lambda cp_id: ChargePoint.objects.filter(charge_point_id__iexact=cp_id)
                       .order_by("pk").values("pk", "charge_point_id", "enabled"))


def _ids(schema: str) -> list[str]:
    with in_schema(schema):
        return list(ChargePoint.objects.order_by("pk").values_list("charge_point_id", flat=True))


def test_the_rows_are_the_querysets_for_every_value_and_building(world):
    for condo in (world.maple, world.harbor_view):
        ids = _ids(condo.schema_name)
        assert ids, condo
        with in_schema(condo.schema_name):
            for cp_id in [*ids, ids[0].lower(), "NO-SUCH-CHARGER", "x'); DROP TABLE charging_chargepoint; --"]:
                assert BY_ID.rows(cp_id) == list(ChargePoint.objects.filter(charge_point_id__iexact=cp_id)
                                                 .order_by("pk").values("pk", "charge_point_id", "enabled"))
    # The same compiled query reads the building it runs in, never another's.
    maple_id = _ids(world.maple.schema_name)[0]
    with in_schema(world.oak.schema_name):
        assert maple_id not in _ids(world.oak.schema_name) and BY_ID.rows(maple_id) == []


def test_a_parameter_that_does_not_reach_the_sql_unchanged_is_refused(world):
    wrapped = CompiledValues(lambda cp_id: ChargePoint.objects.filter(charge_point_id__contains=cp_id).values("pk"))
    not_values = CompiledValues(lambda cp_id: ChargePoint.objects.filter(charge_point_id=cp_id))
    with in_schema(world.maple.schema_name):
        with pytest.raises(ValueError, match="does not reach the SQL unchanged"):
            wrapped.rows("CP")
        with pytest.raises(TypeError, match="values"):
            not_values.rows("CP")
