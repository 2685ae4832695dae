"""Object-level authorization across contacts and workspaces, through direct RPCs, chat,
tools and MCP; admin RPCs of every service refused without an admin credential, with a
forged one, an expired one, one scoped to another workspace and a non-admin role."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest

from askvault.billing.v1 import billing_pb2
from askvault.common.v1 import common_pb2
from askvault.identity.v1 import identity_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault.policy.v1 import policy_pb2
from runtime import testing
from runtime.local_identity_provider import LocalIdentityProvider
from tests.security.conftest import (
    HMAC_SECRET_A,
    TOKEN_SECRET_A,
    WORKSPACE_A,
    WORKSPACE_B,
    System,
    admin,
    bearer,
    user_hash,
)

NOT_YOURS = {grpc.StatusCode.NOT_FOUND}
REFUSED_WORKSPACE = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED}


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    try:
        await call
    except grpc.aio.AioRpcError as refused:
        code, reason, _ = testing.error_details(refused)
        return code, reason
    return grpc.StatusCode.OK, ""


async def _bobs_operation(system: System) -> str:
    """Bob refunds his own last charge through chat; the operation id from the ledger."""
    status, _ = await system.turn("bob", "refund my last charge", "bob-refund")
    assert status == 200
    status, body = await system.turn("bob", "yes", "bob-refund")
    assert status == 200 and "refund" in body["reply"].lower(), body
    async with system.pool.acquire() as connection:
        found = await connection.fetchval(
            "SELECT operation_id FROM billing_gateway.operations WHERE workspace_id = $1 "
            "ORDER BY created_at DESC LIMIT 1",
            WORKSPACE_A,
        )
    assert found
    return str(found)


async def test_alice_asking_for_bobs_objects_by_rpc_is_not_found(system: System) -> None:
    alice = await system.assertion("alice")
    bob = system.customer("bob@example.com")
    operation = await _bobs_operation(system)
    before = await system.refunds()
    calls: dict[str, Callable[[], Any]] = {
        "subscription": lambda: system.billing.GetSubscription(
            billing_pb2.GetSubscriptionRequest(
                workspace_id=WORKSPACE_A,
                identity_assertion=alice,
                subscription_id=bob["subscription"],
            ),
            timeout=5,
        ),
        "charge": lambda: system.billing.GetCharge(
            billing_pb2.GetChargeRequest(
                workspace_id=WORKSPACE_A, identity_assertion=alice, charge_id=bob["charges"][0]
            ),
            timeout=5,
        ),
        "operation": lambda: system.billing.GetOperation(
            billing_pb2.GetOperationRequest(
                workspace_id=WORKSPACE_A, identity_assertion=alice, operation_id=operation
            ),
            timeout=5,
        ),
        "preview": lambda: system.billing.PreviewPlanChange(
            billing_pb2.PreviewPlanChangeRequest(
                workspace_id=WORKSPACE_A,
                identity_assertion=alice,
                subscription_id=bob["subscription"],
                target_price_id=system.summary_a["products"]["business"]["prices"]["usd"],
            ),
            timeout=5,
        ),
        "invoice retry": lambda: system.billing.RetryInvoicePayment(
            billing_pb2.RetryInvoicePaymentRequest(
                workspace_id=WORKSPACE_A,
                identity_assertion=alice,
                grant_id="gr_forged",
                invoice_id=bob["invoices"][-1],
                idempotency_key="sec-retry-bob",
            ),
            timeout=5,
        ),
        "charge refund": lambda: system.billing.RefundCharge(
            billing_pb2.RefundChargeRequest(
                workspace_id=WORKSPACE_A,
                identity_assertion=alice,
                grant_id="gr_forged",
                charge_id=bob["charges"][0],
                amount=common_pb2.Money(amount_minor=100, currency="usd"),
                idempotency_key="sec-refund-bob",
            ),
            timeout=5,
        ),
    }
    for name, call in calls.items():
        code, reason = await _code(call())
        # Bob's objects do not exist for alice; a forged grant is refused before any lookup.
        allowed = NOT_YOURS | (
            {grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.FAILED_PRECONDITION}
            if "grant" in name or name in ("invoice retry", "charge refund")
            else set()
        )
        assert code in allowed, (name, code, reason)
    # Alice's own invoice list does not contain bob's invoices.
    mine = await system.billing.ListInvoices(
        billing_pb2.ListInvoicesRequest(workspace_id=WORKSPACE_A, identity_assertion=alice),
        timeout=5,
    )
    assert not {invoice.invoice_id for invoice in mine.invoices} & set(bob["invoices"])
    assert await system.refunds() == before


async def test_workspace_b_assertion_is_refused_in_workspace_a(system: System) -> None:
    alice_b = await system.assertion("alice", WORKSPACE_B)
    alice_a = system.customer("alice@example.com")
    calls: dict[str, Callable[[], Any]] = {
        "status": lambda: system.billing.GetSubscription(
            billing_pb2.GetSubscriptionRequest(
                workspace_id=WORKSPACE_A, identity_assertion=alice_b
            ),
            timeout=5,
        ),
        "charges": lambda: system.billing.ListCharges(
            billing_pb2.ListChargesRequest(workspace_id=WORKSPACE_A, identity_assertion=alice_b),
            timeout=5,
        ),
        "authorize": lambda: system.policy.Authorize(
            policy_pb2.AuthorizeRequest(
                workspace_id=WORKSPACE_A,
                identity_assertion=alice_b,
                action=common_pb2.BILLING_ACTION_REFUND,
                details=policy_pb2.ActionDetails(
                    amount=common_pb2.Money(amount_minor=100, currency="usd"),
                    charge_id=alice_a["charges"][-1],
                ),
                confirmed=True,
                idempotency_key="sec-auth-b-in-a",
            ),
            timeout=5,
        ),
    }
    authorize = calls.pop("authorize")
    for name, call in calls.items():
        code, reason = await _code(call())
        assert code in REFUSED_WORKSPACE, (name, code, reason)
    # Policy answers an untrusted assertion with a refusal or a DENY decision, never a grant.
    try:
        decision = await authorize()
    except grpc.aio.AioRpcError as refused:
        code = refused.code()
    else:
        code = grpc.StatusCode.OK
        assert decision.decision == policy_pb2.DECISION_DENY, decision
        assert not decision.HasField("grant"), decision
    assert code in REFUSED_WORKSPACE | {grpc.StatusCode.OK}, code
    # Within its own workspace, B's alice cannot reach A's objects (another Stripe account).
    code, reason = await _code(
        system.billing.GetSubscription(
            billing_pb2.GetSubscriptionRequest(
                workspace_id=WORKSPACE_B,
                identity_assertion=alice_b,
                subscription_id=alice_a["subscription"],
            ),
            timeout=5,
        )
    )
    assert code in NOT_YOURS, (code, reason)


async def test_another_customers_ids_through_chat_tools_and_mcp_reveal_nothing(
    system: System,
) -> None:
    bob = system.customer("bob@example.com")
    before = await system.refunds()
    status, body = await system.turn("alice", f"refund charge {bob['charges'][0]}", "xs-chat")
    assert status == 200 and bob["customer"] not in str(body), body
    status, body = await system.turn("alice", "yes", "xs-chat")
    assert status == 200
    for name, arguments in (
        ("request_refund", {"charge_id": bob["charges"][0]}),
        ("get_subscription", {"subscription_id": bob["subscription"]}),
    ):
        status, body = await system.tool("alice", name, arguments)
        assert status in (200, 400), body
        assert body.get("status") != "ok" or name == "get_subscription", body
        assert bob["subscription"] not in str(body.get("data", "")), body
    # The same through MCP: identity from the headers, bob's charge id in the arguments.
    headers = {**system.visitor_headers("alice"), "Accept": "application/json, text/event-stream"}
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "request_refund", "arguments": {"charge_id": bob["charges"][0]}},
    }
    async with system.http.post(f"{system.edge_url}/mcp", json=call, headers=headers) as response:
        text = await response.text()
    assert response.status == 200, text
    assert '"status":"ok"' not in text.replace(" ", ""), text
    assert await system.refunds() == before


# ----- admin RPCs -----


def _expired() -> str:
    return admin("admin-expired", ttl_seconds=-120)


def _claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": testing.TEST_ADMIN_ISSUER,
        "aud": "askvault-admin",
        "sub": "mallory",
        "role": "admin",
        "roles": ["askvault-admin"],
        "askvault_workspaces": ["*"],
        "iat": now,
        "exp": now + 600,
    }
    claims.update(extra)
    return claims


def _published_key() -> dict[str, Any]:
    with open(testing.TEST_ADMIN_JWKS_FILE) as published:
        key: dict[str, Any] = json.load(published)["keys"][0]
    return key


def _forged() -> str:
    """Signed by a key of the attacker's under the provider's key id."""
    impostor = LocalIdentityProvider.generate(
        testing.TEST_ADMIN_ISSUER, testing.TEST_ADMIN_PROVIDER.key_id
    )
    return impostor.issue("mallory")


def _old_shared_key() -> str:
    """The HS256 scheme with the admin key every pod held before the provider."""
    return jwt.encode(_claims(), "test-admin-token-secret-0123456789abcdef", algorithm="HS256")


def _public_key_as_hmac_secret() -> str:
    """Algorithm confusion: an HMAC keyed with the provider's published key."""
    published = _published_key()
    return jwt.encode(
        _claims(), published["x"], algorithm="HS256", headers={"kid": published["kid"]}
    )


