"""The dashboard's screens: the main view, one channel, moderation, and their dialogs."""

from .channel import ChannelScreen
from .confirm import ConfirmScreen
from .kick import KickScreen
from .main import DashScreen
from .moderation import ModerationScreen
from .sanction import SanctionScreen

__all__ = ["ChannelScreen", "ConfirmScreen", "DashScreen", "KickScreen", "ModerationScreen",
           "SanctionScreen"]
