"""The ``chathub`` command: Typer commands that parse options and call the library."""

from .app import app

__all__ = ["app"]
