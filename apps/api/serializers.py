"""What the API answers and the query parameters it reads. Amounts and amperes are exact decimal strings, energy is
integer Wh, times are RFC 3339 in UTC."""

from __future__ import annotations

from rest_framework import serializers


class ConnectorSerializer(serializers.Serializer):
    connector_id = serializers.IntegerField()
    parking_spot = serializers.CharField(allow_blank=True)
    phases = serializers.IntegerField()
    max_current_a = serializers.DecimalField(max_digits=5, decimal_places=1, allow_null=True)
    dc = serializers.BooleanField()
    status = serializers.CharField(allow_blank=True, help_text="As the charger last reported it (OCPP 1.6).")
    power_w = serializers.DecimalField(max_digits=12, decimal_places=1, allow_null=True)
    currents_a = serializers.ListField(child=serializers.DecimalField(max_digits=8, decimal_places=1,
                                                                      allow_null=True))
    session_energy_wh = serializers.IntegerField(allow_null=True)
    transaction_id = serializers.IntegerField(allow_null=True)
    limit_a = serializers.CharField(allow_null=True, help_text="The balancer's limit in A (or null).")
    limit_w = serializers.CharField(allow_null=True, help_text="The balancer's limit in W, for DC (or null).")
    limit_reason = serializers.CharField(allow_blank=True, help_text="Why, in words.")


class ChargerSerializer(serializers.Serializer):
    charge_point_id = serializers.CharField()
    vendor = serializers.CharField(allow_blank=True)
    model = serializers.CharField(allow_blank=True)
    firmware_version = serializers.CharField(allow_blank=True)
    circuit = serializers.CharField()
    enabled = serializers.BooleanField()
    online = serializers.BooleanField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    connectors = ConnectorSerializer(many=True)


class CostSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=["priced", "held"])
    currency = serializers.CharField()
    total = serializers.DecimalField(max_digits=14, decimal_places=3, allow_null=True,
                                     help_text="Null while the session is held for review.")


class SessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    transaction_id = serializers.IntegerField(allow_null=True)
    charge_point_id = serializers.CharField()
    connector_id = serializers.IntegerField()
    unit = serializers.CharField(allow_blank=True)
    resident = serializers.CharField(allow_blank=True)
    started_at = serializers.DateTimeField(allow_null=True)
    stopped_at = serializers.DateTimeField(allow_null=True)
    stop_reason = serializers.CharField(allow_blank=True)
    energy_wh = serializers.IntegerField()
    cost = CostSerializer(allow_null=True)


class SessionQuery(serializers.Serializer):
    status = serializers.ChoiceField(choices=["open", "finished"], required=False)
    since = serializers.DateTimeField(required=False, help_text="Sessions started at or after (RFC 3339).")
    until = serializers.DateTimeField(required=False, help_text="Sessions started before (RFC 3339).")
    charge_point_id = serializers.CharField(required=False, max_length=64)

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs


class StatementSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    number = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    unit = serializers.CharField()
    issued_on = serializers.DateField(allow_null=True)
    due_on = serializers.DateField(allow_null=True)
    currency = serializers.CharField()
    subtotal = serializers.DecimalField(max_digits=14, decimal_places=2)
    tax = serializers.DecimalField(max_digits=14, decimal_places=2)
    total = serializers.DecimalField(max_digits=14, decimal_places=2)
    amount_due = serializers.DecimalField(max_digits=14, decimal_places=2)
    pdf = serializers.CharField(help_text="Where the PDF is, for a resident of the statement (their /me/ page).")


class TariffVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    effective_from = serializers.DateTimeField()
    currency = serializers.CharField()
    in_words = serializers.ListField(child=serializers.CharField())
    document = serializers.JSONField(help_text="The elements, as docs/tariffs.md describes them.")


class TariffSerializer(serializers.Serializer):
    code = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    versions = TariffVersionSerializer(many=True)


class ReadingSerializer(serializers.Serializer):
    meter = serializers.CharField()
    sampled_at = serializers.DateTimeField()
    current_a = serializers.ListField(child=serializers.DecimalField(max_digits=8, decimal_places=1,
                                                                     allow_null=True))
    power_w = serializers.ListField(child=serializers.IntegerField(allow_null=True))


class ReadingQuery(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    meter = serializers.SlugField(required=False, max_length=64)

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs
