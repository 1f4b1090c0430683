"""The REST API on a building's own host (``/api/v1/...``), for integrations and a future mobile app. Read-only
here; commands to chargers go through ``POST /api/ocpp/chargers/<id>/commands/<Action>`` on the company site.

    GET /api/v1/chargers/                  the chargers, their connectors' live state and the balancer's limits
    GET /api/v1/sessions/                  sessions (?status=open|finished&since=&until=&charge_point_id=)
    GET /api/v1/statements/                statements and credit notes
    GET /api/v1/tariffs/                   tariffs with their versions, in words and as documents
    GET /api/v1/site-meter-readings/       the site meter's readings (?since=&until=&meter=)

Managers and board members read the whole building; a resident reads their own sessions and statements, and the
tariffs. Anyone else: 404. Token (``Authorization: Token <key>``, ``manage.py api_token``) or the browser's session.
Lists are paginated (``?page=``, ``?page_size=`` up to 500).
"""

from __future__ import annotations

from django.db.models import Q, QuerySet
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers as drf
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

from apps.api import serializers
from apps.api.permissions import Anyone, Staff, sees_everything
from apps.billing.models import SessionCharge, Tariff
from apps.billing.pricing import TariffInvalid, tariff_document
from apps.billing.selectors import pricing_tariff
from apps.charging.models import ChargePoint, ChargingSession, Connector
from apps.core.selectors import connector_balance
from apps.electrical.models import SiteMeterReading
from apps.ocpp import live
from apps.statements.models import Statement
from apps.visitors import wording
from apps.visitors.services import tariff_words


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class _List(ListAPIView):
    pagination_class = Pages
    query_class: type[drf.Serializer] | None = None

    def query(self) -> dict:
        if self.query_class is None:
            return {}
        query = self.query_class(data=self.request.query_params)
        query.is_valid(raise_exception=True)  # 400 with what and where
        return dict(query.validated_data)

    def rows(self, page: list) -> list[dict]:
        raise NotImplementedError

    def list(self, request, *args, **kwargs) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(self.get_serializer(self.rows(page), many=True).data)


class Chargers(_List):
    permission_classes = [Staff]
    serializer_class = serializers.ChargerSerializer

    def get_queryset(self) -> QuerySet:
        return (ChargePoint.objects.filter(removed_at__isnull=True).select_related("circuit")
                .order_by("charge_point_id"))

    def rows(self, page: list) -> list[dict]:
        connectors: dict[int, list[Connector]] = {}
        for c in (Connector.objects.filter(charge_point__in=page, removed_at__isnull=True)
                  .select_related("parking_spot").order_by("connector_id")):
            connectors.setdefault(c.charge_point_id, []).append(c)
        states = live.read_building_live([cp.charge_point_id for cp in page])
        limits = connector_balance()
        schema = self.request.tenant.schema_name
        out = []
        for cp in page:
            state = states.get(cp.charge_point_id)
            online = bool(state and state.connected and state.schema == schema)
            rows = []
            for c in connectors.get(cp.pk, []):
                now = state.connector(c.connector_id) if state is not None else None
                limit = limits.get(f"{cp.charge_point_id}#{c.connector_id}", {})
                rows.append({
                    "connector_id": c.connector_id, "parking_spot": c.parking_spot.label if c.parking_spot else "",
                    "phases": c.phases, "max_current_a": c.max_current_a, "dc": c.is_dc,
                    "status": (now.status if now else "") or "", "power_w": now.power_w if now else None,
                    "currents_a": list(now.currents_a) if now else [None, None, None],
                    "session_energy_wh": now.session_energy_wh if now else None,
                    "transaction_id": now.transaction_id if now else None,
                    "limit_a": str(limit["a"]) if limit.get("a") not in (None, "") else None,
                    "limit_w": str(limit["w"]) if limit.get("w") not in (None, "") else None,
                    "limit_reason": str(limit.get("sentence") or "")})
            out.append({"charge_point_id": cp.charge_point_id, "vendor": cp.vendor, "model": cp.model,
                        "firmware_version": cp.firmware_version, "circuit": cp.circuit.key, "enabled": cp.enabled,
                        "online": online, "last_seen_at": cp.last_seen_at, "connectors": rows})
        return out


