"""Reloading the configuration of a running daemon (SIGHUP or ``chathub reload``).

The daemon reads its sources again exactly as it did at start (:class:`ConfigSource`:
the same file, the environment, the same command-line flags on top) and compares
the result with what it last loaded. Keys in :data:`RELOADABLE` take effect at
once; every other key that changed is named in one log line and left as it was
(restart to apply it). A file that no longer loads changes nothing.
docs/operations.md lists the keys.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import configload
from .config import Config

log = logging.getLogger("chathub.reload")

#: keys a reload applies while the daemon runs ("section.key"; "section.*" for all of one)
RELOADABLE = (
    "log.level",
    "ratelimit.*",
    "server.allowed_origins",
    "moderation.*",
    # read per request, or taken again by Api.reload (keys from CHATHUB_API_KEYS stay:
    # a running process's environment does not change); api.max_body is set on the listener
    "api.keys",
    "api.rate",
    "api.burst",
    "api.system_names",
    "api.idempotency_window",
)


def reloadable(key: str) -> bool:
    """Whether a reload applies ``key`` ("section.key") while the daemon runs."""
    section = key.split(".", 1)[0]
    return key in RELOADABLE or f"{section}.*" in RELOADABLE


@dataclass
class ConfigSource:
    """Where a daemon's configuration came from, to read it again the same way.

    ``path`` is the file (made absolute, so a reload does not depend on the working
    directory; None when there was none); ``overrides`` are the command-line flags.
    """

    path: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(cls, path: Path | None, overrides: dict[str, Any] | None = None) -> ConfigSource:
        """The source :func:`chathub.configload.load` would read for these arguments."""
        if path is None and Path(configload.DEFAULT_CONFIG_FILE).is_file():
            path = Path(configload.DEFAULT_CONFIG_FILE)
        return cls(path.absolute() if path is not None else None, copy.deepcopy(overrides or {}))

    def load(self) -> Config:
        """Read the configuration. Raises :class:`~chathub.errors.ConfigError`."""
        if self.path is None:
            # no file: defaults, environment and flags (never a chathub.toml that appeared since)
            return configload.load(Path("/dev/null"), overrides=self.overrides)
        return configload.load(self.path, overrides=self.overrides)


def changed_keys(old: Config, new: Config) -> list[str]:
    """Every "section.key" (and "data_dir") whose value differs between ``old`` and ``new``."""
    out = ["data_dir"] if old.data_dir != new.data_dir else []
    for f in dataclasses.fields(Config):
        if f.name == "data_dir":
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        for sf in dataclasses.fields(a):
            if getattr(a, sf.name) != getattr(b, sf.name):
                out.append(f"{f.name}.{sf.name}")
    return out


@dataclass
class Plan:
    """What a reload does: keys to apply now, keys left as they were."""

    apply: list[str]
    ignored: list[str]


def plan(old: Config, new: Config) -> Plan:
    keys = changed_keys(old, new)
    return Plan([k for k in keys if reloadable(k)], [k for k in keys if not reloadable(k)])


def set_logging_level(level: str) -> None:
    """The root logger's level as :func:`chathub.logs.setup_logging` sets it."""
    level = level.upper()
    logging.getLogger().setLevel(level)
    logging.getLogger("websockets").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
