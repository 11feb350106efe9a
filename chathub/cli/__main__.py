"""``python -m chathub.cli``: the same as the ``chathub`` command."""

from .app import app

app()