def _not_admin() -> str:
    return testing.TEST_ADMIN_PROVIDER.issue("eve", roles=["viewer"])


def _wrong_audience() -> str:
    return testing.TEST_ADMIN_PROVIDER.issue("eve", aud="something-else")


def _over_long() -> str:
    return testing.TEST_ADMIN_PROVIDER.issue("eve", ttl_seconds=30 * 365 * 86400)


def _unsigned() -> str:
    return jwt.encode(_claims(), key="", algorithm="none")


CREDENTIALS: dict[str, Callable[[], tuple[tuple[str, str], ...]]] = {
    "none": lambda: (),
    "forged": lambda: bearer(_forged()),
    "expired": lambda: bearer(_expired()),
    "other workspace": lambda: bearer(admin("admin-of-b", [WORKSPACE_B])),
    "not an admin role": lambda: bearer(_not_admin()),
    "wrong audience": lambda: bearer(_wrong_audience()),
    "unsigned": lambda: bearer(_unsigned()),
    "the old shared admin key": lambda: bearer(_old_shared_key()),
    "the published key as an HMAC secret": lambda: bearer(_public_key_as_hmac_secret()),
    "a thirty-year lifetime": lambda: bearer(_over_long()),
    "a workspaces string": lambda: bearer(
        testing.TEST_ADMIN_PROVIDER.issue("eve", askvault_workspaces=f"{WORKSPACE_A}_other")
    ),
}

