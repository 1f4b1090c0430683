"""The Spanish and French catalogues: complete, and a word that means two things is translated by its context.

The rule: every message of locale/<lang>/LC_MESSAGES/django.po has a translation that is not fuzzy, and the
compiled catalogue the platform loads says the same (a stale .mo would show English or an old wording).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.utils import translation

from apps.statements.models import BillingPeriod

LOCALE = Path(__file__).resolve().parents[2] / "locale"


def _entries(po: Path) -> list[dict[str, str]]:
    """The catalogue's entries: msgctxt, msgid, msgstr (joined), and whether fuzzy."""
    entries, entry, field = [], {}, None
    for line in [*po.read_text(encoding="utf-8").splitlines(), ""]:
        if not line.strip():
            if "msgid" in entry:
                entries.append(entry)
            entry, field = {}, None
        elif line.startswith("#,") and "fuzzy" in line:
            entry["fuzzy"] = "yes"
        elif line.startswith("#"):
            continue
        elif line.startswith('"') and field:
            entry[field] += ast.literal_eval(line)
        else:
            field, _, value = line.partition(" ")
            entry[field] = ast.literal_eval(value)
    return entries


@pytest.mark.parametrize("language", ["es", "fr"])
def test_every_message_is_translated_and_none_is_fuzzy(language):
    entries = [e for e in _entries(LOCALE / language / "LC_MESSAGES" / "django.po") if e["msgid"]]
    assert len(entries) > 200
    untranslated = [e["msgid"] for e in entries if not e.get("msgstr", e.get("msgstr[0]", ""))]
    fuzzy = [e["msgid"] for e in entries if e.get("fuzzy")]
    assert (untranslated, fuzzy) == ([], [])
    with translation.override(language):
        for e in entries:
            if "msgstr" in e and "msgid_plural" not in e:
                loaded = translation.pgettext(e["msgctxt"], e["msgid"]) if "msgctxt" in e else translation.gettext(
                    e["msgid"])
                assert loaded == e["msgstr"], f"{language}: compiled catalogue differs for {e['msgid']!r}"


def test_an_open_month_and_an_open_link_are_different_words():
    with translation.override("es"):
        assert str(BillingPeriod.Status.OPEN.label) == "Abierto"
        assert translation.pgettext("link to a building's site", "Open") == "Abrir"
        assert translation.pgettext("start date", "From") == "Desde"
    with translation.override("fr"):
        assert str(BillingPeriod.Status.OPEN.label) == "Ouvert"
        assert translation.pgettext("start date", "From") == "Du"
