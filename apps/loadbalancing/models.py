"""The record of each balancing run (tenant schema): what the balancer saw, decided and why.

Kept ``LOADBALANCING_RUN_RETENTION_DAYS``; the building page shows the latest ("why is my car slow"), the
board's audit and the capacity report read the history.
"""

from __future__ import annotations

from django.db import models


class BalancingRun(models.Model):
    started_at = models.DateTimeField(db_index=True)
    trigger = models.CharField(max_length=120, help_text="What asked for it: a reading, a session, the timer...")
    duration_us = models.PositiveIntegerField(help_text="Reading the inputs, allocating and recording the limits.")
    allocate_us = models.PositiveIntegerField(help_text="The allocation alone.")
    meter_age_ms = models.IntegerField(null=True, blank=True, help_text="Age of the site-meter reading used.")
    sessions = models.PositiveSmallIntegerField(default=0)
    changed = models.PositiveSmallIntegerField(default=0, help_text="Limits that changed.")
    # {node key: [L1, L2, L3]} as strings (A): the non-EV load believed at each metered node.
    non_ev_a = models.JSONField(default=dict)
    # {connector key: {"pk", "a" | "w", "grid_a", "why", "sentence", "node", "phase", "max_a"}}
    limits = models.JSONField(default=dict)
    # {node key: {"capacity_a", "planned_a", "non_ev_a", "unmanaged_a"}}: headroom per node and phase
    nodes = models.JSONField(default=dict)
    warnings = models.JSONField(default=list)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"run {self.started_at:%Y-%m-%d %H:%M:%S} ({self.trigger})"