ADMIN_CALLS: dict[str, tuple[str, str, Any]] = {
    "identity.AddSecret": (
        "identity",
        "AddSecret",
        identity_pb2.AddSecretRequest(
            workspace_id=WORKSPACE_A,
            key_id="k9",
            secret=b"x" * 32,
            idempotency_key="adm-1",
            purpose=identity_pb2.SECRET_PURPOSE_VISITOR_TOKEN,
        ),
    ),
    "identity.GetWorkspaceSettings": (
        "identity",
        "GetWorkspaceSettings",
        identity_pb2.GetWorkspaceSettingsRequest(workspace_id=WORKSPACE_A),
    ),
    "identity.UpdateWorkspaceSettings": (
        "identity",
        "UpdateWorkspaceSettings",
        identity_pb2.UpdateWorkspaceSettingsRequest(
            workspace_id=WORKSPACE_A,
            settings=identity_pb2.WorkspaceSettings(customer_metadata_key="attacker_key"),
            idempotency_key="adm-9",
        ),
    ),
    "identity.ListLegacyBindings": (
        "identity",
        "ListLegacyBindings",
        identity_pb2.ListLegacyBindingsRequest(workspace_id=WORKSPACE_A),
    ),
    "identity.RetireSecret": (
        "identity",
        "RetireSecret",
        identity_pb2.RetireSecretRequest(
            workspace_id=WORKSPACE_A, key_id="k1", idempotency_key="adm-2"
        ),
    ),
    "identity.ListSecrets": (
        "identity",
        "ListSecrets",
        identity_pb2.ListSecretsRequest(workspace_id=WORKSPACE_A),
    ),
    "policy.ListEscalations": (
        "policy",
        "ListEscalations",
        policy_pb2.ListEscalationsRequest(workspace_id=WORKSPACE_A),
    ),
    "policy.ApproveEscalation": (
        "policy",
        "ApproveEscalation",
        policy_pb2.ApproveEscalationRequest(
            workspace_id=WORKSPACE_A, escalation_id="esc_x", idempotency_key="adm-3"
        ),
    ),
    "policy.RejectEscalation": (
        "policy",
        "RejectEscalation",
        policy_pb2.RejectEscalationRequest(
            workspace_id=WORKSPACE_A, escalation_id="esc_x", idempotency_key="adm-4"
        ),
    ),
    "policy.ProposeBoundsChange": (
        "policy",
        "ProposeBoundsChange",
        policy_pb2.ProposeBoundsChangeRequest(
            workspace_id=WORKSPACE_A,
            bounds=policy_pb2.Bounds(workspace_id=WORKSPACE_A),
            idempotency_key="adm-5",
        ),
    ),
    "policy.ApproveBoundsChange": (
        "policy",
        "ApproveBoundsChange",
        policy_pb2.ApproveBoundsChangeRequest(
            workspace_id=WORKSPACE_A, change_id="bc_x", idempotency_key="adm-6"
        ),
    ),
    "policy.ListBoundsChanges": (
        "policy",
        "ListBoundsChanges",
        policy_pb2.ListBoundsChangesRequest(workspace_id=WORKSPACE_A),
    ),
    "policy.ListAuditEvents": (
        "policy",
        "ListAuditEvents",
        policy_pb2.ListAuditEventsRequest(workspace_id=WORKSPACE_A),
    ),
    "policy.VerifyAuditChain": (
        "policy",
        "VerifyAuditChain",
        policy_pb2.VerifyAuditChainRequest(workspace_id=WORKSPACE_A),
    ),
    "billing.GetOperation": (
        "billing_gateway",
        "GetOperation",
        billing_pb2.GetOperationRequest(workspace_id=WORKSPACE_A, operation_id="op_x"),
    ),
    "billing.ConnectAccount": (
        "billing_gateway",
        "ConnectAccount",
        billing_pb2.ConnectAccountRequest(
            workspace_id=WORKSPACE_A,
            secret_key="sk_test_attacker_account",
            webhook_url="https://attacker.example/hook",
            idempotency_key="adm-7",
        ),
    ),
    "billing.CheckWebhookSetup": (
        "billing_gateway",
        "CheckWebhookSetup",
        billing_pb2.CheckWebhookSetupRequest(workspace_id=WORKSPACE_A),
    ),
    "billing.RetireWebhookSecret": (
        "billing_gateway",
        "RetireWebhookSecret",
        billing_pb2.RetireWebhookSecretRequest(
            workspace_id=WORKSPACE_A, secret_id="we_x", idempotency_key="adm-retire"
        ),
    ),
    "billing.ListRecoveryCases": (
        "billing_gateway",
        "ListRecoveryCases",
        billing_pb2.ListRecoveryCasesRequest(workspace_id=WORKSPACE_A),
    ),
    "billing.GetRecoveryStats": (
        "billing_gateway",
        "GetRecoveryStats",
        billing_pb2.GetRecoveryStatsRequest(workspace_id=WORKSPACE_A),
    ),
    "billing.GetMirrorStatus": (
        "billing_gateway",
        "GetMirrorStatus",
        billing_pb2.GetMirrorStatusRequest(workspace_id=WORKSPACE_A),
    ),
    "billing.UpdateMirrorSettings": (
        "billing_gateway",
        "UpdateMirrorSettings",
        billing_pb2.UpdateMirrorSettingsRequest(
            workspace_id=WORKSPACE_A, idempotency_key="adm-mirror"
        ),
    ),
    "billing.CarryOutEscalation": (
        "billing_gateway",
        "CarryOutEscalation",
        billing_pb2.CarryOutEscalationRequest(
            workspace_id=WORKSPACE_A, escalation_id="esc_x", idempotency_key="adm-carry"
        ),
    ),
    "billing.DeclineEscalation": (
        "billing_gateway",
        "DeclineEscalation",
        billing_pb2.DeclineEscalationRequest(
            workspace_id=WORKSPACE_A,
            escalation_id="esc_x",
            reason="no",
            idempotency_key="adm-decline",
        ),
    ),
    "notifier.UpdateWorkspaceSettings": (
        "notifier",
        "UpdateWorkspaceSettings",
        notifier_pb2.UpdateWorkspaceSettingsRequest(
            settings=notifier_pb2.WorkspaceSettings(workspace_id=WORKSPACE_A),
            idempotency_key="adm-8",
        ),
    ),
    "notifier.GetWorkspaceSettings": (
        "notifier",
        "GetWorkspaceSettings",
        notifier_pb2.GetWorkspaceSettingsRequest(workspace_id=WORKSPACE_A),
    ),
    "notifier.SetHelpdeskWebhookSecret": (
        "notifier",
        "SetHelpdeskWebhookSecret",
        notifier_pb2.SetHelpdeskWebhookSecretRequest(
            workspace_id=WORKSPACE_A,
            secret="whsec_" + "A" * 44,
            idempotency_key="adm-helpdesk-secret",
        ),
    ),
}


