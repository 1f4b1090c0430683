# The audited month is paid through payments: the same localstripe and Stripe settings as tests/payments.
from tests.payments.conftest import localstripe, stripe_settings  # noqa: F401
