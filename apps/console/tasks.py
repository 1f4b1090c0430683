"""The console's background work: mailing new alerts to the managers who asked for them (every minute, on any
worker; each alert is claimed before it is sent, so it goes out once however many workers run this)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.urls import reverse

from apps.accounts.selectors import building_managers
from apps.alerts.services import alert_emails_send
from apps.core.tenants import all_condominiums, in_condominium
from apps.visitors.services import building_url

log = logging.getLogger(__name__)


def email_new_alerts_now() -> int:
    sent = 0
    for condo in all_condominiums():
        managers = building_managers(condo)
        with in_condominium(condo):
            try:
                sent += alert_emails_send(managers=managers, building=condo.name,
                                          inbox_url=building_url(condo, reverse("console-alerts",
                                                                                urlconf="hoa_charging.urls_tenants")))
            except Exception:
                # One building's trouble (its mail refused...) must not hold the others' back; the alert's claim
                # was given back, so the next run tries again.
                log.exception("mailing the alerts of %s failed", condo.slug)
    return sent


@shared_task
def email_new_alerts() -> int:
    return email_new_alerts_now()
