"""Chargers and their connectors (tenant schema)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class ChargePoint(models.Model):
    """One OCPP charger. ``charge_point_id`` is unique platform-wide (see ChargerRegistration).

    A charger removed from the commissioning file is marked ``removed_at`` and
    keeps its sessions and meter history.
    """

    charge_point_id = models.CharField(max_length=64, unique=True)
    circuit = models.ForeignKey("electrical.Circuit", on_delete=models.PROTECT, related_name="charge_points")
    enabled = models.BooleanField(default=True, help_text="A disabled charger gets Pending at boot.")
    removed_at = models.DateTimeField(null=True, blank=True)
    vendor = models.CharField(max_length=64, blank=True)
    model = models.CharField(max_length=64, blank=True)
    serial_number = models.CharField(max_length=64, blank=True)
    firmware_version = models.CharField(max_length=64, blank=True)
    meter_type = models.CharField(max_length=64, blank=True)
    meter_serial_number = models.CharField(max_length=64, blank=True)
    iccid = models.CharField(max_length=32, blank=True)
    imsi = models.CharField(max_length=32, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    is_online = models.BooleanField(default=False)
    configuration = models.JSONField(default=dict, blank=True, help_text="Keys read with GetConfiguration.")
    configuration_read_at = models.DateTimeField(null=True, blank=True, help_text="When GetConfiguration was read.")
    heartbeat_interval_s = models.PositiveIntegerField(null=True, blank=True, help_text="Sent at boot.")
    local_list_version = models.IntegerField(default=0, help_text="Version of the last SendLocalList accepted.")
    local_list_hash = models.CharField(max_length=64, blank=True, help_text="Digest of that list's content.")
    local_list_entries = models.JSONField(
        default=dict, blank=True, help_text="idTag -> idTagInfo the charger holds at local_list_version."
    )
    local_list_status = models.CharField(max_length=16, blank=True, help_text="synced, failed, not-supported...")
    local_list_note = models.CharField(max_length=300, blank=True, help_text="What the last sync did or hit.")
    local_list_synced_at = models.DateTimeField(null=True, blank=True)
    # Work claims (apps.charging.local_lists): a sync is wanted / one worker holds the charger until then.
    local_list_dirty = models.BooleanField(default=False)
    local_list_claimed_until = models.DateTimeField(null=True, blank=True)
    # Smart charging (apps.charging.smart_charging): what this charger refuses (apps.ocpp.charging_profiles.Quirks),
    # and whether every profile must be sent again (it connected or booted: it may hold none of them).
    smart_charging_quirks = models.JSONField(default=dict, blank=True, help_text="Profiles this charger refuses.")
    smart_charging_resend = models.BooleanField(default=False)
    smart_charging_note = models.CharField(max_length=300, blank=True, help_text="What the last dispatch hit.")
    smart_charging_retry_at = models.DateTimeField(
        null=True, blank=True, help_text="It did not answer: no profile is sent before then, unless it reconnects.")
    static_profiles_at = models.DateTimeField(
        null=True, blank=True, help_text="When ChargePointMaxProfile and TxDefaultProfiles were last accepted.")
    status = models.CharField(max_length=32, blank=True, help_text="Last OCPP status of connector 0.")
    error_code = models.CharField(max_length=32, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge_point_id"]

    def __str__(self) -> str:
        return self.charge_point_id


class Connector(models.Model):
    """One charging gun. ``connector_id`` is the OCPP connectorId (1, 2, ...)."""

    class PhaseRotation(models.TextChoices):
        # Single-phase connectors: the grid phase their L1 is wired to.
        L1 = "L1", "L1"
        L2 = "L2", "L2"
        L3 = "L3", "L3"
        # Three-phase connectors: grid phases wired to the connector's L1, L2, L3 (OCPP 2.0 notation).
        RST = "RST", "RST (L1, L2, L3)"
        RTS = "RTS", "RTS (L1, L3, L2)"
        SRT = "SRT", "SRT (L2, L1, L3)"
        STR = "STR", "STR (L2, L3, L1)"
        TRS = "TRS", "TRS (L3, L1, L2)"
        TSR = "TSR", "TSR (L3, L2, L1)"

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.PositiveSmallIntegerField()
    parking_spot = models.ForeignKey(
        "buildings.ParkingSpot", null=True, blank=True, on_delete=models.SET_NULL, related_name="connectors"
    )
    is_dc = models.BooleanField(default=False)
    phases = models.PositiveSmallIntegerField(default=1)
    phase_rotation = models.CharField(max_length=3, choices=PhaseRotation.choices, default=PhaseRotation.L1)
    min_current_a = models.DecimalField(max_digits=5, decimal_places=1, default=Decimal("6"))
    max_current_a = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    min_power_w = models.PositiveIntegerField(null=True, blank=True)
    max_power_w = models.PositiveIntegerField(null=True, blank=True)
    efficiency = models.DecimalField(max_digits=4, decimal_places=3, null=True, blank=True)
    status = models.CharField(max_length=32, blank=True, help_text="Last OCPP status.")
    error_code = models.CharField(max_length=32, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["charge_point__charge_point_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(fields=["charge_point", "connector_id"], name="connector_unique_per_charger"),
            models.CheckConstraint(condition=models.Q(connector_id__gte=1), name="connector_id_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.charge_point.charge_point_id}#{self.connector_id}"


class ChargingSession(models.Model):
    """One OCPP transaction.

    Times come from the charger (``started_at``, ``stopped_at``), sanity-checked
    against the server clock, which is kept too (``start_received_at``...).
    Energy is integer Wh, reconstructed by apps.charging.metering from the
    meter registers; anything doubtful sets ``needs_review`` so that billing
    does not charge an absurd amount.
    """

    class EnergySource(models.TextChoices):
        REGISTER = "register", "meterStart/meterStop"
        SAMPLES = "samples", "Meter value samples"
        MIXED = "mixed", "Registers and samples"
        NONE = "none", "No meter data"

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.PROTECT, related_name="sessions")
    connector = models.ForeignKey(Connector, null=True, blank=True, on_delete=models.PROTECT, related_name="sessions")
    connector_number = models.PositiveSmallIntegerField(help_text="OCPP connectorId as sent (0 when unknown).")
    transaction_id = models.IntegerField(unique=True, null=True, blank=True)
    id_tag = models.CharField(max_length=20, blank=True)
    resident = models.ForeignKey(
        "buildings.Resident", null=True, blank=True, on_delete=models.PROTECT, related_name="charging_sessions"
    )
    reservation_id = models.IntegerField(null=True, blank=True)
    authorization_status = models.CharField(max_length=16, blank=True, help_text="idTagInfo answered at start.")
    started_at = models.DateTimeField(null=True, blank=True, help_text="Charger's clock.")
    start_received_at = models.DateTimeField(null=True, blank=True, help_text="Server's clock.")
    meter_start_wh = models.BigIntegerField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="Charger's clock.")
    stop_received_at = models.DateTimeField(null=True, blank=True, help_text="Server's clock.")
    meter_stop_wh = models.BigIntegerField(null=True, blank=True)
    stop_id_tag = models.CharField(max_length=20, blank=True)
    stop_reason = models.CharField(max_length=32, blank=True)
    stop_message_key = models.CharField(
        max_length=120, blank=True,
        help_text="transactionId/meterStop/timestamp/idTag of the StopTransaction that ended it, as sent.",
    )
    energy_wh = models.BigIntegerField(default=0)
    energy_source = models.CharField(max_length=16, choices=EnergySource.choices, default=EnergySource.NONE)
    # What the resident asked for (PUT /api/v1/sessions/<id>/needs): the energy wanted from this session in
    # total and when the car should have it. The load balancer shares the building by them; when they are
    # empty it estimates them (apps/loadbalancing/inputs.py, docs/load-balancing.md).
    wanted_energy_wh = models.PositiveIntegerField(null=True, blank=True)
    ready_by = models.DateTimeField(null=True, blank=True)
    needs_review = models.BooleanField(default=False)
    review_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["charge_point", "connector_number"], condition=models.Q(stopped_at__isnull=True),
                         name="session_open_idx"),
        ]
        constraints = [
            # A retried StartTransaction (lost reply) must find the first one, never make a second.
            models.UniqueConstraint(
                fields=["charge_point", "connector_number", "id_tag", "started_at", "meter_start_wh"],
                name="session_start_unique",
            ),
            # A copy of a StopTransaction (a retry, or two at once) must find the session the first one ended,
            # above all one made for an unknown transactionId, which has no transactionId to find it by.
            models.UniqueConstraint(
                fields=["charge_point", "stop_message_key"], condition=~models.Q(stop_message_key=""),
                name="session_stop_message_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"session {self.transaction_id} on {self.charge_point_id}#{self.connector_number}"

    @property
    def is_open(self) -> bool:
        return self.stopped_at is None

    def flag(self, reason: str) -> None:
        self.needs_review = True
        if reason not in self.review_reason:
            self.review_reason = f"{self.review_reason}\n{reason}".strip()


class MeterValue(models.Model):
    """One sampled value of a MeterValues message or of StopTransaction's transactionData.

    Identical samples re-sent after a reconnect hit the unique constraint and are
    stored once. Empty strings (not NULL) for the optional parts, so that the
    constraint compares them.
    """

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="meter_values")
    connector_number = models.PositiveSmallIntegerField(help_text="0 is the charger's main meter.")
    session = models.ForeignKey(
        ChargingSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="meter_values"
    )
    transaction_id = models.IntegerField(null=True, blank=True, help_text="As sent by the charger.")
    measurand = models.CharField(max_length=48)
    phase = models.CharField(max_length=8, blank=True)
    unit = models.CharField(max_length=16, blank=True)
    context = models.CharField(max_length=32, blank=True)
    location = models.CharField(max_length=16, blank=True)
    value = models.DecimalField(max_digits=20, decimal_places=6)
    normalized = models.BigIntegerField(
        null=True, blank=True, help_text="Integer in the base unit: Wh, varh, W, var, VA, mA, mV, m°C, %."
    )
    sampled_at = models.DateTimeField(help_text="Charger's clock.")
    received_at = models.DateTimeField()

    class Meta:
        ordering = ["sampled_at", "id"]
        indexes = [models.Index(fields=["session", "measurand", "sampled_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["charge_point", "connector_number", "sampled_at", "measurand", "phase", "location", "context"],
                name="meter_value_unique_sample",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.measurand} {self.phase} {self.value} {self.unit}"


class Reservation(models.Model):
    """A ReserveNow sent to a charger (reservationId is this row's id)."""

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        ACCEPTED = "accepted", "Accepted"
        REFUSED = "refused", "Refused by the charger"
        CANCELLED = "cancelled", "Cancelled"
        USED = "used", "Used by a session"
        EXPIRED = "expired", "Expired"

    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="reservations")
    connector_number = models.PositiveSmallIntegerField()
    id_tag = models.CharField(max_length=20)
    parent_id_tag = models.CharField(max_length=20, blank=True)
    expires_at = models.DateTimeField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.REQUESTED)
    charger_answer = models.CharField(max_length=16, blank=True, help_text="Accepted, Faulted, Occupied...")
    resident = models.ForeignKey(
        "buildings.Resident", null=True, blank=True, on_delete=models.PROTECT, related_name="reservations"
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True, help_text="Used, cancelled or expired at.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"reservation {self.pk} {self.charge_point_id}#{self.connector_number}"


class ConnectorLimit(models.Model):
    """The live limit the load balancer wants on a connector, and what the charger was sent and holds.

    Written by apps.charging.smart_charging (``limits_set``, then the dispatch's records); sent as a
    TxProfile by apps.ocpp.smart_charging. Currents are amperes per phase.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting to be sent"
        SENT = "sent", "Sent, no answer yet"
        ACCEPTED = "accepted", "Accepted by the charger"
        UNCHANGED = "unchanged", "Less than 1 A from what the charger holds: not sent"
        HELD = "held", "Increase held back: a decrease was not acknowledged"
        NO_TRANSACTION = "no-transaction", "No transaction on the connector: its TxDefaultProfile applies"
        NOT_CONNECTED = "not-connected", "Charger not connected"
        TIMEOUT = "timeout", "No answer in time"
        REJECTED = "rejected", "Refused by the charger, every fallback too"
        NOT_SUPPORTED = "not-supported", "The charger has no smart charging"

    connector = models.OneToOneField(Connector, on_delete=models.CASCADE, related_name="limit")
    desired_a = models.DecimalField(max_digits=5, decimal_places=1)
    floor_a = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True,
                                  help_text="After the lease; empty: the connector's safe default.")
    lease_s = models.PositiveIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=300, blank=True, help_text="Why the balancer wants this limit.")
    requested_at = models.DateTimeField(help_text="When the balancer asked for it.")
    dirty = models.BooleanField(default=True, help_text="Wanted and not yet answered by the charger.")
    # What was sent last, and what the charger holds (acknowledged).
    sent_a = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True)
    sent_unit = models.CharField(max_length=1, blank=True)
    sent_purpose = models.CharField(max_length=24, blank=True)
    sent_profile = models.JSONField(default=dict, blank=True, help_text="The SetChargingProfile request.")
    sent_at = models.DateTimeField(null=True, blank=True)
    applied_a = models.DecimalField(max_digits=5, decimal_places=1, null=True, blank=True,
                                    help_text="What the charger acknowledged holding (empty: not known).")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    default_reset_at = models.DateTimeField(
        null=True, blank=True,
        help_text="On a charger that refuses TxProfile (its live limit sits in the connector's TxDefaultProfile): "
                  "when the safe default was last acknowledged there again.")
    transaction_id = models.IntegerField(null=True, blank=True, help_text="The transaction the TxProfile is for.")
    lease_until = models.DateTimeField(null=True, blank=True, help_text="Platform clock: then the floor applies.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    note = models.CharField(max_length=300, blank=True)
    # Compliance: a connector that draws above its limit is flagged, and its draw counted as unmanaged.
    measured_a = models.DecimalField(max_digits=6, decimal_places=1, null=True, blank=True)
    over_limit_since = models.DateTimeField(null=True, blank=True)
    flagged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["connector_id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(desired_a__gte=0), name="connector_limit_not_negative"),
        ]

    def __str__(self) -> str:
        return f"limit {self.desired_a} A on connector {self.connector_id}"


class LimitDispatch(models.Model):
    """The building's one dispatch of limits at a time (a single row): requested, and who holds it until when."""

    dirty = models.BooleanField(default=False)
    claimed_until = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return "limit dispatch"


class OneTimeTag(models.Model):
    """An idTag the platform made up for one session on one connector (a visitor's), not a resident's card.

    Accepted only at its own charger and connector, only once (StartTransaction uses it up) and only
    until it expires; whoever issued it (apps.visitors) finds its session by the tag.
    """

    id_tag = models.CharField(max_length=20, unique=True)
    charge_point = models.ForeignKey(ChargePoint, on_delete=models.CASCADE, related_name="one_time_tags")
    connector_number = models.PositiveSmallIntegerField()
    purpose = models.CharField(max_length=16, default="visitor")
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    session = models.OneToOneField(
        ChargingSession, null=True, blank=True, on_delete=models.SET_NULL, related_name="one_time_tag"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"one-time tag {self.id_tag} {self.charge_point_id}#{self.connector_number}"
