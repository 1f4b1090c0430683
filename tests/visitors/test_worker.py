"""The stop reaches the settlement through the real machinery: the charging app's stop hook queues the Celery task
once the stop commits, a real worker (the Procfile's) captures at localstripe and mails through a real SMTP
server. Nothing is called by hand after the visitor's StopTransaction."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from apps.visitors.models import Visit
from tests.helpers import async_wait_for
from tests.mailserver import MailServer
from tests.payments.conftest import stripe_env
from tests.servers import CeleryWorker, database_url_for_subprocesses
from tests.visitors.conftest import codes_of, in_thread, pay
from tests.visitors.visits import charge, latest_charge, start_visit, visit_of

pytestmark = pytest.mark.usefixtures("stripe_ready")


@pytest.fixture
def worker_and_mail(localstripe, committed, tmp_path):
    mail = MailServer()
    mail.start()
    worker = CeleryWorker(database_url_for_subprocesses(), log_path=tmp_path / "worker.log", loglevel="INFO", env={
        **stripe_env(localstripe), "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "127.0.0.1", "EMAIL_PORT": str(mail.port)}).start()
    try:
        yield mail.inbox, tmp_path / "worker.log"
    finally:
        worker.stop()
        mail.stop()


async def test_the_stop_hook_has_a_worker_capture_and_mail_the_receipt(maple_schema, visitor_charger, localstripe,
                                                                      worker_and_mail):
    inbox, log = worker_and_mail
    code = (await in_thread(codes_of, maple_schema, visitor_charger.charge_point_id))[1]
    started = await in_thread(pay, localstripe, code, "10.00", "worker@example.com")
    await start_visit(visitor_charger, started)
    await charge(visitor_charger, maple_schema, started, minutes=46)

    async def settled():
        visit = await in_thread(visit_of, maple_schema, started.token)
        return visit if visit.receipt_sent_at is not None else None

    # The charger keeps answering meanwhile (the worker also syncs its local list after the boot).
    pump = asyncio.ensure_future(visitor_charger.settle(120))
    try:
        visit = await async_wait_for(settled, 120, interval=0.5, what=f"the worker's settlement ({log})")
    finally:
        pump.cancel()
    # 46 minutes: 4 steps of 15 minutes at $2.40/h.
    assert (visit.status, visit.captured_amount) == (Visit.Status.CAPTURED, Decimal("2.40"))
    charge_obj = latest_charge(localstripe, started.intent_id)
    assert charge_obj["captured"] and charge_obj["amount"] - charge_obj["amount_refunded"] == 240
    assert [m["Subject"] for m in inbox.to("worker@example.com")] == ["Your charging receipt, Maple Court"]
