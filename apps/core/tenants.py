"""Running code inside a condominium's schema outside a web request (tasks, consumers, commands)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django_tenants.utils import get_public_schema_name, schema_context

from apps.tenancy.models import Condominium


@contextmanager
def in_condominium(condominium: Condominium | str) -> Iterator[Condominium]:
    """Enter the schema of a condominium given as an object or by schema name."""
    if isinstance(condominium, str):
        with schema_context(get_public_schema_name()):
            condominium = Condominium.objects.get(schema_name=condominium)
    with schema_context(condominium.schema_name):
        yield condominium


def all_condominiums() -> list[Condominium]:
    with schema_context(get_public_schema_name()):
        return list(Condominium.objects.exclude(schema_name=get_public_schema_name()).order_by("schema_name"))
