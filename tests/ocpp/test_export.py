"""The frame log as CSV on a building's host: managers and board members of that building only."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from apps.core.tenants import in_schema
from apps.ocpp import views
from apps.ocpp.models import OcppFrame
from tests import factories

MAPLE_HOST = "maple-court.localhost"
URL = "/ocpp/frames.csv"


@pytest.fixture
def frames(world, committed) -> str:
    """Frames of a charger of Maple Court on 2026-03-10 and 2026-03-11 (building time), and one of another."""
    cp_id = f"EXP-{uuid.uuid4().hex[:8].upper()}"
    zone = ZoneInfo(world.maple.timezone)
    with in_schema(world.maple.schema_name):
        OcppFrame.objects.bulk_create([
            OcppFrame(charge_point_id=cp_id, direction="in", message_type=2, action="Heartbeat", unique_id="a",
                      raw='[2,"a","Heartbeat",{}]', received_at=datetime(2026, 3, 10, 0, 0, 1, tzinfo=zone)),
            OcppFrame(charge_point_id=cp_id, direction="out", message_type=3, action="Heartbeat", unique_id="a",
                      raw='[3,"a",{"currentTime":"2026-03-10T08:00:01Z"}]',
                      received_at=datetime(2026, 3, 10, 23, 59, 59, tzinfo=zone)),
            OcppFrame(charge_point_id=cp_id, direction="in", raw="=HYPERLINK(\"x\")",
                      received_at=datetime(2026, 3, 11, 12, 0, tzinfo=zone)),
            OcppFrame(charge_point_id=f"{cp_id}-OTHER", direction="in", raw="[]",
                      received_at=datetime(2026, 3, 10, 12, 0, tzinfo=zone)),
        ])
    return cp_id


def get(user, query: str, host: str = MAPLE_HOST):
    client = Client(HTTP_HOST=host)
    if user is not None:
        client.force_login(user)
    return client.get(f"{URL}?{query}")


def body(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_only_the_buildings_managers_and_board_get_the_frame_log(world, frames):
    query = f"from=2026-03-10&to=2026-03-10&charger={frames}"
    for allowed in (world.acme_manager, world.maple_board):
        response = get(allowed, query)
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        assert len(body(response)) == 3
    oak_board = factories.board_member(world.oak, f"board-{uuid.uuid4().hex[:6]}@oak.test")
    for stranger in (world.maple_resident, world.harbor_manager, oak_board):
        response = get(stranger, query)
        assert response.status_code == 404
        assert frames.encode() not in response.content and b"Heartbeat" not in response.content
    anonymous = get(None, query)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    # Oak Tower's board on its own host: its own (empty here) log, never Maple Court's frames.
    own = get(oak_board, "from=2026-03-10&to=2026-03-11", host="oak-tower.localhost")
    assert own.status_code == 200 and frames not in b"".join(own.streaming_content).decode()


def test_days_are_the_buildings_both_ends_included_and_the_charger_filter(world, frames):
    rows = body(get(world.acme_manager, f"from=2026-03-10&to=2026-03-10&charger={frames.lower()}"))
    assert rows[0] == list(views.COLUMNS)
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows[1:]] == [
        (frames, "in", "2", "Heartbeat", "a"), (frames, "out", "3", "Heartbeat", "a")]
    assert rows[1][6] == '[2,"a","Heartbeat",{}]'
    assert datetime.fromisoformat(rows[1][0]) == datetime(2026, 3, 10, 0, 0, 1, tzinfo=ZoneInfo(world.maple.timezone))
    two_days = body(get(world.acme_manager, f"from=2026-03-10&to=2026-03-11&charger={frames}"))
    assert len(two_days) == 4
    assert two_days[3][6] == "'=HYPERLINK(\"x\")"  # no formula for a spreadsheet to run
    every_charger = body(get(world.acme_manager, "from=2026-03-10&to=2026-03-10"))
    assert {r[1] for r in every_charger[1:]} >= {frames, f"{frames}-OTHER"}


def test_bad_dates_get_a_clear_400(world, frames):
    not_dates = b"from and to must be dates written YYYY-MM-DD\n"
    for query, message in (
        ("from=10/03/2026&to=2026-03-11", not_dates),
        ("from=2026-03-12&to=2026-03-10", b"to must not be before from\n"),
        ("from=2026-02-30", not_dates),
        ("from=2024-01-01&to=2026-01-01", f"at most {views.MAX_DAYS} days at a time\n".encode()),
    ):
        response = get(world.maple_board, query)
        assert (response.status_code, response.content) == (400, message), query


def test_rows_come_in_pages_and_stream(world, frames, monkeypatch):
    monkeypatch.setattr(views, "CHUNK", 1)
    response = get(world.maple_board, f"from=2026-03-10&to=2026-03-11&charger={frames}")
    chunks = list(response.streaming_content)
    assert len(chunks) == 1 + 3  # the header, then one page per frame
    assert [row[5] for row in csv.reader(io.StringIO(b"".join(chunks).decode()))][1:] == ["a", "a", ""]


async def test_under_asgi_the_rows_stream_in_several_body_messages(world, frames, monkeypatch):
    """Through the real ASGI application (what daphne serves): page after page, not one body."""
    from asgiref.sync import sync_to_async
    from channels.testing import ApplicationCommunicator
    from django.conf import settings

    from hoa_charging.asgi import application

    monkeypatch.setattr(views, "CHUNK", 1)
    client = Client()
    await sync_to_async(client.force_login)(world.acme_manager)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": URL, "raw_path": URL.encode(),
             "query_string": f"from=2026-03-10&to=2026-03-11&charger={frames}".encode(), "scheme": "http",
             "headers": [(b"host", MAPLE_HOST.encode()), (b"cookie", cookie.encode())],
             "client": ("127.0.0.1", 50000), "server": (MAPLE_HOST, 80)}
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(10)
    assert start["type"] == "http.response.start" and start["status"] == 200
    parts = []
    while True:
        message = await app.receive_output(10)
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    assert len([p for p in parts if p]) == 4  # header and three pages, each its own message
    assert b"".join(parts).decode().count(frames) == 3


@pytest.fixture
def card_frames(world, committed) -> str:
    """Frames of a Maple Court charger on 2026-03-12 that carry Alice's card, one of them cut off mid-frame."""
    cp_id = f"EXP-{uuid.uuid4().hex[:8].upper()}"
    at = datetime(2026, 3, 12, 9, 0, tzinfo=ZoneInfo(world.maple.timezone))
    raws = [
        '[2,"1","Authorize",{"idTag":"04A1B2C3D4"}]',
        '[3,"1",{"idTagInfo":{"status":"Accepted","parentIdTag":"PARENT0042"}}]',
        '[2,"2","SendLocalList",{"listVersion":1,"updateType":"Full","localAuthorizationList":'
        '[{"idTag":"04A1B2C3D4","idTagInfo":{"status":"Accepted"}}]}]',
        '[2,"3","StartTransaction",{"connectorId":1,"idTag":"04A1B2C3D4","meterStart":0,"timesta',  # cut off
        '[2,"4","Heartbeat",{}]',
    ]
    with in_schema(world.maple.schema_name):
        OcppFrame.objects.bulk_create([
            OcppFrame(charge_point_id=cp_id, direction="in", raw=raw, received_at=at.replace(second=n))
            for n, raw in enumerate(raws)])
    return cp_id


