# Real chargers over the real OCPP consumer, as the OCPP tests have them.
from tests.ocpp.conftest import charger_id, connected, new_charger  # noqa: F401
