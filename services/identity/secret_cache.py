"""Decrypted workspace secrets kept in memory, so a visitor's verification neither reads nor
decrypts them again.

An entry lives at most ``ttl_seconds``: a secret added or retired through another replica is
seen here within that bound. The replica that adds or retires a secret invalidates its own
entries at once. A load that started before an invalidation is not stored, so a slow read of
the old secrets cannot put them back after a retirement."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class WorkspaceSecrets:
    """A workspace's active secrets of one purpose, opened, with the settings a visit needs."""

    # key id -> secret; read-only, since one instance is shared by concurrent calls.
    opened: Mapping[str, bytes]
    customer_metadata_key: str

    @classmethod
    def of(cls, opened: dict[str, bytes], customer_metadata_key: str) -> WorkspaceSecrets:
        """An instance over a private copy of ``opened``."""
        return cls(MappingProxyType(dict(opened)), customer_metadata_key)


@dataclass(frozen=True)
class _Entry:
    secrets: WorkspaceSecrets
    loaded_at: float


class SecretCache:
    """At most ``max_entries`` (workspace, purpose) entries, least recently used evicted
    first, each served for ``ttl_seconds`` after it was loaded; a TTL of 0 turns caching off.
    ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        # Bumped by every invalidation: a load that saw another value started before it.
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(
        self,
        workspace_id: str,
        purpose: str,
        load: Callable[[], Awaitable[WorkspaceSecrets | None]],
    ) -> WorkspaceSecrets | None:
        """The cached secrets, or ``load()``'s (stored when not None). None (an unknown
        workspace) is never stored: a workspace created meanwhile is seen at once."""
        key = (workspace_id, purpose)
        entry = self._entries.get(key)
        if entry is not None:
            if self._clock() - entry.loaded_at < self._ttl:
                self._entries.move_to_end(key)
                return entry.secrets
            del self._entries[key]
        generation, loaded_at = self._generation, self._clock()
        secrets = await load()
        if secrets is not None and self._ttl > 0 and generation == self._generation:
            self._entries[key] = _Entry(secrets, loaded_at)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return secrets

    def invalidate(self, workspace_id: str) -> None:
        """Forgets every purpose's secrets of the workspace, and any load in flight."""
        self._generation += 1
        for key in [key for key in self._entries if key[0] == workspace_id]:
            del self._entries[key]
