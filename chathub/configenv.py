"""Configuration from the environment: ``CHATHUB_<SECTION>_<KEY>`` variables as values.

``CHATHUB_SERVER_PORT=9000`` sets ``server.port``; ``CHATHUB_DATA_DIR`` sets the
top-level ``data_dir``. Names are matched case-insensitively after the prefix.
A variable that names a section but no key of it (``CHATHUB_API_KEY`` for
``CHATHUB_API_KEYS``) is refused: a typo must not pass silently. Variables that name
no section (another tool's), and ``CHATHUB_TEST_*`` (the test suite's own), are
ignored. Each string is read as the key's type wants it:

- ``list[str]``: comma-separated, items stripped, empty items dropped
- ``bool``: ``1 true yes on`` / ``0 false no off`` (any case)
- ``int``, ``float``: as Python's ``int()`` / ``float()`` read them
- ``str``: as it is

A string that cannot be read so is passed on unchanged, and the loader's type check
(:mod:`chathub.configload`) refuses it with a :class:`~chathub.errors.ConfigError`
naming the key.
"""

from __future__ import annotations

import typing
from typing import Any

from .config import SECTIONS, Config, field_types
from .errors import ConfigError

ENV_PREFIX = "CHATHUB_"
#: variables of the test suite, never configuration
_TEST_PREFIX = "CHATHUB_TEST_"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def from_env(value: str, typ: Any) -> Any:
    """The value environment string ``value`` stands for as a key of type ``typ``,
    or ``value`` unchanged when it cannot be read as one."""
    if typing.get_origin(typ) is list:
        return [v.strip() for v in value.split(",") if v.strip()]
    if typ is bool:
        low = value.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        return value
    if typ is int or typ is float:
        try:
            return typ(value)
        except ValueError:
            return value
    return value


def env_var(key: str) -> str:
    """The variable that sets ``key`` (``"server.port"`` → ``CHATHUB_SERVER_PORT``,
    ``"data_dir"`` → ``CHATHUB_DATA_DIR``)."""
    return ENV_PREFIX + key.replace(".", "_").upper()


def env_overrides(environ: typing.Mapping[str, str]) -> dict[str, Any]:
    """Collect ``CHATHUB_<SECTION>_<KEY>`` variables into a nested mapping.

    Returns:
        ``{"data_dir": str?, section: {key: value}}`` as a TOML file would give it,
        each value read by :func:`from_env`.

    Raises:
        ConfigError: a variable names a section but no key of it (one line naming both).
    """
    out: dict[str, Any] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var.startswith(_TEST_PREFIX):
            continue
        rest = var[len(ENV_PREFIX):].lower()
        if rest == "data_dir":
            out["data_dir"] = value
            continue
        for section in SECTIONS:
            if rest.startswith(section + "_"):
                key = rest[len(section) + 1:]
                types_ = field_types(typing.get_type_hints(Config)[section])
                if key not in types_:
                    raise ConfigError(f"unknown key '{section}.{key}' in environment ({var})")
                out.setdefault(section, {})[key] = from_env(value, types_[key])
                break
    return out
