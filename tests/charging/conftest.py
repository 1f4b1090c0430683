import tests.ocpp.dbsetup  # noqa: F401
