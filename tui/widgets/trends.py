"""Sparklines of the last few minutes: messages/s, deliveries/s, largest client backlog."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, Sparkline

from .. import format as fmt

#: samples kept per series; stats arrive once a second, so this is three minutes
WINDOW = 180


@dataclass(frozen=True)
class Series:
    """One sparkline: the ``stats`` field it plots and how its latest value is shown."""

    key: str
    label: str
    show: Callable[[float], str]


SERIES = (
    Series("messages_per_s", "messages/s", fmt.rate),
    Series("deliveries_per_s", "deliveries/s", fmt.rate),
    Series("max_backlog", "max backlog", fmt.size),
)


class Trends(Vertical):
    """Three labelled sparklines over a fixed window of :data:`WINDOW` seconds.

    :meth:`record` stores a sample; :meth:`show` draws what is stored. They are
    apart so that a paused dashboard keeps its history without redrawing.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        # Start full of zeros: the time axis is fixed and the scale starts at zero.
        self.samples: dict[str, deque[float]] = {
            s.key: deque([0.0] * WINDOW, maxlen=WINDOW) for s in SERIES}
        self._latest: dict[str, float] = {}

    def compose(self) -> ComposeResult:
        for s in SERIES:
            with Horizontal(classes="trend"):
                yield Label(s.label, classes="trend-label")
                yield Sparkline(list(self.samples[s.key]), id=f"spark-{s.key}")
                yield Label("—", id=f"now-{s.key}", classes="trend-now")

    def record(self, stats: dict[str, Any]) -> None:
        """Append one snapshot's values (missing ones count as zero)."""
        for s in SERIES:
            value = stats.get(s.key)
            v = float(value) if isinstance(value, (int, float)) else 0.0
            self.samples[s.key].append(v)
            self._latest[s.key] = v

    def show(self) -> None:
        """Redraw the sparklines and latest values from the stored samples."""
        for s in SERIES:
            # a leading zero pins the bottom of the scale at zero, so that a steady
            # rate draws as a steady bar instead of noise magnified to full height
            self.query_one(f"#spark-{s.key}", Sparkline).data = [0.0, *self.samples[s.key]]
            latest = self._latest.get(s.key)
            self.query_one(f"#now-{s.key}", Label).update(
                "—" if latest is None else s.show(latest))
