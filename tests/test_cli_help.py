"""``chathub --help`` (and each group's): every command's summary reads as one line."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from chathub.cli import app


def summaries(typer_app, prefix=()):
    """(command path, the first paragraph of its docstring on one line) for every command."""
    for info in typer_app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        doc = inspect.getdoc(info.callback) or ""
        yield (*prefix, name), " ".join(doc.split("\n\n", 1)[0].split())
    for group in typer_app.registered_groups:
        path = prefix + ((group.name,) if isinstance(group.name, str) else ())
        yield from summaries(group.typer_instance, path)


@pytest.mark.parametrize("group", [(), ("channel",)])
def test_command_summaries_are_not_cut_mid_sentence(group):
    """On a terminal wide enough, each summary is on its command's row, whole (a docstring
    wrapped in the source used to be printed with its line breaks)."""
    result = CliRunner().invoke(app, [*group, "--help"], env={"COLUMNS": "400"},
                                terminal_width=400)
    assert result.exit_code == 0, result.output
    rows = [" ".join(line.strip("│ ").split()) for line in result.output.splitlines()]
    checked = 0
    for path, summary in summaries(app):
        if path[:-1] != group or not summary:
            continue
        assert f"{path[-1]} {summary}" in rows, (path, summary)
        checked += 1
    assert checked >= (15 if not group else 3)
