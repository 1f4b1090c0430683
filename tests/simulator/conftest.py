from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.servers import Daphne


@pytest.fixture
def daphne(test_database_url, tmp_path) -> Iterator[Daphne]:
    server = Daphne(test_database_url, tmp_path / "daphne.log")
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:8].upper()
