"""Configuration loading: defaults, then a TOML file, the environment and CLI flags.

Precedence, lowest first: defaults (:mod:`chathub.config`) < file (``--config PATH``,
or ``./chathub.toml`` when present) < environment ``CHATHUB_<SECTION>_<KEY>``
(``CHATHUB_DATA_DIR`` for the top-level key; :mod:`chathub.configenv`) < explicit
overrides (CLI flags). Each layer's keys and types are checked as it is applied, then
the whole by :func:`chathub.configcheck.validate`.

Every problem is a :class:`~chathub.errors.ConfigError` whose message is one line
naming the key and where it came from; the CLI prints it and exits with code 2.
"""

from __future__ import annotations

import os
import tomllib
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .config import SECTIONS, Config, field_types
from .configcheck import validate
from .configenv import env_overrides, env_var
from .errors import ConfigError

DEFAULT_CONFIG_FILE = "chathub.toml"


def _checked(value: Any, typ: Any, key: str, source: str) -> Any:
    """``value`` when it has type ``typ`` (an int is taken for a float, as a float).

    Raises:
        ConfigError: naming ``key``, ``source`` and the type expected.
    """
    if typing.get_origin(typ) is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} in {source}: expected a list of strings, got {value!r}")
        return value
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} in {source}: expected true or false, got {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} in {source}: expected an integer, got {value!r}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} in {source}: expected a number, got {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} in {source}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {typ!r}")  # pragma: no cover


def _apply(cfg: Config, data: dict[str, Any], source: str | Callable[[str], str],
           origins: dict[str, str]) -> None:
    """Apply a nested mapping (as TOML gives it) onto ``cfg``, and note in ``origins``
    (``"section.key"`` → where it came from) each key it sets. ``source`` names the layer,
    or names it for a key (``"server.port"`` → ``"environment (CHATHUB_SERVER_PORT)"``).

    Raises:
        ConfigError: for an unknown section or key, a section that is not a table, or
            a value of the wrong type.
    """
    def where(key: str) -> str:
        return source(key) if callable(source) else source

    for name, value in data.items():
        if name == "data_dir":
            cfg.data_dir = _checked(value, str, "data_dir", where("data_dir"))
            origins["data_dir"] = where("data_dir")
            continue
        if name not in SECTIONS:
            raise ConfigError(f"unknown key '{name}' in {where(name)}")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] in {where(name)}: expected a table, got {value!r}")
        section = getattr(cfg, name)
        types_ = field_types(type(section))
        for key, v in value.items():
            full = f"{name}.{key}"
            if key not in types_:
                raise ConfigError(f"unknown key '{full}' in {where(full)}")
            setattr(section, key, _checked(v, types_[key], full, where(full)))
            origins[full] = where(full)


def load(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: typing.Mapping[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
    serving: bool = True,
) -> Config:
    """Build a validated :class:`~chathub.config.Config`.

    Args:
        path: a TOML file; ``None`` reads ``./chathub.toml`` when it exists.
        environ: the environment to read (``os.environ`` by default).
        overrides: nested mapping from CLI flags, e.g. ``{"server": {"port": 0}}``;
            ``None`` values are ignored.
        serving: False for a command that is not the daemon (see
            :func:`chathub.configcheck.validate`).

    Raises:
        ConfigError: one line naming the key and its source; also when ``path`` does
            not exist, cannot be read (a directory, not UTF-8) or is not valid TOML.
    """
    cfg = Config()
    file: Path | None = Path(path) if path is not None else None
    if file is None and Path(DEFAULT_CONFIG_FILE).is_file():
        file = Path(DEFAULT_CONFIG_FILE)
    source = "configuration"
    origins: dict[str, str] = {}  # "section.key" → the layer that set it last
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {file} not found") from None
        except OSError as exc:  # a directory, no permission
            raise ConfigError(f"config file {file}: {(exc.strerror or str(exc)).lower()}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
        _apply(cfg, data, str(file), origins)
        source = str(file)
    env = env_overrides(os.environ if environ is None else environ)
    _apply(cfg, env, lambda key: f"environment ({env_var(key)})", origins)
    if overrides:
        _apply(cfg, _drop_none(overrides), "command-line flags", origins)
    validate(cfg, source, origins, serving=serving)
    return cfg


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` without its None values, and without tables left empty by that."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            sub = _drop_none(v)
            if sub:
                out[k] = sub
        elif v is not None:
            out[k] = v
    return out
