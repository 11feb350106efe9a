"""``python -m chathub``: the same as the ``chathub`` command."""

from chathub.cli import app

app(prog_name="chathub")
