"""Make pytest-django create the test database for tests that only use ``committed``.

pytest-django sets up a test database only when some collected test asks for
``db`` (or the django_db mark). A run of tests that all use ``committed`` would
otherwise talk to the development database named in DATABASE_URL.
"""

from __future__ import annotations

import pytest_django.fixtures as _fixtures

_original = _fixtures._get_databases_for_test


def _databases_for_test(test):
    databases, serialized = _original(test)
    if not databases and "committed" in getattr(test, "fixturenames", ()):
        return ("default",), False
    return databases, serialized


_fixtures._get_databases_for_test = _databases_for_test
