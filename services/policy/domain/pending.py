"""Audit entries recorded but not yet chained, and the seal that protects them meanwhile.

A decision records its entries in its own transaction without touching the chain head; the
chainer links them later (policy/chaining.py). Until then an entry is protected by its seal,
``HMAC-SHA256(key, context || key_id || entry_id || canonical JSON of the entry)`` under the
audit MAC signing key: whoever holds the database but not the key can neither forge a pending
entry (its seal would not verify, so the chainer never links it) nor alter one. The entry id
is unique per entry, so a replayed copy of an entry already chained is recognised.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from policy.domain import audit

_SEAL_CONTEXT = b"askvault.policy.audit.pending.v1\n"
_ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class PendingEntry:
    """An entry as recorded, before it has a place in the chain."""

    workspace_id: str
    # The order of recording (among committed entries, the chain follows it).
    pending_id: int
    entry_id: str
    entry: audit.Entry
    key_id: str
    seal: str


def _seal(key: bytes, key_id: str, workspace_id: str, entry_id: str, entry: audit.Entry) -> str:
    mac = hmac.new(key, _SEAL_CONTEXT, hashlib.sha256)
    mac.update(key_id.encode("ascii") + b"\n")
    mac.update(entry_id.encode("ascii") + b"\n")
    mac.update(audit.canonical(workspace_id, 0, entry))
    return mac.hexdigest()


def seal(keys: audit.MacKeys, workspace_id: str, entry_id: str, entry: audit.Entry) -> str:
    """The seal of an entry about to be recorded, under the signing key."""
    return _seal(keys.signing_key(), keys.signing_key_id, workspace_id, entry_id, entry)


def sealed_by_policy(keys: audit.MacKeys, pending: PendingEntry) -> bool:
    """Whether the recorded entry is exactly what policy sealed (under any known key)."""
    key = keys.keys.get(pending.key_id)
    if key is None or not _ENTRY_ID.match(pending.entry_id):
        return False
    expected = _seal(key, pending.key_id, pending.workspace_id, pending.entry_id, pending.entry)
    return hmac.compare_digest(expected.encode(), pending.seal.encode())
