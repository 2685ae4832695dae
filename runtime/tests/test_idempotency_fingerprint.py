"""What "the same call" means for an idempotency key: with the verified principal given, the
freshly issued assertion no longer counts, the principal does."""

from __future__ import annotations

from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from runtime import idempotency


def _authorize(assertion: str, key: str = "k1") -> policy_pb2.AuthorizeRequest:
    return policy_pb2.AuthorizeRequest(
        workspace_id="ws_1", identity_assertion=assertion, idempotency_key=key
    )


def test_the_assertion_counts_unless_the_principal_is_given() -> None:
    first, retried = _authorize("assertion-a"), _authorize("assertion-b")
    assert idempotency.fingerprint(first) != idempotency.fingerprint(retried)
    assert idempotency.fingerprint(first, principal="ct_1:cus_1") == idempotency.fingerprint(
        retried, principal="ct_1:cus_1"
    )
    # Another person under the same key is another call; so is the same request unverified.
    assert idempotency.fingerprint(first, principal="ct_1:cus_1") != idempotency.fingerprint(
        retried, principal="ct_2:cus_2"
    )
    assert idempotency.fingerprint(first, principal="ct_1:cus_1") != idempotency.fingerprint(first)


def test_the_key_never_counts_and_a_request_without_an_assertion_takes_a_principal() -> None:
    assert idempotency.fingerprint(_authorize("a", key="k1")) == idempotency.fingerprint(
        _authorize("a", key="k2")
    )
    send = notifier_pb2.SendRequest(workspace_id="ws_1", dedup_key="d1")
    assert idempotency.fingerprint(send, "dedup_key", principal="p") != idempotency.fingerprint(
        send, "dedup_key"
    )
