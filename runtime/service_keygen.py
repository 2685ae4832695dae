"""Service key pairs for ``SERVICE_SIGNING_KEY`` and ``SERVICE_PUBLIC_KEYS``.

``python -m runtime.service_keygen add billing_gateway:2 --private-key bg2.pem --jwks
jwks.json`` makes a new Ed25519 key, writes its private half to the PEM file (mode 0600; an
existing file is never overwritten) and adds its public half to the JWKS file (created when
missing). ``remove KID --jwks jwks.json`` takes a retired key out of the JWKS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from runtime import service_auth


def _read_jwks(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"keys": []}
    document: dict[str, Any] = json.loads(path.read_text())
    if document.get("keys") != []:
        service_auth.PublicKeys.from_jwks(document)  # refuses a malformed or private set
    return document


def _write_jwks(path: Path, document: dict[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def add(key_id: str, private_key: Path, jwks_path: Path) -> service_auth.SigningKey:
    """A new key pair: the private key written to ``private_key``, the public key added to
    the JWKS at ``jwks_path``. Raises ValueError for a duplicate key id or an existing file."""
    document = _read_jwks(jwks_path)
    if any(entry.get("kid") == key_id for entry in document["keys"]):
        raise ValueError(f"{key_id} is already in {jwks_path}")
    key = service_auth.SigningKey.generate(key_id)
    try:
        descriptor = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ValueError(f"{private_key} exists; not overwritten") from None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(key.pem())
    document["keys"].append(key.public_jwk())
    _write_jwks(jwks_path, document)
    return key


def remove(key_id: str, jwks_path: Path) -> None:
    """Takes a key out of the JWKS. Raises ValueError when it is not there."""
    document = _read_jwks(jwks_path)
    kept = [entry for entry in document["keys"] if entry.get("kid") != key_id]
    if len(kept) == len(document["keys"]):
        raise ValueError(f"{key_id} is not in {jwks_path}")
    _write_jwks(jwks_path, {**document, "keys": kept})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="a new key pair")
    adding.add_argument("key_id", help="<service> or <service>:<label>")
    adding.add_argument("--private-key", type=Path, required=True, help="PEM file to write")
    adding.add_argument("--jwks", type=Path, required=True, help="JWKS file to add to")
    removing = commands.add_parser("remove", help="take a retired key out of the JWKS")
    removing.add_argument("key_id")
    removing.add_argument("--jwks", type=Path, required=True)
    arguments = parser.parse_args(argv)
    try:
        if arguments.command == "add":
            add(arguments.key_id, arguments.private_key, arguments.jwks)
            print(f"{arguments.key_id}: private key in {arguments.private_key}, public key added")
        else:
            remove(arguments.key_id, arguments.jwks)
            print(f"{arguments.key_id}: removed from {arguments.jwks}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
