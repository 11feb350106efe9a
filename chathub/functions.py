"""chathub's Valkey functions (``cache.lua``), loaded under names of their own version.

Valkey keeps one namespace of function names for every client of a server. Hubs
sharing a Valkey during a rolling update run two versions of chathub, and each
loads its functions at start and again whenever Valkey comes back. Under one
fixed library name the last hub to load would replace the others' functions
with its own: an older hub then calls functions whose keys, arguments or replies
changed under it (a history page with a field more), and a newer one finds its
new functions gone.

So the library is named after a digest of its source, and so is every function
in it: ``chathub_accept_many`` in ``cache.lua`` is loaded as
``chathub_<tag>_accept_many`` (``tag``: the first 10 hex digits of the source's
SHA-256). Hubs of one version share one library; hubs of two versions each call
their own. A library no hub of its version uses any more stays loaded (a few
kilobytes); ``FUNCTION DELETE chathub_<tag>`` removes it once no hub of that
version runs. ``FUNCTION LIST LIBRARYNAME chathub_`` lists them, and each hub logs
the library it loads. The source is read from the package once, when first needed.
"""

from __future__ import annotations

import functools
import hashlib
import re

from . import pkgdata

#: the prefix of every library and function name chathub loads
PREFIX = "chathub_"
#: hex digits of the source's SHA-256 in a library's name
TAG_LENGTH = 10

_LIBRARY = re.compile(r"^#!lua name=chathub\b", re.MULTILINE)
_REGISTERED = re.compile(r"(register_function\(\s*'|function_name\s*=\s*')chathub_")


class Library:
    """One version of the functions: its ``tag``, the ``source`` to load, and the name
    each function is called by.

    Args:
        source: ``cache.lua`` as written (library ``chathub``, functions ``chathub_*``).

    Raises:
        ValueError: the source does not declare the library ``chathub``.
    """

    def __init__(self, source: str) -> None:
        self.tag = hashlib.sha256(source.encode()).hexdigest()[:TAG_LENGTH]
        versioned = f"{PREFIX}{self.tag}_"
        renamed, declared = _LIBRARY.subn(f"#!lua name={PREFIX}{self.tag}", source, count=1)
        if not declared:
            raise ValueError("the functions' source does not start with '#!lua name=chathub'")
        #: the source to ``FUNCTION LOAD``, every registered name made this version's
        self.source = _REGISTERED.sub(lambda m: m.group(1) + versioned, renamed)
        self._versioned = versioned

    @property
    def library(self) -> str:
        """The library's name in ``FUNCTION LIST``: ``chathub_<tag>``."""
        return PREFIX + self.tag

    def name(self, function: str) -> str:
        """What to ``FCALL`` for ``function`` as ``cache.lua`` names it without its prefix:
        ``name("accept_many")`` → ``chathub_<tag>_accept_many``."""
        return self._versioned + function


@functools.cache
def packaged() -> Library:
    """The functions of the installed chathub.

    Raises:
        PackageDataMissing: ``cache.lua`` is not installed.
    """
    return Library(pkgdata.read_text("cache.lua"))
