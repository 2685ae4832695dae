"""The reconciliation of every flow from independent sources: plan changes and cancellations
against Stripe's own subscriptions and event history (never the metadata the write put
there), the messages each ledger outcome should have produced against the outbox, the SMTP
sink and the WhatsApp emulator, and the dead letters against what the sink refused."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from chaos import compare
from chaos.load import Load
from chaos.stack import ChaosStack
from chaos.whatsapp import WhatsAppLoad

# The notifier's Message-ID header: <message id@domain>.
_MESSAGE_ID = re.compile(r"<([^@>]+)@")
# Inbox outcomes of an event whose message the notifier refused for good (no message due).
_REFUSED = ("notifier_refused", "no recipient")
# The WhatsApp statuses, furthest last.
_STATUS_ORDER = ("sent", "delivered", "read")


@dataclass(frozen=True)
class Sources:
    """What each independent source holds at the end of the run."""

    operations: list[compare.Operation]
    outbox: list[compare.OutboxMessage]
    # Message id -> how many times the SMTP sink took it; the ids it refused -> the code.
    at_sink: Counter[str]
    refused: dict[str, int]
    # WhatsApp message id -> how many times the emulator took it; -> its furthest status
    # whose webhook the edge answered 2xx.
    at_whatsapp: Counter[str]
    reported: dict[str, str]
    # Recovery cases that say their message was sent: invoice ids.
    recovery_messaged: list[str]
    inbox: dict[str, str]


def sink_id(header: str) -> str:
    """The notifier's message id in a Message-ID header."""
    match = _MESSAGE_ID.search(header)
    return match.group(1) if match else header


async def gather(
    stack: ChaosStack, http: aiohttp.ClientSession, operations: list[dict[str, Any]]
) -> Sources:
    """Reads the ledgers, the outbox and the providers."""
    # The status webhooks first: the emulator retries those the edge did not take, and one
    # taken after the outbox was read would be a status the outbox seems to miss. Read first,
    # every status the edge took is in the outbox read after it.
    async with http.get(f"{stack.url('whatsapp_emulator')}/_emulator/webhooks") as response:
        webhooks = (await response.json())["webhooks"]
    connection = await asyncpg.connect(stack.database_url)
    try:
        rows = await connection.fetch(
            "SELECT message_id, dedup_key, channel, status, provider_message_id"
            " FROM notifier.messages WHERE workspace_id = $1",
            stack.workspace_id,
        )
        cases = await connection.fetch(
            "SELECT DISTINCT c.invoice_id FROM billing_gateway.recovery_cases c"
            " JOIN billing_gateway.recovery_events e USING (workspace_id, case_id)"
            " WHERE c.workspace_id = $1 AND e.kind = 'message_sent'",
            stack.workspace_id,
        )
        inbox = {
            str(row["event_id"]): str(row["outcome"])
            for row in await connection.fetch(
                "SELECT event_id, outcome FROM billing_gateway.stripe_events"
                " WHERE workspace_id = $1",
                stack.workspace_id,
            )
        }
    finally:
        await connection.close()
    async with http.get(f"{stack.url('smtp_sink_http')}/messages") as response:
        received = (await response.json())["messages"]
    async with http.get(f"{stack.url('smtp_sink_http')}/refused") as response:
        refused = (await response.json())["refused"]
    async with http.get(f"{stack.url('whatsapp_emulator')}/_emulator/messages") as response:
        whatsapp = (await response.json())["messages"]
    return Sources(
        operations=[ledger_operation(o) for o in operations],
        outbox=[
            compare.OutboxMessage(
                str(r["message_id"]),
                str(r["dedup_key"]),
                str(r["channel"]),
                str(r["status"]),
                str(r["provider_message_id"]),
            )
            for r in rows
        ],
        at_sink=Counter(sink_id(str(m.get("message_id", ""))) for m in received),
        refused={sink_id(str(m["message_id"])): int(m["code"]) for m in refused},
        at_whatsapp=Counter(str(m["wamid"]) for m in whatsapp),
        reported=reported_statuses(webhooks),
        recovery_messaged=[str(row["invoice_id"]) for row in cases],
        inbox=inbox,
    )