class Sessions(_List):
    permission_classes = [Anyone]
    serializer_class = serializers.SessionSerializer
    query_class = serializers.SessionQuery

    @extend_schema(parameters=[serializers.SessionQuery])
    def get(self, request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        query = self.query()
        rows = ChargingSession.objects.all()
        if not sees_everything(self.request):
            rows = rows.filter(resident__user=self.request.user)
        if query.get("status") == "open":
            rows = rows.filter(stopped_at__isnull=True)
        elif query.get("status") == "finished":
            rows = rows.filter(stopped_at__isnull=False)
        if "since" in query:
            rows = rows.filter(started_at__gte=query["since"])
        if "until" in query:
            rows = rows.filter(started_at__lt=query["until"])
        if "charge_point_id" in query:
            rows = rows.filter(charge_point__charge_point_id=query["charge_point_id"])
        return (rows.select_related("charge_point", "resident__user", "resident__unit", "charge")
                .order_by("-started_at", "-pk"))

    def rows(self, page: list) -> list[dict]:
        def cost(session) -> dict | None:
            charge = getattr(session, "charge", None)
            if charge is None:
                return None
            return {"status": charge.status, "currency": charge.currency,
                    "total": charge.total if charge.status == SessionCharge.Status.PRICED else None}

        return [{"id": s.pk, "transaction_id": s.transaction_id, "charge_point_id": s.charge_point.charge_point_id,
                 "connector_id": s.connector_number,
                 "unit": s.resident.unit.number if s.resident else "",
                 "resident": (s.resident.user.name or s.resident.user.email) if s.resident else "",
                 "started_at": s.started_at, "stopped_at": s.stopped_at, "stop_reason": s.stop_reason,
                 "energy_wh": s.energy_wh, "cost": cost(s)} for s in page]


class Statements(_List):
    permission_classes = [Anyone]
    serializer_class = serializers.StatementSerializer

    def get_queryset(self) -> QuerySet:
        rows = Statement.objects.exclude(status=Statement.Status.DRAFT)
        if not sees_everything(self.request):
            rows = rows.filter(resident__user=self.request.user)
        return rows.select_related("resident__unit").order_by("-issued_on", "-pk")

    def rows(self, page: list) -> list[dict]:
        return [{"id": s.pk, "number": s.number, "kind": s.kind, "status": s.status, "unit": s.resident.unit.number,
                 "issued_on": s.issued_on, "due_on": s.due_on, "currency": s.currency, "subtotal": s.subtotal,
                 "tax": s.tax, "total": s.total, "amount_due": s.amount_due,
                 "pdf": reverse("me-statement-pdf", args=[s.pk])} for s in page]


class Tariffs(_List):
    permission_classes = [Anyone]
    serializer_class = serializers.TariffSerializer

    def get_queryset(self) -> QuerySet:
        return Tariff.objects.prefetch_related("versions").order_by("code")

    def rows(self, page: list) -> list[dict]:
        words = tariff_words()
        out = []
        for tariff in page:
            versions = []
            for v in sorted((v for v in tariff.versions.all() if v.published_at is not None),
                            key=lambda v: v.number):
                try:
                    parsed = pricing_tariff(v)
                    in_words, document = list(wording.describe(parsed, words)), tariff_document(parsed)
                except TariffInvalid:
                    in_words, document = [], v.document
                versions.append({"number": v.number, "effective_from": v.effective_from, "currency": v.currency,
                                 "in_words": in_words, "document": document})
            out.append({"code": tariff.code, "name": tariff.name, "description": tariff.description,
                        "versions": versions})
        return out


class SiteMeterReadings(_List):
    permission_classes = [Staff]
    serializer_class = serializers.ReadingSerializer
    query_class = serializers.ReadingQuery

    @extend_schema(parameters=[serializers.ReadingQuery])
    def get(self, request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet:
        query = self.query()
        rows = SiteMeterReading.objects.select_related("meter")
        conditions = Q()
        if "since" in query:
            conditions &= Q(sampled_at__gte=query["since"])
        if "until" in query:
            conditions &= Q(sampled_at__lt=query["until"])
        if "meter" in query:
            conditions &= Q(meter__key=query["meter"])
        return rows.filter(conditions).order_by("-sampled_at", "-pk")

    def rows(self, page: list) -> list[dict]:
        return [{"meter": r.meter.key, "sampled_at": r.sampled_at,
                 "current_a": [r.current_l1_a, r.current_l2_a, r.current_l3_a],
                 "power_w": [r.power_l1_w, r.power_l2_w, r.power_l3_w]} for r in page]