def test_managers_see_card_ids_board_members_see_them_masked_and_outsiders_nothing(world, card_frames,
                                                                                      monkeypatch):
    query = f"from=2026-03-12&to=2026-03-12&charger={card_frames}"
    full = body(get(world.acme_manager, query))
    assert [row[6] for row in full[1:]][:2] == [
        '[2,"1","Authorize",{"idTag":"04A1B2C3D4"}]',
        '[3,"1",{"idTagInfo":{"status":"Accepted","parentIdTag":"PARENT0042"}}]']
    assert sum("04A1B2C3D4" in row[6] for row in full) == 3

    monkeypatch.setattr(views, "CHUNK", 2)  # masked page by page, still streamed
    response = get(world.maple_board, query)
    chunks = list(response.streaming_content)
    assert len(chunks) == 1 + 3
    masked = list(csv.reader(io.StringIO(b"".join(chunks).decode())))
    assert len(masked) == 1 + 5 and all(len(row) == len(views.COLUMNS) for row in masked)
    text = b"".join(chunks).decode()
    assert "04A1B2" not in text and "PARENT" not in text
    assert [row[6] for row in masked[1:]] == [
        '[2,"1","Authorize",{"idTag":"****C3D4"}]',
        '[3,"1",{"idTagInfo":{"status":"Accepted","parentIdTag":"****0042"}}]',
        '[2,"2","SendLocalList",{"listVersion":1,"updateType":"Full","localAuthorizationList":'
        '[{"idTag":"****C3D4","idTagInfo":{"status":"Accepted"}}]}]',
        '[2,"3","StartTransaction",{"connectorId":1,"idTag":"****C3D4","meterStart":0,"timesta',
        '[2,"4","Heartbeat",{}]',
    ]

    oak_board = factories.board_member(world.oak, f"board-{uuid.uuid4().hex[:6]}@oak.test")
    for stranger in (world.maple_resident, world.harbor_manager, world.harbor_resident, oak_board):
        refused = get(stranger, query)
        assert refused.status_code == 404, stranger
        assert b"C3D4" not in refused.content and card_frames.encode() not in refused.content
