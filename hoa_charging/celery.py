import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")

app = Celery("hoa_charging")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic tasks. The DatabaseScheduler (django-celery-beat) copies these into
# its tables at start-up, where managers can see and pause them in the admin.
# (LOADBALANCING_REFRESH_S is checked with the settings; this module is imported before they are.)
app.conf.beat_schedule = {
    "loadbalancing-rebalance-all": {
        "task": "apps.loadbalancing.tasks.rebalance_all",
        "schedule": float(os.environ.get("LOADBALANCING_REFRESH_S") or 30),
    },
    "loadbalancing-purge-old-runs": {"task": "apps.loadbalancing.tasks.purge_old_runs", "schedule": 24 * 3600.0},
    "purge-expired-web-sessions": {
        "task": "apps.core.tasks.purge_expired_web_sessions",
        "schedule": 3600.0,
    },
    "ocpp-heartbeat-watchdog": {"task": "apps.ocpp.tasks.heartbeat_watchdog", "schedule": 60.0},
    "ocpp-purge-old-frames": {"task": "apps.ocpp.tasks.purge_old_frames", "schedule": 24 * 3600.0},
    "ocpp-purge-refused-connections": {
        "task": "apps.ocpp.tasks.purge_refused_connections", "schedule": 24 * 3600.0,
    },
    "ocpp-close-stale-sessions": {"task": "apps.ocpp.tasks.close_stale_sessions", "schedule": 900.0},
    "ocpp-sync-all-local-lists": {"task": "apps.ocpp.tasks.sync_all_local_lists", "schedule": 3600.0},
    "ocpp-expire-reservations": {"task": "apps.ocpp.tasks.expire_reservations", "schedule": 60.0},
    # Each building's month closes at the first run after its own local midnight on the 1st.
    "statements-close-due-periods": {"task": "apps.statements.tasks.close_due_periods", "schedule": 600.0},
    "statements-follow-up-unpaid": {"task": "apps.statements.tasks.follow_up_unpaid", "schedule": 3600.0},
    "site-meters-check-stale": {"task": "apps.electrical.tasks.check_site_meters", "schedule": 15.0},
    "site-meters-roll-up": {"task": "apps.electrical.tasks.roll_up_site_readings", "schedule": 3600.0},
    "visitors-sweep": {"task": "apps.visitors.tasks.sweep_visits", "schedule": 60.0},
    "billing-price-pending-sessions": {"task": "apps.billing.tasks.price_pending_sessions", "schedule": 900.0},
    # Stripe events stored while the broker was down (their task never queued).
    "payments-process-pending-stripe-events": {
        "task": "apps.payments.tasks.process_pending_stripe_events", "schedule": 300.0,
    },
    "ocpp-dispatch-all-limits": {"task": "apps.ocpp.tasks.dispatch_all_limits", "schedule": 30.0},
    "ocpp-check-limit-compliance": {"task": "apps.ocpp.tasks.check_limit_compliance", "schedule": 60.0},
    "alerts-email-new": {"task": "apps.console.tasks.email_new_alerts", "schedule": 60.0},
}