@pytest.mark.parametrize("credential", list(CREDENTIALS))
async def test_admin_rpcs_of_every_service_refuse_a_bad_admin_credential(
    system: System, credential: str
) -> None:
    before = await system.settled_snapshot()
    for name, (service, method, request) in ADMIN_CALLS.items():
        call = getattr(system.stub(service), method)
        code, reason = await _code(call(request, metadata=CREDENTIALS[credential](), timeout=5))
        assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED), (
            name,
            credential,
            code,
            reason,
        )
        assert reason == "ADMIN_REQUIRED", (name, credential, reason)
    assert await system.snapshot() == before


async def test_a_genuine_admin_of_the_workspace_gets_through(system: System) -> None:
    """The refusals above are about the credential: the right one is accepted."""
    metadata = bearer(admin("admin-of-a", [WORKSPACE_A]))
    listed = await system.identity.ListSecrets(
        identity_pb2.ListSecretsRequest(workspace_id=WORKSPACE_A), metadata=metadata, timeout=5
    )
    assert [(secret.key_id, secret.purpose) for secret in listed.secrets] == [
        ("k1", identity_pb2.SECRET_PURPOSE_USER_HASH),
        ("t1", identity_pb2.SECRET_PURPOSE_VISITOR_TOKEN),
    ]
    assert b"hmac" not in listed.SerializeToString()


