"""What every command shares: the common options, loading the config, reaching the daemon."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from .. import configload
from ..config import Config
from ..errors import AdminError, ChathubError, ConfigError, DatabaseUnavailable
from ..protocol import valid_channel, valid_user

CONFIG_HELP = "TOML config file (default: ./chathub.toml when present)."
SOCKET_HELP = "Admin socket of the daemon (default: <data_dir>/admin.sock)."
DATA_DIR_HELP = "Where embedded PostgreSQL/Valkey and the admin socket live."

# readable=False: Typer would otherwise refuse a path it cannot read with a usage box;
# loading the file and attaching to the socket say what is wrong in one line instead.
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help=CONFIG_HELP, readable=False)]
SocketOpt = Annotated[Path | None, typer.Option("--socket", help=SOCKET_HELP, readable=False)]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help=DATA_DIR_HELP)]


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"chathub: {message}", err=True)
    raise typer.Exit(code)


def check_user(name: str, what: str = "USER") -> None:
    """Exit 2 with one line unless ``name`` is a user name; ``what`` names the argument."""
    if not valid_user(name):
        fail(f"{what}: {name[:40]!r} is not a user name (1-32 of A-Z a-z 0-9 _ - .)", 2)


def check_channel(name: str, what: str = "--channel") -> None:
    """Exit 2 with one line unless ``name`` is a channel name; ``what`` names the argument."""
    if not valid_channel(name):
        fail(f"{what}: {name[:70]!r} is not a channel name "
             "(1-64 of A-Z a-z 0-9 _ - . :, optionally after $)", 2)


def load_config(path: Path | None, overrides: dict[str, Any] | None = None,
                serving: bool = False) -> Config:
    """The configuration, or exit 2 with its one line. ``serving``: for ``serve`` only; the
    other commands do not need the daemon's token secret (``[auth] secret``)."""
    try:
        return configload.load(path, overrides=overrides, serving=serving)
    except ConfigError as exc:
        fail(str(exc), 2)


def admin_socket(cfg_path: Path | None, socket: Path | None, data_dir: str | None = None) -> Path:
    if socket is not None:
        return socket
    return load_config(cfg_path, {"data_dir": data_dir}).admin_socket


def run_admin(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        fail(str(exc), 2)
    except AdminError as exc:
        fail(str(exc), 2)
    except (DatabaseUnavailable, ChathubError) as exc:
        fail(str(exc), 1)