def ledger_operation(row: dict[str, Any]) -> compare.Operation:
    """A row of billing_gateway.operations (parameters decoded) as the comparisons take it."""
    parameters = row["parameters"]
    created = row.get("created_at")
    return compare.Operation(
        operation_id=str(row["operation_id"]),
        action=str(row["action"]),
        state=str(row["state"]),
        target_id=str(row["target_id"]),
        stripe_object_id=str(row["stripe_object_id"] or ""),
        price=str(parameters.get("price", "")),
        created_at=created.timestamp() if created is not None else 0.0,
        scheduled=row.get("run_at") is not None,
    )


def reported_statuses(webhooks: list[dict[str, Any]]) -> dict[str, str]:
    """The furthest status per WhatsApp message among the status webhooks the edge took."""
    furthest: dict[str, str] = {}
    for posted in webhooks:
        if not 200 <= int(posted.get("status") or 0) < 300:
            continue
        for entry in posted["body"].get("entry", []):
            for change in entry.get("changes", []):
                for status in change.get("value", {}).get("statuses", []):
                    wamid, name = str(status.get("id", "")), str(status.get("status", ""))
                    if name not in _STATUS_ORDER:
                        continue
                    before = furthest.get(wamid)
                    if before is None or _STATUS_ORDER.index(name) > _STATUS_ORDER.index(before):
                        furthest[wamid] = name
    return furthest


