"""The dashboard's screens: the main view and the kick confirmation."""

from .kick import KickScreen
from .main import DashScreen

__all__ = ["DashScreen", "KickScreen"]
