"""Policy's own metrics (OpenTelemetry, served to Prometheus by runtime/telemetry.py), beside
the per-RPC ones every service has:

- ``askvault_policy_audit_chain_failures_total{check}``: the audit chain found broken or
  forged: by the chainer (``chainer``: a recorded entry whose seal does not verify, counted
  at every pass that finds it still waiting, so the alert holds while it is there), by
  VerifyAuditChain (``verify_chain``) or by VerifyAuditCheckpoint (``verify_checkpoint``);
- ``askvault_policy_escalations_opened_total{action}`` and
  ``askvault_policy_escalations_decided_total{decision}``: hand-offs to a human, and admins'
  approvals and rejections (counted once per call that committed, never for a replay);
- ``askvault_policy_grants_committed_late_total{over_bound}``: released grants committed late
  (the enforcement point found their action performed after all), and whether that put a
  counter past its bound (``true``: money moved beyond the bounds; review it).
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

_late_commits = _meter.create_counter(
    "askvault.policy.grants.committed_late",
    description="Released grants committed late, by whether a counter went past its bound",
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


def count_late_commit(*, over_bound: bool) -> None:
    """A released grant was committed late (once per call that committed)."""
    _late_commits.add(1, {"over_bound": "true" if over_bound else "false"})
