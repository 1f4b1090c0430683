from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

import pytest

from apps.electrical import latest
from apps.electrical.models import SiteMeter
from tests import factories

MAPLE = "maple-court.localhost"
HARBOR = "harbor-view.localhost"
OAK = "oak-tower.localhost"


@dataclass
class Meter:
    key: str
    token: str
    row: SiteMeter


def unique_address() -> str:
    """A fresh client address, so that rate limits of other tests do not apply."""
    return f"10.{random.randint(0, 255)}.{random.randint(0, 255)}.{random.randint(1, 254)}"


@pytest.fixture
def make_api_meter(world):
    made: list[tuple] = []

    def make(condo=None, stale_after_s: int = 15) -> Meter:
        condo = condo or world.maple
        key = f"main-{uuid.uuid4().hex[:8]}"
        token = f"token-{uuid.uuid4().hex}"
        row = factories.site_meter(condo, {"id": key, "source": "api", "token": token, "stale_after_s": stale_after_s})
        latest.forget(condo.schema_name)
        made.append((condo, key))
        return Meter(key, token, row)

    yield make
    for condo, _key in made:
        latest.forget(condo.schema_name)


@pytest.fixture
def maple_meter(make_api_meter) -> Meter:
    return make_api_meter()
