"""The dashboard's widgets, one area of the screen each."""

from .clients import ClientsTable
from .events import EventLog
from .header import StatusHeader
from .stats import StatsPanel
from .trends import Trends

__all__ = ["ClientsTable", "EventLog", "StatsPanel", "StatusHeader", "Trends"]
