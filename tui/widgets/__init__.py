"""The dashboard's widgets, one area of the screen each."""

from .bans import BansTable
from .channels import ChannelsTable
from .clients import ClientsTable
from .events import EventLog
from .header import StatusHeader
from .hits import HitsTable
from .nodes import NodesPanel
from .stats import StatsPanel
from .trends import Trends

__all__ = ["BansTable", "ChannelsTable", "ClientsTable", "EventLog", "HitsTable", "NodesPanel",
           "StatsPanel", "StatusHeader", "Trends"]
