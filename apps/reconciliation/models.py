"""The building's utility bills, their reconciliation with the chargers, true-ups and the chargers' cost.

Energy is integer Wh (a bill's kWh with three decimals is exact in Wh); money is Decimal.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _

MONEY = {"max_digits": 14, "decimal_places": 3}


class ReconciliationSettings(models.Model):
    """How the building shares its bill with the EV chargers (one row; defaults when there is none)."""

    class DemandRule(models.TextChoices):
        ENERGY = "energy", _("Proportional to kWh")
        PEAK = "peak", _("EV load at the building's peak quarter hour")

    demand_rule = models.CharField(max_length=8, choices=DemandRule.choices, default=DemandRule.ENERGY)
    include_fixed = models.BooleanField(default=False, help_text="Share the bill's fixed charges by kWh too.")
    loss_alert_percent = models.DecimalField(max_digits=5, decimal_places=2, default=Decimal(8))
    true_ups = models.BooleanField(default=True, help_text="Approving a reconciliation adds true-up lines.")
    true_up_minimum = models.DecimalField(**MONEY, default=Decimal("1.00"),
                                          help_text="Smaller true-ups (either way) are waived.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"demand by {self.demand_rule}"


class UtilityBill(models.Model):
    period_start = models.DateField()
    period_end = models.DateField(help_text="Inclusive: the bill's last day.")
    energy_wh = models.BigIntegerField(help_text="The building's consumption on the bill.")
    energy_charges = models.DecimalField(**MONEY)
    demand_charges = models.DecimalField(**MONEY, default=Decimal(0))
    fixed_charges = models.DecimalField(**MONEY, default=Decimal(0))
    taxes = models.DecimalField(**MONEY, default=Decimal(0))
    currency = models.CharField(max_length=3)
    ev_submeter_wh = models.BigIntegerField(null=True, blank=True, help_text="The EV sub-meter, when there is one.")
    entered_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    entered_at = models.DateTimeField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-period_start", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(period_end__gte=models.F("period_start")),
                                   name="utility_bill_period_order"),
            models.UniqueConstraint(fields=["period_start", "period_end"], name="utility_bill_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"bill {self.period_start}..{self.period_end}"

    @property
    def total(self) -> Decimal:
        return self.energy_charges + self.demand_charges + self.fixed_charges + self.taxes


class Reconciliation(models.Model):
    """The figures of one bill, computed from the chargers (kept as computed); approved once."""

    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        APPROVED = "approved", _("Approved")

    bill = models.OneToOneField(UtilityBill, on_delete=models.PROTECT, related_name="reconciliation")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    sessions_wh = models.BigIntegerField()
    ev_wh = models.BigIntegerField()
    losses_percent = models.DecimalField(max_digits=7, decimal_places=2, null=True, blank=True)
    ev_cost = models.DecimalField(**MONEY)
    revenue = models.DecimalField(**MONEY)
    shortfall = models.DecimalField(**MONEY)
    snapshot = models.JSONField(help_text="The whole report, as apps.reconciliation.services stores it.")
    computed_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.PROTECT,
                                    related_name="+")

    class Meta:
        ordering = ["-bill__period_start"]

    def __str__(self) -> str:
        return f"reconciliation of {self.bill}"


class TrueUp(models.Model):
    """What a resident owes (or is credited) so the HOA is made whole; on one statement, once."""

    reconciliation = models.ForeignKey(Reconciliation, on_delete=models.PROTECT, related_name="true_ups")
    resident = models.ForeignKey("buildings.Resident", on_delete=models.PROTECT, related_name="true_ups")
    amount = models.DecimalField(**MONEY, help_text="Positive: owed to the HOA; negative: a credit.")
    reason = models.CharField(max_length=300)
    statement = models.ForeignKey("statements.Statement", null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+")
    line = models.OneToOneField("statements.StatementLine", null=True, blank=True, on_delete=models.PROTECT,
                                related_name="true_up")
    applied_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["reconciliation", "resident_id"]
        constraints = [
            models.UniqueConstraint(fields=["reconciliation", "resident"], name="true_up_once_per_resident"),
        ]

    def __str__(self) -> str:
        return f"true-up {self.amount} for {self.resident_id}"


class ChargerInvestment(models.Model):
    """What the HOA paid for the charging equipment."""

    description = models.CharField(max_length=200)
    amount = models.DecimalField(**MONEY)
    date = models.DateField()
    entered_by = models.ForeignKey("accounts.User", null=True, blank=True, on_delete=models.PROTECT,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["date", "id"]

    def __str__(self) -> str:
        return f"{self.description}: {self.amount}"
