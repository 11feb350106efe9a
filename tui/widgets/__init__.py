"""The dashboard's widgets, one area of the screen each."""

from .channels import ChannelsTable
from .clients import ClientsTable
from .events import EventLog
from .header import StatusHeader
from .nodes import NodesPanel
from .stats import StatsPanel
from .trends import Trends

__all__ = ["ChannelsTable", "ClientsTable", "EventLog", "NodesPanel", "StatsPanel", "StatusHeader", "Trends"]
