"""The audit log's hash chain.

Each workspace has its own chain: entry n carries the hash of entry n-1 and its own hash,
``sha256(previous_hash_hex || canonical JSON of the entry)``, where the canonical JSON has
sorted keys, no spaces and microsecond UTC times. Changing any stored field, deleting an
entry or reordering entries breaks the chain at that sequence. An entry's ``confirmation``
(the quote a person confirmed) is part of the document only when present, so entries written
before it existed keep their hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from policy.domain.model import Channel, Confirmation

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class Entry:
    """What happened; the chain fields are added when it is appended."""

    occurred_at: datetime
    actor_kind: str  # visitor, bot, admin, service, "" when unknown
    actor_id: str
    kind: str  # "decision", "grant.committed", "bounds.applied", ...
    contact_id: str = ""
    stripe_customer_id: str = ""
    action: str = ""
    amount_minor: int = 0
    currency: str = ""
    outcome: str = ""
    subject_id: str = ""
    confirmation: Confirmation | None = None


@dataclass(frozen=True)
class ChainedEntry:
    """An entry with its place in the chain."""

    workspace_id: str
    sequence: int
    entry: Entry
    previous_hash: str
    hash: str


@dataclass(frozen=True)
class Verification:
    """The result of recomputing a chain."""

    intact: bool
    checked: int
    first_broken_sequence: int
    problem: str


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _optional_time(value: datetime | None) -> str:
    # ISO form with a four-digit year: a presented quote may carry any representable time,
    # and strftime writes year 1 as "1", which does not parse back.
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else ""


def _parse_time(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def confirmation_document(confirmation: Confirmation) -> dict[str, Any]:
    """The stored (and hashed) form of a confirmation."""
    return {
        "quote_id": confirmation.quote_id,
        "summary": confirmation.summary,
        "terms_hash": confirmation.terms_hash,
        "expires_at": _optional_time(confirmation.expires_at),
        "channel": confirmation.channel.value if confirmation.channel else "",
        "confirmed_at": _optional_time(confirmation.confirmed_at),
    }


def confirmation_from_document(document: dict[str, Any]) -> Confirmation:
    """A confirmation from its stored form."""
    channel = str(document.get("channel", ""))
    return Confirmation(
        quote_id=str(document.get("quote_id", "")),
        summary=str(document.get("summary", "")),
        terms_hash=str(document.get("terms_hash", "")),
        expires_at=_parse_time(str(document.get("expires_at", ""))),
        channel=Channel(channel) if channel else None,
        confirmed_at=_parse_time(str(document.get("confirmed_at", ""))),
    )


def canonical(workspace_id: str, sequence: int, entry: Entry) -> bytes:
    """The bytes an entry's hash covers."""
    document: dict[str, Any] = {
        "workspace_id": workspace_id,
        "sequence": sequence,
        "occurred_at": _time(entry.occurred_at),
        "actor_kind": entry.actor_kind,
        "actor_id": entry.actor_id,
        "kind": entry.kind,
        "contact_id": entry.contact_id,
        "stripe_customer_id": entry.stripe_customer_id,
        "action": entry.action,
        "amount_minor": entry.amount_minor,
        "currency": entry.currency,
        "outcome": entry.outcome,
        "subject_id": entry.subject_id,
    }
    if entry.confirmation is not None:
        document["confirmation"] = confirmation_document(entry.confirmation)
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(previous_hash: str, workspace_id: str, sequence: int, entry: Entry) -> str:
    """Hex SHA-256 linking the entry to its predecessor."""
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(canonical(workspace_id, sequence, entry))
    return digest.hexdigest()


def chain(
    workspace_id: str, last_sequence: int, last_hash: str, entries: Iterable[Entry]
) -> list[ChainedEntry]:
    """Appends entries after the chain head (sequence, hash), returning them chained."""
    chained = []
    previous = last_hash or GENESIS_HASH
    sequence = last_sequence
    for entry in entries:
        sequence += 1
        current = entry_hash(previous, workspace_id, sequence, entry)
        chained.append(ChainedEntry(workspace_id, sequence, entry, previous, current))
        previous = current
    return chained


class Verifier:
    """Recomputes a chain fed in sequence order, page by page; remembers the first break."""

    def __init__(self, workspace_id: str) -> None:
        self._workspace_id = workspace_id
        self._expected_sequence = 1
        self._previous = GENESIS_HASH
        self.checked = 0
        self.broken: Verification | None = None

    def feed(self, stored: ChainedEntry) -> bool:
        """Checks the next stored entry; False once the chain is broken."""
        if self.broken is not None:
            return False
        self.checked += 1
        if stored.sequence != self._expected_sequence:
            return self._break(self._expected_sequence, "entry missing")
        if stored.previous_hash != self._previous:
            return self._break(stored.sequence, "previous_hash does not link")
        recomputed = entry_hash(self._previous, self._workspace_id, stored.sequence, stored.entry)
        if recomputed != stored.hash:
            return self._break(stored.sequence, "entry altered: hash does not match content")
        self._expected_sequence += 1
        self._previous = stored.hash
        return True

    def finish(self, head_sequence: int, head_hash: str) -> Verification:
        """The result, given the chain head the log says it reached."""
        if self.broken is not None:
            return self.broken
        last = self._expected_sequence - 1
        if head_sequence > last:
            return Verification(False, self.checked, last + 1, "entry missing at the end")
        if head_sequence and head_hash != self._previous:
            return Verification(False, self.checked, head_sequence, "chain head does not match")
        return Verification(True, self.checked, 0, "")

    def _break(self, sequence: int, problem: str) -> bool:
        self.broken = Verification(False, self.checked, sequence, problem)
        return False
