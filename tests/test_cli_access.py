"""The CLI when the operator's user may not use the daemon's files, or finds no daemon
where it looks: one line saying so.

The admin socket is mode 0600 and the configuration 0640 (docs/deploy.md), so a command
run as the wrong user meets a file it cannot read. The suite runs as root, which reads
everything, so these tests make the refusal themselves: ``os.access`` answering no (what
Typer asked before it let the command run), and the socket's connect raising
``PermissionError`` (what the kernel does for another user).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chathub.cli import app


def _refuse_access_to(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    real = os.access

    def access(p, mode, *args, **kwargs):  # noqa: ANN001 - os.access's own signature
        return False if Path(p) == path else real(p, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("option", ["--socket", "--config"])
def test_a_path_this_user_cannot_read_gets_chathubs_one_line_not_a_usage_box(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str):
    """``status --socket S`` / ``--config F`` with S or F unreadable to this user: exit 2 with
    chathub's line about the socket, not Typer's "Usage: ... is not readable" box."""
    config = tmp_path / "chathub.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    path = tmp_path / "admin.sock" if option == "--socket" else config
    path.touch()
    _refuse_access_to(monkeypatch, path)
    result = CliRunner().invoke(app, ["status", option, str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chathub: "), result.output
    assert "Usage" not in result.output and "not readable" not in result.output


def test_permission_denied_on_the_socket_says_whose_it_is(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    """Another user's socket: the daemon is there, so the line says the socket is the daemon
    user's (not "no chathub daemon answers")."""
    sock = tmp_path / "admin.sock"

    async def refused(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(asyncio, "open_unix_connection", refused)
    for args in (["status"], ["kick", "bob"], ["channels"]):
        result = CliRunner().invoke(app, [*args, "--socket", str(sock)])
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line == (f"chathub: permission denied on the admin socket {sock}: only the user "
                        "the daemon runs as may use it (mode 0600); run this command as that user")


def test_no_daemon_names_the_socket_it_tried_as_an_absolute_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The default socket is ``./.chathub/admin.sock``: a command run in another directory
    than ``make serve``'s finds no daemon, and its line says where it looked (it said
    ``.chathub/admin.sock``, the same whichever directory it ran in)."""
    for name in ("CHATHUB_DATA_DIR", "CHATHUB_ADMIN_SOCKET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["mute", "bob", "--for", "10m"])
    assert result.exit_code == 2, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"chathub: no chathub daemon answers on "
                           f"{tmp_path / '.chathub' / 'admin.sock'} ("), line
