"""Make pytest-django create the test database for tests that only use ``committed``.

pytest-django sets up a test database only when some collected test asks for
``db`` (or the django_db mark). A run of tests that all use ``committed``,
``world`` or ``test_database_url`` (all built on ``_test_database_only`` in
tests/conftest.py) would otherwise talk to the database named in DATABASE_URL.
"""

from __future__ import annotations

import pytest_django.fixtures as _fixtures

_original = _fixtures._get_databases_for_test


def _databases_for_test(test):
    databases, serialized = _original(test)
    # fixturenames holds every fixture the test needs, directly or through other fixtures.
    if not databases and "_test_database_only" in getattr(test, "fixturenames", ()):
        return ("default",), False
    return databases, serialized


_fixtures._get_databases_for_test = _databases_for_test
