import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hoa_charging.settings")

app = Celery("hoa_charging")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic tasks. The DatabaseScheduler (django-celery-beat) copies these into
# its tables at start-up, where managers can see and pause them in the admin.
app.conf.beat_schedule = {
    "purge-expired-web-sessions": {
        "task": "apps.core.tasks.purge_expired_web_sessions",
        "schedule": 3600.0,
    },
}
