"""CSV as spreadsheets open it safely."""

import csv
import io
from collections.abc import Sequence
from typing import Final

# What a spreadsheet takes for the start of a formula, after any blanks.
_FORMULA: Final = ("=", "+", "-", "@")


def csv_line(cells: Sequence[str]) -> str:
    """One CSV line; a cell a spreadsheet would run as a formula is written after a "'"."""
    out = io.StringIO()
    guarded = (
        "'" + cell if cell.lstrip(" \t\r\n")[:1] in _FORMULA or cell[:1] in ("\t", "\r") else cell
        for cell in cells
    )
    csv.writer(out, lineterminator="\r\n").writerow(guarded)
    return out.getvalue()


# The byte-order mark a CSV file begins with: how spreadsheets know it is UTF-8.
BOM: Final = "\ufeff"
