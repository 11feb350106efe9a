"""The dashboard's screens: the main view, one channel, and the kick confirmation."""

from .channel import ChannelScreen
from .kick import KickScreen
from .main import DashScreen

__all__ = ["ChannelScreen", "DashScreen", "KickScreen"]
