"""Takes back into the ledger a refund or plan change Stripe shows done and the ledger lacks
(domain/adoption.py says when that happens: a restore from a backup older than the write)."""

from __future__ import annotations

import logging

from billing_gateway import confirmation_outbox, gateway_metrics, mirror_store, operation_store
from billing_gateway.domain.adoption import Performed
from runtime.database import Connection

logger = logging.getLogger(__name__)


async def adopt(connection: Connection, workspace_id: str, performed: Performed) -> bool:
    """Records the write as a succeeded operation unless the ledger has it; whether it was
    missing. Its grant is committed by reconciliation's pass over unresolved grants. A row
    reconciliation settled as not performed (the object's metadata named a later write by
    then) is corrected: the event is Stripe's word that this write happened; the grant it
    released then is committed by the same pass (late, at policy: counted again)."""
    if await operation_store.operation_exists(connection, workspace_id, performed.operation_id):
        if await operation_store.correct_not_performed(
            connection, workspace_id, performed.operation_id, performed.stripe_object_id
        ):
            # Succeeded after all: the confirmation it owes is queued in this transaction.
            await confirmation_outbox.record_due(connection, workspace_id, performed.operation_id)
            gateway_metrics.count_differences(gateway_metrics.OPERATION_SUCCEEDED)
            logger.warning(
                "an operation settled as not performed is shown done by a Stripe event",
                extra={"workspace_id": workspace_id, "operation_id": performed.operation_id},
            )
        return False
    customer_id = performed.stripe_customer_id
    if not customer_id and performed.action == "refund":
        customer_id = await mirror_store.mirrored_charge_customer(
            connection, workspace_id, performed.target_id
        )
    # The original key when Stripe carries it, so that the caller's retry finds this row
    # instead of making the write again; another key when a new write took it meanwhile.
    keys = [performed.idempotency_key] if performed.idempotency_key else []
    keys.append(f"adopted:{performed.operation_id}")
    for key in keys:
        if await operation_store.adopt_operation(
            connection,
            workspace_id=workspace_id,
            operation_id=performed.operation_id,
            idempotency_key=key,
            action=performed.action,
            grant_id=performed.grant_id,
            stripe_customer_id=customer_id,
            target_id=performed.target_id,
            parameters=performed.parameters,
            stripe_object_id=performed.stripe_object_id,
        ):
            gateway_metrics.count_differences(gateway_metrics.OPERATION_ADOPTED)
            logger.warning(
                "ledger took back an operation Stripe shows done",
                extra={
                    "workspace_id": workspace_id,
                    "operation_id": performed.operation_id,
                    "action": performed.action,
                },
            )
            return True
    return False
