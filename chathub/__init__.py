"""chathub: a WebSocket chat server with a Valkey message cache and PostgreSQL sessions.

Start a daemon from Python with ``await chathub.run(chathub.load_config())``;
from a shell with ``chathub serve``.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .configload import load as load_config  # noqa: E402


async def run(config: Config, **kwargs: object) -> None:
    """Run a daemon until SIGTERM/SIGINT; see :func:`chathub.server.run`."""
    from .server import run as _run

    await _run(config, **kwargs)  # type: ignore[arg-type]


__all__ = ["Config", "load_config", "run", "__version__"]