# ----- issue 13: customer binding only from signed facts, one key per protocol -----


async def _contact_row(system: System, user_id: str) -> dict[str, Any] | None:
    async with system.pool.acquire() as connection:
        row = await connection.fetchrow(
            "SELECT * FROM identity.contacts WHERE workspace_id = $1 AND user_id = $2",
            WORKSPACE_A,
            user_id,
        )
    return dict(row) if row else None


async def _messages_to(system: System, email: str) -> int:
    async with system.pool.acquire() as connection:
        found = await connection.fetchval(
            "SELECT count(*) FROM notifier.messages WHERE lower(recipient_email) = lower($1)",
            email,
        )
    return int(found)


async def _borrowed_email_turns(system: System, user: str, victim: str, conversation: str) -> str:
    """Chat turns as ``user`` (signed) sending ``victim``'s email; every reply, joined."""
    replies = []
    for text in (
        "What is my plan?",
        "Show my invoices for the last 3 months",
        "email my invoices for the last 3 months",
        "yes",
        "update my card",
    ):
        async with system.http.post(
            f"{system.edge_url}/v1/chat/turns",
            json={
                "workspace_id": WORKSPACE_A,
                "conversation_id": conversation,
                "visitor": {
                    "user_id": user,
                    "email": victim,
                    "user_hash": user_hash(user, HMAC_SECRET_A),
                },
                "text": text,
            },
        ) as response:
            assert response.status == 200, await response.text()
            replies.append(str((await response.json())["reply"]))
    return "\n".join(replies)


