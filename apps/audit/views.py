"""The audit export on a building's own host, for its managers and board members.

    GET /audit/2026-11.zip  (the CSV folder, zipped)   /audit/2026-11.xlsx   /audit/2026-11.pdf
    GET /audit/2026-11?format=csv|xlsx|pdf             ?ocpp=1 adds the month's OCPP frame log to the zip

Managers get card ids in full; board members get them masked, as in the OCPP frame log. Anyone else: 404.
"""

from __future__ import annotations

from django.http import FileResponse, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.views.decorators.http import require_GET

from apps.accounts.access import condominium_role_required
from apps.accounts.selectors import BOARD, MANAGER
from apps.audit.services import AuditRefused, AuditRequest, audit_download
from apps.statements.periods import parse_month

EXTENSIONS = {"zip": "csv", "csv": "csv", "xlsx": "xlsx", "pdf": "pdf"}


@condominium_role_required(MANAGER, BOARD)
@require_GET
def audit_file(request: HttpRequest, name: str) -> HttpResponse:
    month, _, ext = name.partition(".")
    fmt = EXTENSIONS.get((request.GET.get("format") or ext or "zip").lower())
    if fmt is None:
        return HttpResponseBadRequest("format must be csv (a zip), xlsx or pdf\n", content_type="text/plain")
    try:
        first_day = parse_month(month)
    except ValueError as error:
        return HttpResponseBadRequest(f"{error}\n", content_type="text/plain")
    audit = AuditRequest(slug=request.tenant.slug, first_day=first_day, fmt=fmt,
                         mask_id_tags=MANAGER not in request.roles,
                         include_ocpp_log=fmt == "csv" and request.GET.get("ocpp") in ("1", "true", "yes"))
    try:
        name, content_type, handle = audit_download(audit, request.tenant)
    except AuditRefused as error:
        return HttpResponseBadRequest(f"{error}\n", content_type="text/plain")
    return FileResponse(handle, as_attachment=True, filename=name, content_type=content_type)
