"""HTML to PDF (apps/core/pdf.py): font subsets shared between the PDFs of a process must still hold every
glyph each PDF shows, and each PDF's text is its own."""

from __future__ import annotations

import io

import pypdf
from fontTools.ttLib import TTFont

from apps.core import pdf


def _page(text: str) -> str:
    return ('<html><head><style>@page { size: A6; font-family: "DejaVu Sans" } '
            'body { font-family: "DejaVu Sans" }</style></head>'
            f"<body><p>{text}</p><p><b>{text}</b></p></body></html>")


def _embedded_fonts(data: bytes) -> dict[str, tuple[set[int], TTFont]]:
    """Each embedded font by name: the glyph ids its page text uses, and the font file embedded."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    fonts: dict[str, tuple[set[int], TTFont]] = {}
    for page in reader.pages:
        for ref in page["/Resources"]["/Font"].values():
            font = ref.get_object()
            descendant = font["/DescendantFonts"][0].get_object()
            file = descendant["/FontDescriptor"]["/FontFile2"].get_object().get_data()
            widths = descendant["/W"]
            used: set[int] = set()
            for index in range(0, len(widths), 2):  # [first [w1 w2 ...]] pairs, one per run of glyph ids
                used |= set(range(int(widths[index]), int(widths[index]) + len(widths[index + 1])))
            fonts[str(font["/BaseFont"])] = (used, TTFont(io.BytesIO(file)))
    return fonts


def _text(data: bytes) -> str:
    return " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages)


def test_each_pdf_embeds_every_glyph_it_shows_when_subsets_are_shared():
    texts = ["Invoice 123 total $45.00", "Zoë Ångström paid 7,890.12 €", "QWXYZ jkv 0123456789 ÆØÅ"]
    pdfs = [pdf.html_to_pdf(_page(text)) for text in texts] + [pdf.html_to_pdf(_page(texts[0]))]
    for text, data in zip(texts + texts[:1], pdfs, strict=True):
        assert data.startswith(b"%PDF-")
        assert _text(data).split() == (text.split() * 2)
        fonts = _embedded_fonts(data)
        assert {name.split("+", 1)[1] for name in fonts} == {"DejaVu-Sans", "DejaVu-Sans-Bold"}
        for name, (used, font) in fonts.items():
            glyphs = font.getGlyphSet()
            order = font.getGlyphOrder()
            for gid in used:
                outline = font["glyf"][order[gid]]
                # Every glyph the text uses has its outline in the embedded font (a space has none).
                assert outline.numberOfContours != 0 or glyphs[order[gid]].width > 0, (name, gid)
            drawn = [name for name in order if font["glyf"][name].numberOfContours]
            assert len(drawn) < 300, "a subset, not the whole font (ids kept: the others are empty)"
            # Layout tables are left out (the PDF places every glyph itself): by HarfBuzz-Subset, which keeps GDEF,
            # or before fontTools subsets, so that it never decodes them.
            dropped = {"GSUB", "GPOS"} if pdf.harfbuzz_subsets() else {"GSUB", "GPOS", "GDEF", "kern"}
            assert not dropped & set(font.keys()), name
    # The last PDF's glyphs were all seen before: it embeds the shared subset, wider than its own text.
    used, font = _embedded_fonts(pdfs[-1])[next(iter(_embedded_fonts(pdfs[-1])))]
    drawn = [gid for gid, name in enumerate(font.getGlyphOrder()) if font["glyf"][name].numberOfContours]
    assert set(drawn) - used, "outlines of glyphs this PDF does not use: the shared subset"


def test_a_pdf_with_glyphs_its_font_lacks_does_not_spoil_the_shared_subsets():
    # DejaVu Sans has no CJK glyphs and no other font is installed: WeasyPrint subsets that PDF's fonts
    # itself (with a .notdef outline), and the next PDFs keep their text and glyphs.
    assert pdf.html_to_pdf(_page("Unit 12 漢字")).startswith(b"%PDF-")
    data = pdf.html_to_pdf(_page("Unit 12 paid"))
    assert _text(data).split() == ["Unit", "12", "paid"] * 2
