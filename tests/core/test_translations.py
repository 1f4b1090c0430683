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


# --- compiling: hoa_charging/translations.py --------------------------------------------------------------

GOOD = '''msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Language: es\\n"

msgid "Card %(card)s is lost."
msgstr "La tarjeta %(card)s está perdida."

#, fuzzy
msgid "Not sure yet"
msgstr "Todavía no"
'''


def _catalogue(tmp_path: Path, text: str) -> Path:
    po = tmp_path / "es" / "LC_MESSAGES" / "django.po"
    po.parent.mkdir(parents=True)
    po.write_text(text, encoding="utf-8")
    return po


def test_a_catalogue_is_compiled_once_and_fuzzy_entries_stay_english(tmp_path):
    import gettext

    from hoa_charging.translations import compile_catalogues

    po = _catalogue(tmp_path, GOOD)
    assert compile_catalogues(tmp_path) == [po.with_suffix(".mo")]
    assert compile_catalogues(tmp_path) == []  # up to date: left alone
    with po.with_suffix(".mo").open("rb") as fh:
        compiled = gettext.GNUTranslations(fh)
    assert compiled.gettext("Card %(card)s is lost.") == "La tarjeta %(card)s está perdida."
    assert compiled.gettext("Not sure yet") == "Not sure yet"


def test_a_translation_that_would_break_the_page_is_refused_with_its_file_and_line(tmp_path):
    from hoa_charging.translations import CatalogueError, compile_catalogues

    po = _catalogue(tmp_path, GOOD.replace("La tarjeta %(card)s", "La tarjeta %(tarjeta)s"))
    with pytest.raises(CatalogueError) as refused:
        compile_catalogues(tmp_path)
    assert f"{po}:6" in str(refused.value) and "tarjeta" in str(refused.value)
    assert not po.with_suffix(".mo").exists()  # nothing half-made is left for Django to load
