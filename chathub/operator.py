"""What an operator may do to a running daemon beyond kicking: search the history,
read the audit trail, change the limits, reload the configuration.

:class:`Operator` is built by :class:`~chathub.server.Daemon` once the node runs,
and asked by the admin socket (:mod:`chathub.admin.moderation`). Its work runs in
the admin connection's task and in its own audit writer, beside the hub loop:
nothing here waits inside the hub.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from typing import Any

from .bandesk import BanDesk
from .config import Config
from .datadir import ENV_FD
from .db.audit import AuditLog
from .db.search import SearchQuery, search
from .edge import guard as guard_mod
from .edge import moderation
from .errors import CacheUnavailable, ConfigError
from .limits import LiveLimits, rebuild_filters
from .node import Node
from .reload import ConfigSource, plan, set_logging_level
from .slowmode import SlowMode

log = logging.getLogger("chathub.operator")


class Operator:
    """Search, audit, live limits and reload for one daemon.

    Args:
        cfg: the configuration the daemon runs with (changed in place by a reload).
        node: the running hub and its collaborators.
        source: where the configuration came from (None: it cannot be reloaded).
        loaded: the configuration as last loaded from ``source`` (before the daemon
            adjusted anything at start), to see what a reload changes.
    """

    def __init__(self, cfg: Config, node: Node, source: ConfigSource | None,
                 loaded: Config) -> None:
        self.cfg = cfg
        self.node = node
        self.source = source
        self.loaded = copy.deepcopy(loaded)
        self.limits: LiveLimits = node.limits
        #: the channels in slow mode (chathub limits set --channel)
        self.slow: SlowMode = node.slow
        self.audit: AuditLog = node.audit
        #: bans and mutes (chathub ban / mute)
        self.bans: BanDesk = node.bandesk
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the audit writer; put PostgreSQL's bans back into Valkey if it lost them."""
        await self.audit.flusher.setup()
        await self.bans.restore()
        self._task = asyncio.create_task(self.audit.flusher.run())

    async def stop(self, deadline: float) -> None:
        """Write what the audit trail holds (until ``deadline``, monotonic), then stop."""
        try:
            await self.audit.resend()
            await self.audit.flusher.drain(deadline)
            await self.audit.last_resort()
        finally:
            if self._task is not None:
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)

    # -- search ---------------------------------------------------------------------------

    async def search(self, q: SearchQuery) -> dict[str, Any]:
        """Hits from PostgreSQL, and how many messages wait in Valkey (not searchable yet)."""
        result = await search(self.node.pool, q)
        try:
            result["unflushed"] = await self.node.cache.flush_backlog()
        except CacheUnavailable:
            result["unflushed"] = None
        return result

    # -- reload ---------------------------------------------------------------------------

    async def reload(self, by_uid: int | None, by_user: str | None) -> dict[str, Any]:
        """Read the configuration again and apply the keys that can change live.

        Returns ``{"applied": [...], "ignored": [...]}`` ("section.key" names), and
        ``"supervisor": pid`` in a worker of ``serve --workers``: this reloaded only
        this worker, and SIGHUP to that pid reloads them all.

        Raises:
            ConfigError: the file does not load now, or a filter does not import;
                nothing was changed.
        """
        if self.source is None:
            raise ConfigError("this daemon was not started by 'chathub serve'; "
                              "there is no configuration source to read again")
        new = await asyncio.to_thread(self.source.load)
        p = plan(self.loaded, new)
        if any(k.startswith("moderation.") for k in p.apply):
            try:  # import every filter before anything changes
                moderation.build_chain(copy.deepcopy(new.moderation), guard_mod._import)
            except Exception as exc:
                raise ConfigError(f"moderation.filters: {type(exc).__name__}: {exc}") from None
        for key in p.apply:
            section, name = key.split(".", 1)
            value = copy.deepcopy(getattr(getattr(new, section), name))
            setattr(getattr(self.loaded, section), name, value)
            setattr(getattr(self.cfg, section), name, copy.deepcopy(value))
        if "log.level" in p.apply:
            set_logging_level(self.cfg.log.level)
        self.limits.rebase(self.loaded)  # the override, if any, stays on top
        if any(k.startswith("moderation.") for k in p.apply):
            rebuild_filters(self.node.guard)
        if any(k.startswith("api.") for k in p.apply):
            self.node.api.reload()
        if p.apply:
            log.info("reload: applied %s", ", ".join(p.apply))
        else:
            log.info("reload: nothing that can change live has changed")
        if p.ignored:
            log.warning("reload: %s cannot change while chathub runs; left as they were "
                        "(restart to apply)", ", ".join(p.ignored))
        await self.audit.record("reload", str(self.source.path or ""),
                                {"applied": p.apply, "ignored": p.ignored}, by_uid, by_user)
        result = {"applied": p.apply, "ignored": p.ignored, "at": int(time.time() * 1000)}
        if os.environ.get(ENV_FD):  # the lock came from a serve --workers supervisor
            result["supervisor"] = os.getppid()
        return result
