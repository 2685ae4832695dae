"""What each PolicyService request must hold before its use case runs: the limits on its
fields, its enum values, its idempotency key. Each check raises INVALID_ARGUMENT naming every
field at fault (the key's own check comes after the fields'), so the servicer only calls the
check for its request and the use case may take the request as valid.
"""

from __future__ import annotations

from collections.abc import Container

from askvault.common.v1 import common_pb2
from askvault.policy.v1 import policy_pb2 as pb
from policy import convert, escalations
from runtime import errors, idempotency

_MAX_WORKSPACE_ID = 64
_MAX_ID = 128
# Identity assertions are short signed tokens; a longer one is not one.
_MAX_ASSERTION = 8192
# Longest quote summary kept (a sentence or a few, not a document).
_MAX_QUOTE_SUMMARY = 4096


def _of_workspace(workspace_id: str) -> errors.Validator:
    """A validator that has looked at the request's workspace id."""
    check = errors.Validator()
    check.non_empty(workspace_id, "workspace_id", max_length=_MAX_WORKSPACE_ID)
    return check


def _once(check: errors.Validator, idempotency_key: str) -> None:
    """The end of a mutating request's check: its fields, then its idempotency key."""
    check.check()
    idempotency.require_key(idempotency_key)


def _known_or_unspecified(value: int, unspecified: int, known: Container[int]) -> bool:
    """An enum value policy maps, or the enum's unspecified value (no filter, the default)."""
    return value == unspecified or value in known


def _action_or_unspecified(action: int) -> bool:
    return _known_or_unspecified(
        action, common_pb2.BILLING_ACTION_UNSPECIFIED, convert.ACTION_FROM_PB
    )


def _assertion_length(check: errors.Validator, identity_assertion: str) -> None:
    check.require(
        len(identity_assertion) <= _MAX_ASSERTION,
        "identity_assertion",
        f"at most {_MAX_ASSERTION} chars",
    )


def _by_state(workspace_id: str, state: int, unspecified: int, known: Container[int]) -> None:
    """A list request of one workspace, filtered by a state or not."""
    check = _of_workspace(workspace_id)
    check.require(_known_or_unspecified(state, unspecified, known), "state", "unknown value")
    check.check()


def workspace(workspace_id: str) -> None:
    """A request that names nothing but its workspace."""
    _of_workspace(workspace_id).check()


# -- decisions and grants ------------------------------------------------------------------


def authorize(request: pb.AuthorizeRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.require(request.action in convert.ACTION_FROM_PB, "action", "a billing action")
    _assertion_length(check, request.identity_assertion)
    quote = request.confirmation.quote
    check.require(len(quote.quote_id) <= _MAX_ID, "confirmation.quote.quote_id", "too long")
    check.require(
        len(quote.summary) <= _MAX_QUOTE_SUMMARY, "confirmation.quote.summary", "too long"
    )
    check.require(len(quote.terms_hash) <= 128, "confirmation.quote.terms_hash", "too long")
    _once(check, request.idempotency_key)


def redeem(request: pb.RedeemRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.non_empty(request.grant_id, "grant_id", max_length=_MAX_ID)
    check.require(request.action in convert.ACTION_FROM_PB, "action", "a billing action")
    _once(check, request.idempotency_key)


def commit(request: pb.CommitRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.non_empty(request.grant_id, "grant_id", max_length=_MAX_ID)
    check.require(len(request.stripe_object_id) <= 255, "stripe_object_id", "too long")
    _once(check, request.idempotency_key)


def release(request: pb.ReleaseRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.non_empty(request.grant_id, "grant_id", max_length=_MAX_ID)
    check.require(len(request.reason) <= 1024, "reason", "at most 1024 characters")
    _once(check, request.idempotency_key)


# -- escalations ---------------------------------------------------------------------------


def open_escalation(request: pb.OpenEscalationRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.non_empty(request.reason, "reason", max_length=64)
    check.require(
        _action_or_unspecified(request.action), "action", "a billing action or unspecified"
    )
    _assertion_length(check, request.identity_assertion)
    _once(check, request.idempotency_key)


def _one_escalation(workspace_id: str, escalation_id: str) -> errors.Validator:
    check = _of_workspace(workspace_id)
    check.non_empty(escalation_id, "escalation_id", max_length=_MAX_ID)
    return check


def get_escalation(request: pb.GetEscalationRequest) -> None:
    _one_escalation(request.workspace_id, request.escalation_id).check()


def list_escalations(request: pb.ListEscalationsRequest) -> None:
    _by_state(
        request.workspace_id,
        request.state,
        pb.ESCALATION_STATE_UNSPECIFIED,
        convert.ESCALATION_STATE_FROM_PB,
    )


def approve_escalation(request: pb.ApproveEscalationRequest) -> None:
    check = _one_escalation(request.workspace_id, request.escalation_id)
    _once(check, request.idempotency_key)


def reject_escalation(request: pb.RejectEscalationRequest) -> None:
    check = _one_escalation(request.workspace_id, request.escalation_id)
    check.require(len(request.note) <= 2048, "note", "at most 2048 characters")
    _once(check, request.idempotency_key)


def record_escalation_outcome(request: pb.RecordEscalationOutcomeRequest) -> None:
    check = _one_escalation(request.workspace_id, request.escalation_id)
    problem = escalations.outcome_problem(request)
    check.require(not problem, "state", problem)
    check.require(len(request.stripe_object_id) <= 255, "stripe_object_id", "too long")
    check.require(len(request.failure_reason) <= 1024, "failure_reason", "too long")
    _once(check, request.idempotency_key)


# -- bounds --------------------------------------------------------------------------------


def propose_bounds_change(request: pb.ProposeBoundsChangeRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.require(request.HasField("bounds"), "bounds", "is required")
    check.require(
        request.bounds.workspace_id in ("", request.workspace_id),
        "bounds.workspace_id",
        "empty or the request's workspace",
    )
    check.require(
        request.bounds.askvault_plan in convert.PLAN_FROM_PB,
        "bounds.askvault_plan",
        "unknown value",
    )
    check.require(
        _known_or_unspecified(
            request.bounds.counter_period, pb.COUNTER_PERIOD_UNSPECIFIED, convert.PERIOD_FROM_PB
        ),
        "bounds.counter_period",
        "unknown value",
    )
    _once(check, request.idempotency_key)


def approve_bounds_change(request: pb.ApproveBoundsChangeRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.non_empty(request.change_id, "change_id", max_length=_MAX_ID)
    _once(check, request.idempotency_key)


def list_bounds_changes(request: pb.ListBoundsChangesRequest) -> None:
    _by_state(
        request.workspace_id,
        request.state,
        pb.BOUNDS_CHANGE_STATE_UNSPECIFIED,
        convert.CHANGE_STATE_FROM_PB,
    )


# -- audit ---------------------------------------------------------------------------------


def list_audit_events(request: pb.ListAuditEventsRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.require(_action_or_unspecified(request.action), "action", "unknown value")
    check.require(len(request.stripe_customer_id) <= 255, "stripe_customer_id", "too long")
    check.require(len(request.actor_id) <= 255, "actor_id", "too long")
    check.require(
        request.page_token == "" or request.page_token.isdigit(),
        "page_token",
        "is not a page token",
    )
    check.check()


def verify_audit_checkpoint(request: pb.VerifyAuditCheckpointRequest) -> None:
    check = _of_workspace(request.workspace_id)
    check.require(bool(request.checkpoint), "checkpoint", "is required")
    check.check()
