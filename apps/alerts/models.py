"""Alerts for the building's managers (tenant schema)."""

from __future__ import annotations

from django.db import models


class Alert(models.Model):
    """Something a manager should look at: a faulted connector, a charger gone offline...

    At most one open alert per (kind, charger, connector): raising it again only
    refreshes it, and it is resolved when the condition clears.
    """

    class Kind(models.TextChoices):
        CONNECTOR_FAULTED = "connector_faulted", "Connector faulted"
        CHARGER_OFFLINE = "charger_offline", "Charger offline"
        SESSION_REVIEW = "session_review", "Session needs review"
        STALE_SESSION = "stale_session", "Session left open"
        LOCAL_LIST_FAILED = "local_list_failed", "Local authorization list not in sync"
        CHARGER_MISBEHAVING = "charger_misbehaving", "Charger disconnected for misbehaving"
        SITE_METER_STALE = "site_meter_stale", "Site meter silent"
        CHARGING_LIMIT_FAILED = "charging_limit_failed", "Charging limit not applied"
        CHARGER_OVER_LIMIT = "charger_over_limit", "Charger draws above its limit"
        EV_LOSSES = "ev_losses", "EV sub-meter losses above the threshold"
        PAYMENT_FAILED = "payment_failed", "Payment failed"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        CRITICAL = "critical", "Critical"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    # What it is about: a charger's id, or for a failed payment the unit ("unit 101"); empty for the building.
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    charge_point_id = models.CharField(max_length=64, blank=True)
    connector_number = models.PositiveSmallIntegerField(null=True, blank=True)
    message = models.CharField(max_length=300)
    details = models.JSONField(default=dict, blank=True)
    raised_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    occurrences = models.PositiveIntegerField(default=1)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The managers' inbox: who took it in hand, who closed it by hand (empty: the platform, when the condition
    # cleared) and why; when its e-mail went out (apps.alerts.services.alert_emails_send, once per alert).
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=254, blank=True, help_text="E-mail of who acknowledged it.")
    resolved_by = models.CharField(max_length=254, blank=True, help_text="E-mail of who resolved it by hand.")
    resolution_note = models.CharField(max_length=300, blank=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-raised_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "charge_point_id", "connector_number"],
                condition=models.Q(resolved_at__isnull=True),
                nulls_distinct=False,
                name="alert_one_open_per_subject",
            ),
        ]

    def __str__(self) -> str:
        return self.message


class AlertEmailPreference(models.Model):
    """Whether a manager wants an e-mail for a kind of alert in this building. Without a row, the default of the
    kind applies (apps.alerts.services.EMAIL_BY_DEFAULT)."""

    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32, choices=Alert.Kind.choices)
    email = models.BooleanField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"], name="alert_email_preference_once")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind}: {'e-mail' if self.email else 'no e-mail'}"
