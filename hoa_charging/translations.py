"""The translations' compiled catalogues (locale/<lang>/LC_MESSAGES/django.mo), made from the .po files by the
set-up (``python3 dev.py demo|test|manage|translations``) rather than kept in git, so that they are never older
than the texts they translate. Babel compiles them: no GNU gettext needed on the machine.

    compile_catalogues(ROOT / "locale")   ->  the .mo files written (those already up to date are left alone)

A catalogue whose translations would break a page (a placeholder missing or renamed, ``%(name)s`` against
``%(nom)s``) or that does not parse is refused with the file, the line and what is wrong; fuzzy entries are left out
(Django shows the English text for them), as compilemessages does.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import PoFileError, read_po


class CatalogueError(Exception):
    """A .po file that cannot be compiled as it is."""


def _problems(po: Path, catalog) -> list[str]:
    found = []
    for message, errors in catalog.check():
        for error in errors:
            found.append(f"{po}:{message.lineno}: {message.id!r}: {error}")
    return found


def compile_catalogue(po: Path) -> Path:
    mo = po.with_suffix(".mo")
    try:
        with po.open("rb") as fh:
            catalog = read_po(fh, abort_invalid=True)
    except PoFileError as error:
        raise CatalogueError(f"{po}: {error}") from None
    problems = _problems(po, catalog)
    if problems:
        raise CatalogueError("translations that would break a page:\n  " + "\n  ".join(problems))
    partial = mo.with_suffix(".mo.partial")
    with partial.open("wb") as fh:
        write_mo(fh, catalog, use_fuzzy=False)
    partial.replace(mo)  # never a half-written catalogue in place
    return mo


def compile_catalogues(locale: Path) -> list[Path]:
    """Compile every ``*.po`` under ``locale`` whose ``.mo`` is missing or older."""
    written = []
    for po in sorted(locale.glob("*/LC_MESSAGES/*.po")):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        written.append(compile_catalogue(po))
    return written
