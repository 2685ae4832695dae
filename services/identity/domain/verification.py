"""Visitor verification: Intercom-style user_hash and HS256 visitor tokens.

Decision on hex case: a user_hash must be lower-case hex, as Intercom and every HMAC library
print it; upper-case hex is refused rather than normalised, so exactly one spelling of a
hash verifies. Every refusal carries a reason and nothing about the secrets.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from runtime import errors

_LOWER_HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# What a secret verifies (AddSecret purpose). A secret verifies only its own purpose: the
# user_hash HMAC of a chosen user id "<header>.<payload>" is exactly an HS256 signature, so
# one key for both would let any user_hash oracle mint tokens.
USER_HASH = "user_hash"
VISITOR_TOKEN = "visitor_token"  # noqa: S105 - a purpose name, not a secret


@dataclass(frozen=True)
class VerifiedVisitor:
    """Who the visitor proved to be, and with which key."""

    user_id: str
    email: str
    key_id: str
    method: str  # "user_hash" or "token"
    # A token's stripe_customer_id claim: the customer the workspace signed for the visitor.
    stripe_customer_id: str = ""


def refused(reason: str, message: str) -> errors.ServiceError:
    """An UNAUTHENTICATED error with a reason code."""
    return errors.ServiceError(errors.Kind.UNAUTHENTICATED, reason, message)


def user_hash_input(user_id: str, email: str) -> str:
    """What the hash signs: the user id, or the email when there is no user id."""
    return user_id or email


def compute_user_hash(secret: bytes, user_id: str, email: str = "") -> str:
    """Lower-case hex HMAC-SHA256, as the workspace's backend computes it."""
    return hmac.new(secret, user_hash_input(user_id, email).encode(), hashlib.sha256).hexdigest()


def verify_user_hash(
    active_secrets: Mapping[str, bytes], user_id: str, email: str, user_hash: str
) -> VerifiedVisitor:
    """Checks the hash against every active user_hash secret (never a token secret) in
    constant time per comparison."""
    if not _LOWER_HEX_SHA256.match(user_hash):
        raise refused("HASH_MISMATCH", "user_hash is not a lower-case hex HMAC-SHA256")
    matched = ""
    for key_id, secret in active_secrets.items():
        expected = compute_user_hash(secret, user_id, email)
        # Compare against every key, so timing does not reveal which key matched.
        if hmac.compare_digest(expected, user_hash) and not matched:
            matched = key_id
    if not matched:
        raise refused("HASH_MISMATCH", "user_hash does not verify")
    return VerifiedVisitor(user_id=user_id, email=email, key_id=matched, method="user_hash")


def verify_token(
    token: str,
    active_secrets: Mapping[str, bytes],
    *,
    leeway_seconds: int,
    max_lifetime_seconds: int,
    expected_user_id: str = "",
    now: float | None = None,
) -> VerifiedVisitor:
    """Checks an HS256 visitor token against the visitor-token secrets only (a kid naming a
    user_hash secret is UNKNOWN_KEY): kid picks the key, exp is required, iat may not lie in
    the future, the lifetime is bounded, sub is the user id; email and stripe_customer_id are
    optional signed claims."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise refused("TOKEN_INVALID", "token is malformed") from None
    if header.get("alg") != "HS256":
        raise refused("TOKEN_INVALID", "token must be HS256")
    key_id = header.get("kid")
    if not isinstance(key_id, str) or key_id not in active_secrets:
        raise refused("UNKNOWN_KEY", "token key is unknown or retired")
    options: dict[str, object] = {"require": ["exp", "iat", "sub"], "verify_iat": True}
    try:
        claims = jwt.decode(
            token,
            active_secrets[key_id],
            algorithms=["HS256"],
            leeway=leeway_seconds,
            options=options,  # type: ignore[arg-type]
        )
    except jwt.ExpiredSignatureError:
        raise refused("TOKEN_EXPIRED", "token expired") from None
    except jwt.ImmatureSignatureError:
        raise refused("TOKEN_NOT_YET_VALID", "token issued in the future") from None
    except jwt.PyJWTError:
        raise refused("TOKEN_INVALID", "token does not verify") from None
    issued_at, expires_at = int(claims["iat"]), int(claims["exp"])
    if now is not None and expires_at + leeway_seconds < now:
        raise refused("TOKEN_EXPIRED", "token expired")
    if now is not None and issued_at - leeway_seconds > now:
        raise refused("TOKEN_NOT_YET_VALID", "token issued in the future")
    if expires_at - issued_at > max_lifetime_seconds:
        raise refused("TOKEN_INVALID", "token lifetime is too long")
    user_id = str(claims["sub"])
    if not user_id:
        raise refused("TOKEN_INVALID", "token has no subject")
    if expected_user_id and expected_user_id != user_id:
        raise refused("TOKEN_INVALID", "token is for another user")
    email = claims.get("email") or ""
    customer = claims.get("stripe_customer_id") or ""
    if not isinstance(email, str) or len(email) > 320:
        raise refused("TOKEN_INVALID", "token email claim is not an email")
    if not isinstance(customer, str) or (
        customer and not (customer.startswith("cus_") and len(customer) <= 255)
    ):
        raise refused("TOKEN_INVALID", "token stripe_customer_id claim is not a customer id")
    return VerifiedVisitor(
        user_id=user_id,
        email=email,
        key_id=key_id,
        method="token",
        stripe_customer_id=customer,
    )
