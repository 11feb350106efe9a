"""Files chathub reads at run time from its own package (``cache.lua``, migrations, web/).

They ship as package data in the wheel. When one is missing the installation is
incomplete: :func:`read_text` says which file, instead of letting the failure
pass for an outage of the service that would have received it.
"""

from __future__ import annotations

from importlib import resources

from .errors import ChathubError


class PackageDataMissing(ChathubError, RuntimeError):
    """A file that ships inside the chathub package is not there; the message names it."""


def read_text(name: str, package: str = "chathub") -> str:
    """The text of ``name`` inside ``package``.

    Raises:
        PackageDataMissing: the file is not installed (a broken or partial install).
    """
    f = resources.files(package).joinpath(name)
    try:
        return f.read_text()
    except FileNotFoundError:
        raise PackageDataMissing(
            f"package file {package}/{name} is missing from the installation at "
            f"{resources.files(package)}; reinstall chathub") from None
