"""A statement's lines as rows of monospaced text, each column at a fixed character position. Pure: no Django.

Why text rather than an HTML table: WeasyPrint styles, lays out and draws every table cell (and every line
in it) as boxes of their own, which made three quarters of a statement PDF's rendering time. Printed in a
monospaced font, one text block per statement line aligns its columns by construction, and WeasyPrint
lays out a handful of text lines instead of ~200 cells. Nothing is cut: text longer than its column wraps
within the column (the row grows by a line), and the columns of numbers are as wide as their widest value.
What a copy-paste or a screen reader gets is each row on its own line, its values in column order.

Widths count characters. DejaVu Sans Mono, the statement's monospaced font, covers Latin, Greek and
Cyrillic; a character it lacks is drawn from another font with another width and shifts the rest of its
line (the values stay in order, on their row).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

# An A4 page less the statement's 12 mm side margins is 186 mm = 527.2 pt; a DejaVu Sans Mono character at
# 8 pt is 4.816 pt wide (0.602 em): 109 of them fill the width.
WIDTH = 109
GAP = 2
MIN_FLEXIBLE = 12


@dataclass(frozen=True)
class Column:
    title: str
    right: bool = False  # right-aligned (numbers)
    share: int = 0  # > 0: the column takes that share of the width left by the others and wraps its text


def _wrap(text: str, width: int) -> list[str]:
    if len(text) <= width:  # most cells: textwrap costs more than the rest of a row
        return [text]
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def _share_out(room: int, among: list[int], columns: Sequence[Column], widths: list[int]) -> None:
    """Add ``room`` characters to the columns ``among``, in proportion to their shares."""
    if not among or room <= 0:
        return
    shares = sum(columns[index].share for index in among)
    given = 0
    for index in among[:-1]:
        extra = room * columns[index].share // shares
        widths[index] += extra
        given += extra
    widths[among[-1]] += room - given


def rows(columns: Sequence[Column], cells: Sequence[Sequence[Sequence[str]]], *,
         width: int = WIDTH, gap: int = GAP) -> tuple[str, list[str]]:
    """The title line and one text (of one or more lines) per row.

    ``cells[row][column]`` is that cell's lines of text (empty strings are allowed). A column without a
    share is as wide as its longest line or title; the columns with a share take what is left of
    ``width`` (their text's width when it fits, else in proportion to their shares, at least
    ``MIN_FLEXIBLE`` each) and wrap their lines to it. Every line of a row has every column at
    the same position as every other line, title included; trailing spaces are left out.
    """
    natural = [max([len(column.title)] + [len(line) for row in cells for line in row[index]])
               for index, column in enumerate(columns)]
    widths = [0 if column.share else natural[index] for index, column in enumerate(columns)]
    left = width - sum(widths) - gap * (len(columns) - 1)
    pending = [index for index, column in enumerate(columns) if column.share]
    if sum(natural[index] for index in pending) <= left:
        # Room for all: each flexible column gets its text's width and a share of what is left.
        slack = left - sum(natural[index] for index in pending)
        for index in pending:
            widths[index] = natural[index]
        _share_out(slack, pending, columns, widths)
    else:
        # Not enough: a column narrower than its share keeps its width, the others split the rest.
        while pending:
            shares = sum(columns[index].share for index in pending)
            fitting = [index for index in pending if natural[index] * shares <= left * columns[index].share]
            if not fitting:
                break
            for index in fitting:
                widths[index] = natural[index]
                left -= natural[index]
                pending.remove(index)
        _share_out(left, pending, columns, widths)
        for index in pending:  # the page is too narrow for all: the line runs over rather than wrap a letter a line
            widths[index] = max(widths[index], MIN_FLEXIBLE)
    spacer = " " * gap

    def line(parts: Sequence[str]) -> str:
        return spacer.join(text.rjust(size) if column.right else text.ljust(size)
                           for column, size, text in zip(columns, widths, parts, strict=True)).rstrip()

    title = line([column.title[:size] if column.share else column.title
                  for column, size in zip(columns, widths, strict=True)])
    out = []
    for row in cells:
        blocks = []
        for column, size, lines in zip(columns, widths, row, strict=True):
            block = [part for text in lines for part in (_wrap(text, size) if column.share else [text])]
            blocks.append(block or [""])
        height = max(len(block) for block in blocks)
        out.append("\n".join(line([block[n] if n < len(block) else "" for block in blocks])
                             for n in range(height)))
    return title, out