async def test_a_borrowed_email_on_a_first_turn_binds_nothing(system: System) -> None:
    # Attack: mallory, a signed-up user of the workspace, proves her own user id and sends
    # carol's email on her first chat.
    victim = "carol@example.com"
    carol = system.customer(victim)
    mails_before = await _messages_to(system, victim)
    replies = await _borrowed_email_turns(system, "mallory", victim, "borrowed-first")
    contact = await _contact_row(system, "mallory")
    assert contact is not None
    assert contact["stripe_customer_id"] == ""
    assert contact["email"] == ""
    # Nothing of carol's account in the replies: not her plan state, invoices or card.
    assert "past due" not in replies.lower(), replies
    for invoice in carol["invoices"]:
        assert invoice not in replies
    assert "4242" not in replies and "0341" not in replies, replies
    assert await _messages_to(system, victim) == mails_before


async def test_a_borrowed_email_after_binding_moves_nothing(system: System) -> None:
    # erin is bound to her own customer by the metadata naming her verified user id; then
    # she sends bob's email: the binding stays, nothing goes to bob.
    status, first = await system.turn("erin", "What is my plan?", "borrowed-after")
    assert status == 200, first
    erin = await _contact_row(system, "erin")
    assert erin is not None
    assert erin["stripe_customer_id"] == system.customer("erin@example.com")["customer"]
    victim = "bob@example.com"
    mails_before = await _messages_to(system, victim)
    replies = await _borrowed_email_turns(system, "erin", victim, "borrowed-after")
    after = await _contact_row(system, "erin")
    assert after is not None
    assert after["stripe_customer_id"] == erin["stripe_customer_id"]
    assert after["email"] == ""
    for invoice in system.customer(victim)["invoices"]:
        assert invoice not in replies
    assert await _messages_to(system, victim) == mails_before


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def test_a_user_hash_of_a_crafted_user_id_is_not_a_visitor_token(system: System) -> None:
    # Attack: the workspace's backend hashes any user id it is given. The user_hash of the
    # user id "<header>.<payload>" would be an HS256 signature for a token naming any sub.
    now = int(time.time())
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = _b64url(json.dumps({"sub": "crafted-victim", "iat": now, "exp": now + 600}).encode())
    crafted_user_id = f"{header}.{payload}"
    signature = bytes.fromhex(user_hash(crafted_user_id, HMAC_SECRET_A))
    token = f"{crafted_user_id}.{_b64url(signature)}"
    async with system.http.post(
        f"{system.edge_url}/v1/chat/turns",
        json={
            "workspace_id": WORKSPACE_A,
            "conversation_id": "crafted-token",
            "visitor": {"token": token},
            "text": "What is my plan?",
        },
    ) as response:
        assert response.status == 200, await response.text()
    assert await _contact_row(system, "crafted-victim") is None
    code, reason = await _code(
        system.identity.VerifyVisitor(
            identity_pb2.VerifyVisitorRequest(workspace_id=WORKSPACE_A, token=token), timeout=5
        )
    )
    assert (code, reason) == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_KEY")


async def test_a_token_customer_claim_binds_and_legacy_bindings_are_listed(
    system: System,
) -> None:
    now = int(time.time())
    alice = system.customer("alice@example.com")["customer"]
    token = jwt.encode(
        {"sub": "alice-token", "iat": now, "exp": now + 600, "stripe_customer_id": alice},
        TOKEN_SECRET_A,
        algorithm="HS256",
        headers={"kid": "t1"},
    )
    verified = await system.identity.VerifyVisitor(
        identity_pb2.VerifyVisitorRequest(workspace_id=WORKSPACE_A, token=token), timeout=5
    )
    assert (verified.contact.stripe_customer_id, verified.contact.binding_source) == (
        alice,
        identity_pb2.BINDING_SOURCE_TOKEN_CLAIM,
    )
    async with system.pool.acquire() as connection:
        await connection.execute(
            "UPDATE identity.contacts SET binding_source = 'legacy_unsigned'"
            " WHERE workspace_id = $1 AND user_id = 'alice-token'",
            WORKSPACE_A,
        )
    listed = await system.identity.ListLegacyBindings(
        identity_pb2.ListLegacyBindingsRequest(workspace_id=WORKSPACE_A),
        metadata=bearer(admin("admin-of-a", [WORKSPACE_A])),
        timeout=5,
    )
    assert verified.contact.contact_id in {c.contact_id for c in listed.contacts}
