"""The audit log's keyed hash chain and the checkpoints that anchor it outside the database.

Each workspace has its own chain: entry n carries the hash of entry n-1 and its own hash,
``HMAC-SHA256(key, context || key_id || previous_hash_hex || canonical JSON of the entry)``
under one of policy's audit MAC keys (AUDIT_MAC_KEYS), whose id the entry stores. The
canonical JSON has sorted keys, no spaces and microsecond UTC times. Changing any stored
field, deleting an entry or reordering entries breaks the chain at that sequence, and since
the database never sees the key, whoever controls the database (even as its owner, able to
drop the append-only triggers) cannot recompute a valid chain after a rewrite.

Entries written before the MAC existed carry ``sha256(previous_hash_hex || canonical JSON)``
and no key id; they still verify, but only as a prefix of the chain: once an entry is MAC'd,
every later one must be too, and the first MAC'd entry covers the last plain hash, so the
chain stays linked across the switch and a rewrite of the plain prefix breaks that link.
An entry's ``confirmation`` (the quote a person confirmed) is part of the document only when
present, so entries written before it existed keep their hashes.

A checkpoint is a workspace's chain head (sequence, hash) at a time, MAC'd under the same
keys with its own context and written to policy's logs; an admin later presents it and
policy says whether the chain still holds that hash at that sequence.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from policy.domain.model import Channel, Confirmation

GENESIS_HASH = "0" * 64
# What an entry's MAC and a checkpoint's MAC each cover first, so that one is never valid as
# the other.
_ENTRY_CONTEXT = b"askvault.policy.audit.entry.v1\n"
_CHECKPOINT_CONTEXT = b"askvault.policy.audit.checkpoint.v1\n"
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_HASH = re.compile(r"^[0-9a-f]{64}$")
# Shortest audit MAC key accepted, in bytes (the HMAC-SHA256 block is 64; 32 is its strength).
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class MacKeys:
    """The audit MAC keys: the first signs new entries and checkpoints, every one verifies
    (rotation: put the new key first and keep the old ones while their entries exist)."""

    signing_key_id: str
    keys: Mapping[str, bytes] = field(repr=False)

    @classmethod
    def parse(cls, spec: str) -> MacKeys:
        """Keys from their environment form ``"kid2:<base64>,kid1:<base64>"``."""
        keys: dict[str, bytes] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            key_id, _, material = item.partition(":")
            if not _KEY_ID.match(key_id):
                raise ValueError(
                    "each audit MAC key must be '<id>:<base64 key>' (id: A-Z a-z 0-9 _ . -)"
                )
            if key_id in keys:
                raise ValueError(f"audit MAC key id {key_id!r} is given twice")
            try:
                raw = base64.b64decode(material, validate=True)
            except binascii.Error:
                raise ValueError(f"audit MAC key {key_id!r} is not base64") from None
            if len(raw) < MIN_KEY_BYTES:
                raise ValueError(f"audit MAC key {key_id!r} must be at least {MIN_KEY_BYTES} bytes")
            keys[key_id] = raw
        if not keys:
            raise ValueError("at least one audit MAC key is required")
        return cls(next(iter(keys)), keys)

    def signing_key(self) -> bytes:
        """The key new entries and checkpoints are MAC'd with."""
        return self.keys[self.signing_key_id]


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
    # The audit MAC key the hash was made with; "" for a plain SHA-256 entry (written before
    # the MAC existed).
    key_id: str = ""


@dataclass(frozen=True)
class Verification:
    """The result of recomputing a chain."""

    intact: bool
    checked: int
    first_broken_sequence: int
    problem: str
    # How many of the checked entries are plain SHA-256 ones (the chain's prefix written
    # before the MAC existed); they are only as good as the checkpoints that cover them.
    unsigned: int = 0


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
    """Hex SHA-256 linking the entry to its predecessor: how entries were chained before the
    MAC existed (kept to verify them)."""
    digest = hashlib.sha256(previous_hash.encode("ascii"))
    digest.update(canonical(workspace_id, sequence, entry))
    return digest.hexdigest()


def entry_mac(
    key: bytes, key_id: str, previous_hash: str, workspace_id: str, sequence: int, entry: Entry
) -> str:
    """Hex HMAC-SHA256 linking the entry to its predecessor under an audit MAC key."""
    mac = hmac.new(key, _ENTRY_CONTEXT, hashlib.sha256)
    mac.update(key_id.encode("ascii") + b"\n")
    mac.update(previous_hash.encode("ascii"))
    mac.update(canonical(workspace_id, sequence, entry))
    return mac.hexdigest()


def chain(
    keys: MacKeys,
    workspace_id: str,
    last_sequence: int,
    last_hash: str,
    entries: Iterable[Entry],
) -> list[ChainedEntry]:
    """Appends entries after the chain head (sequence, hash), returning them chained under
    the signing key."""
    chained = []
    previous = last_hash or GENESIS_HASH
    sequence = last_sequence
    key_id, key = keys.signing_key_id, keys.signing_key()
    for entry in entries:
        sequence += 1
        current = entry_mac(key, key_id, previous, workspace_id, sequence, entry)
        chained.append(ChainedEntry(workspace_id, sequence, entry, previous, current, key_id))
        previous = current
    return chained