def subscription_snapshots(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(subscription, price) of every subscription event, oldest first."""
    snapshots: list[tuple[str, str]] = []
    for event in events:
        if not str(event.get("type", "")).startswith("customer.subscription."):
            continue
        obj = event["data"]["object"]
        snapshots.append((str(obj["id"]), str(compare.mirror_value(obj, "price") or "")))
    return snapshots


def expected_messages(
    sources: Sources, events: list[dict[str, Any]], whatsapp: WhatsAppLoad
) -> list[compare.Expected]:
    """The messages the ledgers' outcomes should have produced, by dedup key."""
    expected: list[compare.Expected] = []
    refunded = {
        o.target_id for o in sources.operations if o.action == "refund" and o.state == "succeeded"
    }
    for event in events:
        charge = event["data"]["object"]
        outcome = sources.inbox.get(str(event["id"]), "")
        if (
            event.get("type") == "charge.refunded"
            and str(charge.get("id")) in refunded
            and not any(refusal in outcome for refusal in _REFUSED)
        ):
            expected.append(
                compare.Expected(
                    f"refund-{event['id']}-", f"the refund of {charge['id']} ({event['id']})"
                )
            )
    for operation in sources.operations:
        if operation.action == "change_plan" and operation.state == "succeeded":
            expected.append(
                compare.Expected(
                    f"template_plan_change_confirmation-{operation.operation_id}-",
                    f"plan change {operation.operation_id}",
                )
            )
        if operation.action == "cancel_subscription" and operation.scheduled:
            expected.append(
                compare.Expected(
                    f"template_cancellation_scheduled-{operation.operation_id}-",
                    f"cancellation {operation.operation_id} scheduled",
                )
            )
        if operation.action == "cancel_subscription" and operation.state == "voided":
            expected.append(
                compare.Expected(
                    f"template_cancellation_undone-{operation.operation_id}-",
                    f"cancellation {operation.operation_id} undone",
                )
            )
    for invoice_id in sources.recovery_messaged:
        expected.append(
            compare.Expected(f"payment-failed-{invoice_id}-", f"the failed payment of {invoice_id}")
        )
    for inbound in whatsapp.inbound:
        if inbound.accepted and (inbound.kind == "link" or inbound.number in whatsapp.linked):
            key = "wa-link" if inbound.kind == "link" else "wa-reply"
            expected.append(
                compare.Expected(
                    f"edge:{key}:{inbound.wamid}", f"WhatsApp {inbound.kind} {inbound.wamid}"
                )
            )
    return expected


# Differences this harness found in the services and that are not fixed yet: reported in
# the figures, not failing the run (each one is a finding to fix, not an accepted outcome).
KNOWN_FINDINGS: tuple[re.Pattern[str], ...] = (
    # None today. Fixed and differences again: two messages for one failed invoice (the
    # gateway decides once per invoice whom its failure is told: payment_failed_notices),
    # and a confirmation missing for a plan change or cancellation the ledger has as done
    # (recorded in the transaction of the outcome it confirms: confirmation_outbox.py).
)


def known_finding(difference: str) -> bool:
    """Whether a difference is one of KNOWN_FINDINGS."""
    return any(pattern.search(difference) for pattern in KNOWN_FINDINGS)


def _kind(dedup_prefix: str) -> str:
    """What kind of message a dedup key is for ("refund", "wa-reply", ...)."""
    if dedup_prefix.startswith("edge:"):
        return dedup_prefix.split(":")[1]
    return dedup_prefix.split("-")[0].removeprefix("template_")


async def flows(
    differ: Callable[[str], None],
    figures: dict[str, Any],
    stack: ChaosStack,
    http: aiohttp.ClientSession,
    load: Load,
    whatsapp: WhatsAppLoad,
    operations: list[dict[str, Any]],
    events: list[dict[str, Any]],
) -> None:
    """Every comparison of the flows; each difference goes to ``findings_differ``."""
    sources = await gather(stack, http, operations)
    v1 = load.stripe_client.v1
    subscriptions: dict[str, compare.Subscription] = {}
    for customer in load.customers:
        sub = (await v1.subscriptions.retrieve_async(customer.subscription_id)).to_dict()
        subscriptions[customer.subscription_id] = compare.Subscription(
            str(sub["id"]), str(sub["status"]), str(compare.mirror_value(sub, "price") or "")
        )
    moves = compare.price_moves(subscription_snapshots(events))
    first = {subscription_id: load.growth_price for subscription_id in subscriptions}
    expected = expected_messages(sources, events, whatsapp)
    differences = [
        *compare.plan_changes(sources.operations, subscriptions, moves, first),
        *compare.cancellations(sources.operations, subscriptions, load.told_undo),
        *compare.messages(expected, sources.outbox, sources.at_sink, sources.at_whatsapp),
        *compare.dead_letters(sources.outbox, sources.refused, sources.at_sink),
        *compare.whatsapp_statuses(sources.outbox, sources.reported),
    ]
    known: list[str] = []
    for difference in differences:
        if known_finding(difference):
            known.append(difference)
        else:
            differ(difference)
    figures["KNOWN, not failing the run (see KNOWN_FINDINGS)"] = known or 0
    figures["chaos subscriptions by Stripe status"] = dict(
        Counter(s.status for s in subscriptions.values())
    )
    figures["price moves in Stripe's history (chaos subscriptions)"] = sum(
        n for (sub, _), n in moves.items() if sub in subscriptions
    )
    figures["cancellations (ledger)"] = dict(
        Counter(o.state for o in sources.operations if o.action == "cancel_subscription")
    )
    figures["undo answers"] = dict(Counter(load.told_undo.values())) or 0
    figures["messages expected from ledger outcomes"] = dict(
        Counter(_kind(e.dedup_prefix) for e in expected)
    )
    figures["SMTP sink refused (dead letters expected)"] = len(sources.refused)
    figures["WhatsApp inbound (accepted / linked numbers)"] = (
        f"{sum(i.accepted for i in whatsapp.inbound)} of {len(whatsapp.inbound)} / "
        f"{len(whatsapp.linked)}"
    )
    figures["WhatsApp emulator (messages / statuses taken by the edge)"] = (
        f"{sum(sources.at_whatsapp.values())} / {len(sources.reported)}"
    )
