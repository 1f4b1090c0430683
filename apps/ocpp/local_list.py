"""Keeping each charger's local authorization list in sync (SendLocalList / GetLocalListVersion).

Runs in a Celery worker (apps.ocpp.tasks.sync_local_lists), one charger at a
time, and talks to the charger through apps.ocpp.commands. What the lists should
hold, the claims and the record of what each charger holds are the database
side, apps.charging.local_lists. A charger is held
by one worker at a time (a conditional UPDATE with an expiry); a request that
arrives while another worker holds it is seen by that worker, which syncs
again before letting go. So running the task twice is harmless.

What the platform knows the charger holds (version and entries) is stored
after every accepted SendLocalList. A sync:
1. asks GetLocalListVersion; -1 means no local list support;
2. when the charger's version is the stored one, sends a Differential update
   of what changed (nothing when nothing did); otherwise (unknown version,
   never sent, another system wrote it) a Full update;
3. splits updates into calls of at most SendLocalListMaxLength entries (a
   Full update: the first call Full, the rest Differential), keeps the list
   within LocalAuthListMaxLength, and gives each call the next listVersion;
4. falls back to Full once on VersionMismatch or Failed, and stops on
   NotSupported; the outcome is recorded on the charger (local_list_status,
   local_list_note);
5. checks the result with GetLocalListVersion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from apps.charging.local_lists import (
    LocalListState,
    local_list_begin,
    local_list_claim,
    local_list_entries,
    local_list_record,
    local_list_release,
    local_list_supported,
)
from apps.charging.models import ChargePoint
from apps.core.tenants import in_condominium
from apps.ocpp import commands, live
from apps.ocpp.commands import Send, send_through_channel_layer
from apps.tenancy.models import Condominium

logger = logging.getLogger(__name__)

CLAIM_HOLD = timedelta(minutes=5)
# Entries per call when the charger does not say (SendLocalListMaxLength).
DEFAULT_CHUNK = 100

def sync_building(schema_name: str, charge_point_pks: list[int] | None = None,
                  send: Send = send_through_channel_layer) -> dict[str, str]:
    """Sync the connected chargers of a building (all of them, or those named). charge point id -> outcome."""
    try:
        with in_condominium(schema_name):
            chargers = ChargePoint.objects.filter(removed_at__isnull=True, enabled=True)
            if charge_point_pks is not None:
                chargers = chargers.filter(pk__in=charge_point_pks)
            found = list(chargers.values_list("pk", "charge_point_id"))
    except Condominium.DoesNotExist:
        return {}
    outcomes = {}
    for pk, charge_point_id in found:
        if not live.connected_to(live.read_sync(charge_point_id), schema_name):
            # Not connected, or the connection belongs to another building (an id moved while it was open).
            outcomes[charge_point_id] = "not-connected"
            continue
        outcomes[charge_point_id] = sync_charger(schema_name, pk, send)
    return outcomes


def sync_charger(schema_name: str, charge_point_pk: int, send: Send = send_through_channel_layer) -> str:
    with in_condominium(schema_name):
        if not local_list_claim(charge_point_pk=charge_point_pk, hold=CLAIM_HOLD):
            return "busy"  # the worker holding it syncs again before letting go
    outcome = "gone"
    while True:
        with in_condominium(schema_name):
            state = local_list_begin(charge_point_pk=charge_point_pk)
            desired = local_list_entries() if state is not None else {}
        if state is not None:
            outcome = _Sync(schema_name, charge_point_pk, state, desired, send).run()
        with in_condominium(schema_name):
            if state is None or local_list_release(charge_point_pk=charge_point_pk):
                return outcome


class _Refused(Exception):
    def __init__(self, status: str):
        super().__init__(status)
        self.status = status


@dataclass
class _Sync:
    schema_name: str
    pk: int
    state: LocalListState
    desired: dict[str, dict]
    send: Send

    def call(self, action: str, payload: dict) -> dict[str, Any]:
        return self.send(self.schema_name, self.state.charge_point_id, action, payload)

    def record(self, status: str, note: str = "", version: int | None = None,
               entries: dict[str, dict] | None = None) -> None:
        with in_condominium(self.schema_name):
            local_list_record(charge_point_pk=self.pk, status=status, note=note, version=version, entries=entries)
        if status in ("failed", "not-supported"):
            logger.warning("%s: local list %s: %s", self.state.charge_point_id, status, note)

    def run(self) -> str:
        config = self.state.configuration
        if local_list_supported(config) is False:
            self.record("not-supported", "the charger has no local list, or it is disabled")
            return "not-supported"
        max_length = _int_config(config, "LocalAuthListMaxLength")
        notes = []
        desired = self.desired
        if max_length is not None and len(desired) > max_length:
            desired = _trim(desired, max_length)
            notes.append(f"{len(self.desired) - max_length} entries left out (LocalAuthListMaxLength {max_length})")
        try:
            charger_version = int(self.call("GetLocalListVersion", {})["listVersion"])
            if charger_version == -1:
                self.record("not-supported", "GetLocalListVersion answered -1")
                return "not-supported"
            known = self.state.version > 0 and charger_version == self.state.version
            if known and self.state.entries == desired:
                self.record("synced", "; ".join(notes) or "up to date")
                return "unchanged"
            version = max(self.state.version, charger_version)
            held = self.state.entries if known else None
            try:
                version, held = self.update(version, held, desired)
                how = "differential" if known else "full"
            except _Refused as refused:
                if refused.status == "NotSupported":
                    self.record("not-supported", "SendLocalList answered NotSupported")
                    return "not-supported"
                if not known:
                    raise
                # VersionMismatch or Failed on a differential update: start again from scratch.
                notes.append(f"differential update answered {refused.status}, so a full update was sent")
                version, held = self.update(version, None, desired)
                how = "full-fallback"
            check = int(self.call("GetLocalListVersion", {})["listVersion"])
            if check != version:
                # Forget what we think it holds, so that the next sync sends everything.
                self.record("failed", f"sent version {version}, the charger reports {check}", version=0, entries={})
                return "failed"
            self.record("synced", "; ".join([f"{how} update to version {version}", *notes]))
            return how
        except _Refused as refused:
            self.record("failed", "; ".join([f"SendLocalList answered {refused.status}", *notes]))
            return "failed"
        except commands.CommandRejected as error:
            if error.error_code in ("NotSupported", "NotImplemented"):
                self.record("not-supported", f"the charger answered {error.error_code}")
                return "not-supported"
            self.record("failed", f"CALLERROR {error}")
            return "failed"
        except commands.CommandError as error:
            self.record("failed", f"{type(error).__name__}: {error}")
            return "failed"

    def update(self, version: int, held: dict[str, dict] | None,
               desired: dict[str, dict]) -> tuple[int, dict[str, dict]]:
        """Send the calls that turn ``held`` (None: unknown) into ``desired``; the version and list reached."""
        size = self.chunk_size()
        calls: list[tuple[str, list[tuple[str, dict | None]]]]
        if held is None:
            # A Full update replaces the whole list: only the first call may be one.
            items: list[tuple[str, dict | None]] = sorted(desired.items())
            calls = [("Full", items[:size])] + [("Differential", part) for part in _chunks(items[size:], size)]
            held = {}
        else:
            changes: list[tuple[str, dict | None]] = [
                (tag, info) for tag, info in sorted(desired.items()) if held.get(tag) != info]
            changes += [(tag, None) for tag in sorted(held) if tag not in desired]  # no idTagInfo: removed
            calls = [("Differential", part) for part in _chunks(changes, size)]
            held = dict(held)
        for update_type, part in calls:
            version += 1
            entries = [{"idTag": tag} if info is None else {"idTag": tag, "idTagInfo": info} for tag, info in part]
            answer = self.call("SendLocalList", {"listVersion": version, "updateType": update_type,
                                                 "localAuthorizationList": entries})
            status = answer.get("status")
            if status != "Accepted":
                raise _Refused(str(status))
            if update_type == "Full":
                held = {}
            for tag, info in part:
                if info is None:
                    held.pop(tag, None)
                else:
                    held[tag] = info
            self.record("syncing", f"version {version} accepted", version=version, entries=held)
        return version, held

    def chunk_size(self) -> int:
        config = self.state.configuration
        max_length = _int_config(config, "LocalAuthListMaxLength")
        chunk = _int_config(config, "SendLocalListMaxLength") or DEFAULT_CHUNK
        return max(1, min(chunk, max_length) if max_length else chunk)


def _int_config(configuration: dict, key: str) -> int | None:
    try:
        return int(str((configuration.get(key) or {}).get("value")).strip())
    except ValueError:
        return None


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _trim(entries: dict[str, dict], max_length: int) -> dict[str, dict]:
    """Keep the cards that work first: the charger then still lets those residents charge offline."""
    ordered = sorted(entries.items(), key=lambda item: (item[1]["status"] != "Accepted", item[0]))
    return dict(ordered[:max_length])
