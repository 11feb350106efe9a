"""What the dash's tables share: a DataTable that redraws when its columns widen, and
the row key under the cursor."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from textual.coordinate import Coordinate
from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

CellType = TypeVar("CellType")


class Table(DataTable[CellType], Generic[CellType]):
    """A DataTable whose rows are drawn again when its columns change width.

    A DataTable widens a column to fit the rows added on its next ``Idle`` message, but
    it caches what it drew by a count of updates that widening does not change. A row
    drawn between ``add_row`` and that ``Idle`` (a busy machine, a screen redrawn
    first) kept its cells cut to the column labels' width until something else changed
    (seen as ``17  mall  12:0`` for ``1700000003000-0  mallory  12:00:00`` in the
    moderation screen's hits). So a change of the table's width (its columns') drops
    those caches (textual's ``_clear_caches``: no public call does).
    """

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        if old.width != new.width:
            self._clear_caches()
            self.refresh()


def cursor_key(table: DataTable[Any]) -> str | None:
    """The key of the row under ``table``'s cursor; None when the table is empty."""
    if table.row_count == 0:
        return None
    try:
        return str(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value)
    except CellDoesNotExist:
        return None
