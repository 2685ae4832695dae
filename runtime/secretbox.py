"""Encryption at rest for secrets the services must be able to read back (HMAC secrets,
Stripe keys, webhook signing secrets): AES-256-GCM, bound to the row it belongs to."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12


class SecretBox:
    """Encrypts with the current key and decrypts with any configured key, so the
    encryption key can be rotated without downtime.

    ``keys`` is the environment form ``"k2:<base64 32 bytes>,k1:<base64 32 bytes>"``; the
    first is current."""

    def __init__(self, keys: str) -> None:
        parsed: dict[str, AESGCM] = {}
        order: list[str] = []
        for item in (part.strip() for part in keys.split(",")):
            if not item:
                continue
            key_id, _, material = item.partition(":")
            raw = base64.b64decode(material)
            if len(raw) != 32 or not key_id:
                raise ValueError("each encryption key must be '<id>:<base64 of 32 bytes>'")
            parsed[key_id] = AESGCM(raw)
            order.append(key_id)
        if not order:
            raise ValueError("at least one encryption key is required")
        self._keys = parsed
        self._current = order[0]

    def seal(self, plaintext: bytes, bound_to: str) -> bytes:
        """Ciphertext as ``key_id.nonce+ct``; ``bound_to`` (e.g. "ws_1/secret/k1") must be
        given again to open it, so a ciphertext copied to another row does not open."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._keys[self._current].encrypt(nonce, plaintext, bound_to.encode())
        return self._current.encode() + b"." + nonce + sealed

    def open(self, ciphertext: bytes, bound_to: str) -> bytes:
        """The plaintext; raises ValueError if it was tampered with or moved."""
        key_id, _, rest = ciphertext.partition(b".")
        key = self._keys.get(key_id.decode(errors="replace"))
        if key is None:
            raise ValueError("ciphertext key is not configured")
        try:
            return key.decrypt(rest[:_NONCE_BYTES], rest[_NONCE_BYTES:], bound_to.encode())
        except Exception as error:
            raise ValueError("ciphertext does not open") from error


def generate_key_spec(key_id: str = "k1") -> str:
    """A fresh key in the environment form, for set-up scripts."""
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"
