"""Policy's own metrics (OpenTelemetry, served to Prometheus by runtime/telemetry.py), beside
the per-RPC ones every service has:

- ``askvault_policy_audit_chain_failures_total{check}``: the audit chain found broken or
  forged: by the chainer (``chainer``: a recorded entry whose seal does not verify, counted
  at every pass that finds it still waiting, so the alert holds while it is there), by
  VerifyAuditChain (``verify_chain``) or by VerifyAuditCheckpoint (``verify_checkpoint``);
- ``askvault_policy_escalations_opened_total{action}`` and
  ``askvault_policy_escalations_decided_total{decision}``: hand-offs to a human, and admins'
  approvals and rejections (counted once per call that committed, never for a replay).
"""

from __future__ import annotations

from opentelemetry import metrics

# The checks that find the chain broken (the ``check`` attribute).
CHAINER = "chainer"
VERIFY_CHAIN = "verify_chain"
VERIFY_CHECKPOINT = "verify_checkpoint"

_meter = metrics.get_meter("askvault.policy")
_chain_failures = _meter.create_counter(
    "askvault.policy.audit.chain_failures",
    description="Times the audit chain was found broken or an entry forged, by check",
)
_escalations_opened = _meter.create_counter(
    "askvault.policy.escalations.opened",
    description="Escalations opened (hand-offs to a human), by the escalated action",
)
_escalations_decided = _meter.create_counter(
    "askvault.policy.escalations.decided",
    description="Escalations decided by an admin, by decision",
)


def count_chain_failure(check: str, count: int = 1) -> None:
    """A check found the chain broken (``count`` forged entries for the chainer)."""
    if count:
        _chain_failures.add(count, {"check": check})


def count_escalation_opened(action: str) -> None:
    """An escalation was opened ("" action: a plain hand-off)."""
    _escalations_opened.add(1, {"action": action or "none"})


def count_escalation_decided(decision: str) -> None:
    """An admin approved or rejected an escalation."""
    _escalations_decided.add(1, {"decision": decision})
