"""What the tables of the moderation screen share: the row key under the cursor."""

from __future__ import annotations

from typing import Any

from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist


def cursor_key(table: DataTable[Any]) -> str | None:
    """The key of the row under ``table``'s cursor; None when the table is empty."""
    if table.row_count == 0:
        return None
    try:
        return str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)
    except CellDoesNotExist:
        return None
