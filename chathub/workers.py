"""``chathub serve --workers N``: several hub processes sharing one port."""

from __future__ import annotations

from pathlib import Path

from .config import Config


def serve_workers(cfg: Config, workers: int, config_path: Path | None) -> int:
    """Run ``workers`` hub processes; returns the exit code."""
    raise SystemExit("chathub: --workers is not available in this version; run one process per port")
