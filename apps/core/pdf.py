"""HTML to PDF with WeasyPrint, the same way for every document the platform prints.

Statements are rendered by the thousand after a month closes, so what WeasyPrint would otherwise redo for
every PDF is done once per process here:

- one FontConfiguration (Fontconfig's font list and Pango's font map, with the fonts it has loaded);
- stylesheets parsed once (``stylesheet``), rather than a ``<style>`` element parsed with every document;
- font subsets reused. WeasyPrint embeds only the glyphs a PDF uses, and cuts them out of the font with
  HarfBuzz-Subset when the system has it (libharfbuzz-subset0), else with fontTools at ~0.1 s per font per
  PDF, most of it decoding layout tables that are then dropped: the largest cost of a statement.
  Subsetting keeps glyph ids, so a subset holding more glyphs than a PDF uses serves it just as well: the
  first PDFs of a process make a subset of every glyph seen so far, and the next PDFs whose glyphs are all
  in it embed that one as it is. A PDF carries at most a few kilobytes of glyphs it does not show; its text,
  widths and ToUnicode map are its own. With fontTools, the font given to the subsetter is the font
  without its layout tables (GSUB, GPOS...), which it would decode only to drop them: a subset takes a
  third of the time. HarfBuzz subsets from the face it already holds (it drops GSUB and GPOS itself, and
  keeps GDEF), so nothing is stripped for it (``harfbuzz_subsets``).

Its loggers are quieted here too: fontTools logs every table it touches at INFO, and WeasyPrint warns for
each font that it uses fontTools rather than HarfBuzz-Subset.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from collections.abc import Sequence
from typing import Any

logging.getLogger("fontTools").setLevel(logging.WARNING)
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)

# A subset is grown up to this many glyphs (Latin text uses ~150 per font); past it, a PDF with more glyphs
# gets its own subset, as WeasyPrint would make it.
MAX_SHARED_GLYPHS = 2_000
# Tables removed from a font before it is subset (see _without_layout_tables).
UNUSED_TABLES = ("GSUB", "GPOS", "GDEF", "kern", "morx", "BASE", "JSTF", "MATH")

_lock = threading.Lock()
_state: dict[str, Any] = {"pid": None}
_subsets: dict[tuple, tuple[frozenset[int], bytes]] = {}
_stripped: dict[tuple, bytes] = {}
_digests: dict[tuple[int, int], tuple[tuple[bytes, bytes], ...]] = {}


class _QuietFontWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "instead of HarfBuzz-Subset" not in record.getMessage()


def _process_state() -> dict[str, Any]:
    """The FontConfiguration and parsed stylesheets of this process (a forked worker makes its own)."""
    if _state["pid"] != os.getpid():
        from weasyprint.text.fonts import FontConfiguration

        with _lock:
            if _state["pid"] != os.getpid():
                _install_subset_cache()
                logging.getLogger("weasyprint").addFilter(_QuietFontWarnings())
                _state.update(pid=os.getpid(), font_config=FontConfiguration(), stylesheets={})
    return _state


def stylesheet(template_name: str):
    """The stylesheet in ``template_name`` (a template without variables), parsed once per process."""
    state = _process_state()
    sheets = state["stylesheets"]
    if template_name not in sheets:
        from django.template.loader import render_to_string
        from weasyprint import CSS

        sheets[template_name] = CSS(string=render_to_string(template_name), font_config=state["font_config"])
    return sheets[template_name]


def html_to_pdf(html: str, *, stylesheets: Sequence[str] = (), base_url: str | None = None) -> bytes:
    """One PDF of ``html``, styled by its own ``<style>`` and the ``stylesheets`` (template names)."""
    from weasyprint import HTML

    state = _process_state()
    return HTML(string=html, base_url=base_url).write_pdf(
        stylesheets=[stylesheet(name) for name in stylesheets], font_config=state["font_config"])


def _install_subset_cache() -> None:
    """Make WeasyPrint's font subsetting reuse a subset of the glyphs seen so far (see the module's doc)."""
    from weasyprint.pdf.fonts import Font

    if getattr(Font.subset, "shared_subsets", False):
        return
    original = Font.subset

    def subset(font, to_unicode, hinting):
        # Fonts that WeasyPrint changes before subsetting (variable fonts, colour emoji), or that lack
        # glyphs the text needs (then the subset gets a .notdef outline), are subset as WeasyPrint does.
        if not to_unicode or font.missing or font.variations or font.png or font.svg or font.colr:
            return original(font, to_unicode, hinting)
        key = (_digest(font), font.index, bool(hinting))
        used = frozenset(to_unicode)
        with _lock:
            glyphs, content = _subsets.get(key, (frozenset(), b""))
        if used <= glyphs:
            font.file_content = content
            return None
        wider = glyphs | used
        if len(wider) > MAX_SHARED_GLYPHS:
            return original(font, to_unicode, hinting)
        font.file_content = whole = font.file_content if harfbuzz_subsets() else _without_layout_tables(font, key)
        original(font, dict.fromkeys(wider, ""), hinting)
        if font.file_content is not whole:  # subset (WeasyPrint keeps the whole font when it cannot)
            with _lock:
                _subsets[key] = (wider, font.file_content)
        return None

    subset.shared_subsets = True  # type: ignore[attr-defined]
    Font.subset = subset


def harfbuzz_subsets() -> bool:
    """Whether WeasyPrint subsets fonts with HarfBuzz-Subset (found on the system, 4.1 or newer), as it decides."""
    from weasyprint.text.ffi import harfbuzz, harfbuzz_subset

    return harfbuzz_subset is not None and bool(harfbuzz.hb_version_atleast(4, 1, 0))


def _digest(font) -> bytes:
    """A hash of ``font``'s file. WeasyPrint copies the file out of HarfBuzz for every PDF; comparing that
    copy with the one hashed last time (memcmp) costs a tenth of hashing it again."""
    content = font.file_content
    size_key = (font.index, len(content))
    with _lock:
        seen = _digests.get(size_key, ())
    for known, digest in seen:
        if known == content:
            return digest
    digest = hashlib.blake2b(content, digest_size=16).digest()
    with _lock:
        _digests[size_key] = (*seen, (content, digest))
    return digest


def _without_layout_tables(font, key: tuple) -> bytes:
    """``font``'s file without the tables a PDF never uses, made once per process.

    WeasyPrint's fontTools subsetting drops GSUB and GPOS (and so GDEF and the legacy kern table: the PDF
    places every glyph itself), yet decodes them first: most of its 0.1 s per subset of DejaVu Sans. Removed
    beforehand, unread, they cost nothing and the subset is made in a third of the time."""
    if key not in _stripped:
        from fontTools.ttLib import TTFont

        collection = font.file_content[:4] == b"ttcf"
        face = TTFont(io.BytesIO(font.file_content), lazy=True, fontNumber=font.index if collection else -1)
        for tag in UNUSED_TABLES:
            if tag in face:
                del face[tag]
        out = io.BytesIO()
        face.save(out)
        with _lock:
            _stripped[key] = out.getvalue()
    return _stripped[key]
