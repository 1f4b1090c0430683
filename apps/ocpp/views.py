"""The OCPP frame log as CSV, for a building's managers and board members (its own host).

    GET /ocpp/frames.csv?from=YYYY-MM-DD&to=YYYY-MM-DD&charger=<chargePointId>

Days are the building's (its time zone), both ends included; without dates, today. The rows are read
in keyset pages and streamed: a year of frames never sits in memory.

The frames carry every resident's card id (idTag). The company's managers run the chargers and the
cards, and see the frames as they are; board members audit the building and get the card ids masked
(apps/ocpp/masking.py), row by row as the pages stream.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER
from apps.core.tenants import in_schema
from apps.ocpp.masking import mask_frame
from apps.ocpp.models import OcppFrame

CHUNK = 2000
MAX_DAYS = 366
COLUMNS = ("received_at", "charge_point_id", "direction", "message_type", "action", "unique_id", "raw")
FIELDS = ("received_at", "charge_point_id", "direction", "message_type", "action", "unique_id", "raw", "id")


@condominium_role_required(MANAGER, BOARD)
@require_GET
def frames_csv(request: HttpRequest) -> HttpResponse:
    zone = ZoneInfo(request.tenant.timezone)
    today = datetime.now(zone).date()
    try:
        first = _day(request.GET.get("from"), today)
        last = _day(request.GET.get("to"), first if request.GET.get("from") else today)
    except ValueError:
        return HttpResponseBadRequest("from and to must be dates written YYYY-MM-DD\n", content_type="text/plain")
    if last < first:
        return HttpResponseBadRequest("to must not be before from\n", content_type="text/plain")
    if (last - first).days >= MAX_DAYS:
        return HttpResponseBadRequest(f"at most {MAX_DAYS} days at a time\n", content_type="text/plain")
    charger = request.GET.get("charger", "").strip()[:64]
    query = FrameLogQuery(
        schema=request.tenant.schema_name, charger=charger, full_id_tags=MANAGER in request.roles,
        start=datetime.combine(first, time.min, zone), end=datetime.combine(last + timedelta(days=1), time.min, zone),
    )
    # Under ASGI (daphne) a sync iterator would be read whole before sending: give each server its kind.
    rows = query.aiter_csv() if isinstance(request, ASGIRequest) else query.iter_csv()
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    name = f"ocpp-frames-{request.tenant.slug}-{first}-{last}{'-' + charger if charger else ''}.csv"
    response["Content-Disposition"] = f'attachment; filename="{_safe_filename(name)}"'
    return response


def _day(raw: str | None, default: date) -> date:
    return date.fromisoformat(raw.strip()) if raw and raw.strip() else default


def _safe_filename(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


class _Line:
    """csv.writer target that hands back the line just written."""

    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> object:
    # Spreadsheets run cells that start like a formula; a charger controls what it sends.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


class FrameLogQuery:
    """The frame log of one building between two instants, as CSV lines streamed in keyset pages."""

    def __init__(self, *, schema: str, charger: str, full_id_tags: bool, start: datetime, end: datetime):
        self.schema, self.charger, self.start, self.end = schema, charger, start, end
        self.full_id_tags = full_id_tags
        self.writer = csv.writer(_Line())

    def page(self, after: tuple[datetime, int] | None) -> list[tuple]:
        """The next CHUNK frames in (received_at, id) order after ``after``: an index range, no OFFSET."""
        with in_schema(self.schema):
            frames = OcppFrame.objects.filter(received_at__gte=self.start, received_at__lt=self.end)
            if self.charger:
                frames = frames.filter(charge_point_id__iexact=self.charger)
            if after is not None:
                frames = frames.filter(Q(received_at__gt=after[0]) | Q(received_at=after[0], id__gt=after[1]))
            return list(frames.order_by("received_at", "id").values_list(*FIELDS)[:CHUNK])

    def lines(self, rows: list[tuple]) -> str:
        if not self.full_id_tags:
            rows = [(*row[:6], mask_frame(row[6]), *row[7:]) for row in rows]
        return "".join(self.writer.writerow([row[0].isoformat(), *(_cell(v) for v in row[1:7])]) for row in rows)

    def iter_csv(self) -> Iterator[str]:
        yield self.writer.writerow(COLUMNS)
        after = None
        while rows := self.page(after):
            yield self.lines(rows)
            after = (rows[-1][0], rows[-1][7])

    async def aiter_csv(self) -> AsyncIterator[str]:
        yield self.writer.writerow(COLUMNS)
        after = None
        while rows := await sync_to_async(self.page)(after):
            yield self.lines(rows)
            after = (rows[-1][0], rows[-1][7])