class Verifier:
    """Recomputes a chain fed in sequence order, page by page; remembers the first break."""

    def __init__(self, keys: MacKeys, workspace_id: str) -> None:
        self._keys = keys
        self._workspace_id = workspace_id
        self._expected_sequence = 1
        self._previous = GENESIS_HASH
        self._signed_seen = False
        self.checked = 0
        self.unsigned = 0
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
        if stored.key_id:
            key = self._keys.keys.get(stored.key_id)
            if key is None:
                return self._break(
                    stored.sequence, f"entry MAC'd with unknown key {stored.key_id!r}"
                )
            recomputed = entry_mac(
                key,
                stored.key_id,
                self._previous,
                self._workspace_id,
                stored.sequence,
                stored.entry,
            )
            self._signed_seen = True
        elif self._signed_seen:
            # A plain entry after a MAC'd one: recomputed by someone without the key.
            return self._break(stored.sequence, "entry altered: not MAC'd after MAC'd entries")
        else:
            recomputed = entry_hash(
                self._previous, self._workspace_id, stored.sequence, stored.entry
            )
            self.unsigned += 1
        if not hmac.compare_digest(recomputed.encode(), stored.hash.encode()):
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
            return Verification(
                False, self.checked, last + 1, "entry missing at the end", self.unsigned
            )
        if head_sequence and head_hash != self._previous:
            return Verification(
                False, self.checked, head_sequence, "chain head does not match", self.unsigned
            )
        return Verification(True, self.checked, 0, "", self.unsigned)

    @property
    def verified_through(self) -> tuple[int, str]:
        """(sequence, hash) of the last entry fed that verified; (0, genesis) before any."""
        return self._expected_sequence - 1, self._previous

    def _break(self, sequence: int, problem: str) -> bool:
        self.broken = Verification(False, self.checked, sequence, problem, self.unsigned)
        return False


# -- checkpoints ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A workspace's chain head as policy saw it at a time, MAC'd under an audit MAC key."""

    workspace_id: str
    sequence: int
    hash: str
    taken_at: datetime
    key_id: str


class CheckpointError(ValueError):
    """A presented checkpoint that is malformed, MAC'd under an unknown key or forged."""


def _checkpoint_document(checkpoint: Checkpoint) -> bytes:
    return json.dumps(
        {
            "v": 1,
            "workspace_id": checkpoint.workspace_id,
            "sequence": checkpoint.sequence,
            "hash": checkpoint.hash,
            "taken_at": _time(checkpoint.taken_at),
            "key_id": checkpoint.key_id,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


def _checkpoint_mac(key: bytes, document: bytes) -> bytes:
    return hmac.new(key, _CHECKPOINT_CONTEXT + document, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal_checkpoint(
    keys: MacKeys, workspace_id: str, sequence: int, head_hash: str, taken_at: datetime
) -> str:
    """The checkpoint in its logged form ``base64url(document).base64url(mac)``: one opaque
    string, copied from a log line as is (base64 keeps hex digits from looking like card
    numbers to the log redaction)."""
    checkpoint = Checkpoint(workspace_id, sequence, head_hash, taken_at, keys.signing_key_id)
    document = _checkpoint_document(checkpoint)
    return f"{_b64(document)}.{_b64(_checkpoint_mac(keys.signing_key(), document))}"


def open_checkpoint(keys: MacKeys, sealed: str) -> Checkpoint:
    """The checkpoint a sealed string holds, once its MAC is checked; CheckpointError when
    it is malformed, under an unknown key or not MAC'd by policy."""
    encoded_document, dot, encoded_mac = sealed.strip().partition(".")
    try:
        if not dot:
            raise ValueError("no MAC")
        document = _unb64(encoded_document)
        mac = _unb64(encoded_mac)
        fields = json.loads(document)
        if not isinstance(fields, dict) or fields.get("v") != 1:
            raise ValueError("unknown version")
        checkpoint = Checkpoint(
            workspace_id=str(fields["workspace_id"]),
            sequence=int(fields["sequence"]),
            hash=str(fields["hash"]),
            taken_at=datetime.fromisoformat(str(fields["taken_at"])),
            key_id=str(fields["key_id"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise CheckpointError("the checkpoint is not one policy wrote") from None
    key = keys.keys.get(checkpoint.key_id)
    if key is None:
        raise CheckpointError(f"the checkpoint is MAC'd with unknown key {checkpoint.key_id!r}")
    if not hmac.compare_digest(_checkpoint_mac(key, document), mac):
        raise CheckpointError("the checkpoint's MAC is not valid")
    if checkpoint.sequence < 1 or not _HASH.match(checkpoint.hash):
        raise CheckpointError("the checkpoint is not one policy wrote")
    return checkpoint
