"""Takes back into the ledger a refund or plan change Stripe shows done and the ledger lacks
(domain/adoption.py says when that happens: a restore from a backup older than the write)."""

from __future__ import annotations

import json
import logging

from billing_gateway import confirmation_outbox, gateway_metrics
from billing_gateway.domain.adoption import Performed
from billing_gateway.storage import queries
from runtime.database import Connection

logger = logging.getLogger(__name__)


async def adopt(connection: Connection, workspace_id: str, performed: Performed) -> bool:
    """Records the write as a succeeded operation unless the ledger has it; whether it was
    missing. Its grant is committed by reconciliation's pass over unresolved grants. A row
    reconciliation settled as not performed (the object's metadata named a later write by
    then) is corrected: the event is Stripe's word that this write happened; the grant it
    released then is committed by the same pass (late, at policy: counted again)."""
    if await connection.fetchval(queries.operation_exists, workspace_id, performed.operation_id):
        corrected = await connection.fetchval(
            queries.correct_not_performed,
            workspace_id,
            performed.operation_id,
            performed.stripe_object_id,
        )
        if corrected is not None:
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
        customer_id = (
            await connection.fetchval(
                queries.mirrored_charge_customer, workspace_id, performed.target_id
            )
            or ""
        )
    # The original key when Stripe carries it, so that the caller's retry finds this row
    # instead of making the write again; another key when a new write took it meanwhile.
    keys = [performed.idempotency_key] if performed.idempotency_key else []
    keys.append(f"adopted:{performed.operation_id}")
    for key in keys:
        inserted = await connection.fetchval(
            queries.adopt_operation,
            workspace_id,
            performed.operation_id,
            key,
            performed.action,
            performed.grant_id,
            customer_id,
            performed.target_id,
            json.dumps(performed.parameters),
            performed.stripe_object_id,
        )
        if inserted is not None:
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
