"""The statement's lines as monospaced text (apps/statements/line_text.py): every column of every line at the
same character position, numbers whole and right-aligned, long text wrapped inside its own column and
never cut, nothing wider than the page."""

from __future__ import annotations

from apps.statements.line_text import WIDTH, Column, rows

COLUMNS = [Column("Date"), Column("Description", share=11), Column("kWh", right=True),
           Column("Duration", right=True), Column("Rate", share=9), Column("Amount", right=True)]


def _row(connector: str = "CP-1 #1", amount: str = "$1.28", windows: tuple[str, ...] = ("day 0.32/kWh",)):
    return [["10/01/2026", "17:00"], ["Charging session 1", connector], ["4.000"], ["1:00"], list(windows),
            [amount]]


def test_columns_line_up_on_every_line_and_numbers_are_right_aligned():
    title, out = rows(COLUMNS, [_row(), _row(amount="$1,234.56"), _row(windows=("day 0.32/kWh", "night 0.18/kWh"))])
    assert len(out) == 3
    lines = [title] + [line for row in out for line in row.split("\n")]
    assert max(len(line) for line in lines) <= WIDTH
    # The amount column ends at the same character on every line that has one, title included.
    ends = {line.rindex(amount) + len(amount)
            for line in lines for amount in ("Amount", "$1.28", "$1,234.56") if amount in line}
    assert len(ends) == 1
    starts = {line.index(word) for line in lines for word in ("Rate", "day 0.32", "night 0.18") if word in line}
    assert len(starts) == 1, "the rate column starts at one position"
    assert out[0].split("\n")[1].split() == ["17:00", "CP-1", "#1"]  # a row's second line holds its second lines
    assert out[2].split("\n")[1].split() == ["17:00", "CP-1", "#1", "night", "0.18/kWh"]


def test_a_long_connector_wraps_inside_its_column_and_nothing_is_cut():
    long = "Visitor spot B-12 (north ramp, level -2) · charger PARKADE-NORTH-0001 #2"
    title, out = rows(COLUMNS, [_row(connector=long), _row()])
    first = out[0].split("\n")
    assert len(first) > 2, "the row grows by the lines its connector needs"
    start = title.index("Description")
    width = title.index("kWh") - start  # up to the kWh column, right-aligned after the description's gap
    inside = [line[start:start + width] for line in first]
    # Every character of the label is in the description column, in order, and no other column moved.
    assert " ".join(" ".join(part.split()) for part in inside[1:] if part.strip()) == " ".join(long.split())
    assert all(line[:start].strip() in ("10/01/2026", "17:00", "") for line in first)
    assert first[0].rstrip().endswith("$1.28") and len(first[0].rstrip()) == len(title)
    # The next row is a row of its own, untouched by the long label.
    assert len(out[1].split("\n")) == 2
    assert out[1].split("\n")[0].split() == ["10/01/2026", "Charging", "session", "1", "4.000", "1:00", "day",
                                             "0.32/kWh", "$1.28"]


def test_numbers_are_never_wrapped_however_wide():
    huge = "$1,234,567,890,123.45"
    title, out = rows(COLUMNS, [_row(amount=huge)])
    assert out[0].split("\n")[0].endswith(huge) and title.endswith("Amount")
    assert len(title) == len(out[0].split("\n")[0])


def test_a_row_without_values_keeps_its_place():
    title, out = rows(COLUMNS, [[[], ["Monthly service fee (Residents)"], [""], [""], ["RES v1"], ["$5.00"]]])
    assert out == [out[0].split("\n")[0]]  # one line
    assert out[0].index("Monthly") == title.index("Description") and out[0].endswith("$5.00")
