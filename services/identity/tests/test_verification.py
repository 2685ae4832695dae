"""Unit tests of visitor verification: no server, no database."""

from __future__ import annotations

import time

import jwt
import pytest

from identity.domain import verification
from runtime import errors

SECRET_A = b"a" * 32
SECRET_B = b"b" * 32
LEEWAY = 30
MAX_LIFETIME = 86_400


def _reason(call: pytest.ExceptionInfo[errors.ServiceError]) -> str:
    assert call.value.kind is errors.Kind.UNAUTHENTICATED
    return call.value.reason


def _token(secret: bytes, kid: str, **claims: object) -> str:
    now = int(time.time())
    body: dict[str, object] = {"sub": "user-1", "iat": now, "exp": now + 600}
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256", headers={"kid": kid})


def _verify_token(token: str, secrets: dict[str, bytes], **kwargs: object) -> str:
    return verification.verify_token(
        token,
        secrets,
        leeway_seconds=LEEWAY,
        max_lifetime_seconds=MAX_LIFETIME,
        **kwargs,  # type: ignore[arg-type]
    ).user_id


def test_user_hash_of_user_id_verifies_and_names_the_key() -> None:
    user_hash = verification.compute_user_hash(SECRET_A, "user-1")
    visitor = verification.verify_user_hash({"k1": SECRET_A}, "user-1", "", user_hash)
    assert (visitor.user_id, visitor.key_id, visitor.method) == ("user-1", "k1", "user_hash")


def test_user_hash_falls_back_to_email_without_user_id() -> None:
    user_hash = verification.compute_user_hash(SECRET_A, "", "ann@example.com")
    visitor = verification.verify_user_hash({"k1": SECRET_A}, "", "ann@example.com", user_hash)
    assert visitor.email == "ann@example.com"


def test_wrong_secret_is_refused() -> None:
    user_hash = verification.compute_user_hash(SECRET_B, "user-1")
    with pytest.raises(errors.ServiceError) as refused:
        verification.verify_user_hash({"k1": SECRET_A}, "user-1", "", user_hash)
    assert _reason(refused) == "HASH_MISMATCH"


def test_another_users_hash_is_refused() -> None:
    user_hash = verification.compute_user_hash(SECRET_A, "user-2")
    with pytest.raises(errors.ServiceError) as refused:
        verification.verify_user_hash({"k1": SECRET_A}, "user-1", "", user_hash)
    assert _reason(refused) == "HASH_MISMATCH"


def test_upper_case_hex_is_refused_by_design() -> None:
    user_hash = verification.compute_user_hash(SECRET_A, "user-1").upper()
    with pytest.raises(errors.ServiceError) as refused:
        verification.verify_user_hash({"k1": SECRET_A}, "user-1", "", user_hash)
    assert _reason(refused) == "HASH_MISMATCH"


def test_rotation_two_active_keys_both_verify() -> None:
    secrets = {"old": SECRET_A, "new": SECRET_B}
    for key_id, secret in (("old", SECRET_A), ("new", SECRET_B)):
        user_hash = verification.compute_user_hash(secret, "user-1")
        assert verification.verify_user_hash(secrets, "user-1", "", user_hash).key_id == key_id


def test_no_active_secret_refuses_everything() -> None:
    user_hash = verification.compute_user_hash(SECRET_A, "user-1")
    with pytest.raises(errors.ServiceError) as refused:
        verification.verify_user_hash({}, "user-1", "", user_hash)
    assert _reason(refused) == "HASH_MISMATCH"


def test_valid_token_verifies_with_its_kid() -> None:
    token = _token(SECRET_B, "k2", email="ann@example.com")
    visitor = verification.verify_token(
        token,
        {"k1": SECRET_A, "k2": SECRET_B},
        leeway_seconds=LEEWAY,
        max_lifetime_seconds=MAX_LIFETIME,
    )
    assert (visitor.user_id, visitor.email, visitor.key_id) == ("user-1", "ann@example.com", "k2")


def test_expired_token_is_refused() -> None:
    now = int(time.time())
    token = _token(SECRET_A, "k1", iat=now - 900, exp=now - LEEWAY - 1)
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "TOKEN_EXPIRED"


def test_token_within_leeway_after_expiry_is_accepted() -> None:
    now = int(time.time())
    token = _token(SECRET_A, "k1", iat=now - 900, exp=now - LEEWAY + 5)
    assert _verify_token(token, {"k1": SECRET_A}) == "user-1"


def test_token_issued_in_the_future_is_refused() -> None:
    now = int(time.time())
    token = _token(SECRET_A, "k1", iat=now + LEEWAY + 60, exp=now + 3600)
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "TOKEN_NOT_YET_VALID"


def test_token_without_exp_is_refused() -> None:
    token = jwt.encode(
        {"sub": "user-1", "iat": int(time.time())}, SECRET_A, "HS256", headers={"kid": "k1"}
    )
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "TOKEN_INVALID"


def test_unknown_or_retired_kid_is_refused() -> None:
    token = _token(SECRET_A, "retired")
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "UNKNOWN_KEY"


def test_token_signed_with_another_secret_under_a_known_kid_is_refused() -> None:
    token = _token(SECRET_B, "k1")
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "TOKEN_INVALID"


def test_unsigned_token_is_refused() -> None:
    token = jwt.encode({"sub": "user-1"}, "", algorithm="none", headers={"kid": "k1"})
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "TOKEN_INVALID"


def test_token_lifetime_over_the_maximum_is_refused() -> None:
    now = int(time.time())
    token = _token(SECRET_A, "k1", iat=now, exp=now + MAX_LIFETIME + 1)
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A})
    assert _reason(refused) == "TOKEN_INVALID"


def test_token_for_another_user_than_the_claimed_user_id_is_refused() -> None:
    token = _token(SECRET_A, "k1", sub="user-2")
    with pytest.raises(errors.ServiceError) as refused:
        _verify_token(token, {"k1": SECRET_A}, expected_user_id="user-1")
    assert _reason(refused) == "TOKEN_INVALID"
