"""The hash of a quote: the terms of a money action a person was shown and agreed to.

The edge computes it when it proposes an action; policy recomputes it from the request it
authorizes and refuses a confirmation whose hash differs, so what runs is exactly what the
person saw. It lives in the shared runtime (like ``assertions``) so that the two sides can
never hash differently.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

# Bumped if the canonical form ever changes; part of the hashed bytes.
VERSION = b"askvault-quote-v1"


def terms_hash(
    *,
    workspace_id: str,
    contact_id: str,
    action: int,
    details: bytes,
    summary: str,
    expires_at: datetime,
) -> str:
    """Lower-case hex SHA-256 over the terms.

    ``details`` is the action's parameters (``policy.v1.ActionDetails``) serialized with
    ``SerializeToString(deterministic=True)``; ``summary`` is the sentence shown to the person;
    ``expires_at`` is hashed at whole seconds. Every part is length-prefixed, so no two
    different sets of terms share a byte string.
    """
    digest = hashlib.sha256()
    parts = (
        VERSION,
        workspace_id.encode(),
        contact_id.encode(),
        str(int(action)).encode(),
        details,
        summary.encode(),
        str(int(expires_at.timestamp())).encode(),
    )
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()
