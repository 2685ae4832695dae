"""After the faults: wait until the system settled, then compare every ledger with the others
and with what the outside world (Stripe, the SMTP sink) received."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg

from chaos import compare, reconcile_flows
from chaos.load import HANG_MARGIN_SECONDS, TURN_DEADLINE_SECONDS, Load
from chaos.stack import WEBHOOK_DEADLINE_SECONDS, ChaosStack
from chaos.webhooks import Replayer
from chaos.whatsapp import WhatsAppLoad

# Slack for the expiry worker (it sweeps every 0.5 s in the stack) before a reserved grant
# past its expiry counts as a difference.
EXPIRY_SLACK_SECONDS = 5.0


@dataclass
class Findings:
    """Figures (reported) and differences (each one fails the run)."""

    figures: dict[str, Any] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def differ(self, text: str) -> None:
        self.differences.append(text)


UNSETTLED = {
    "webhook events not processed": (
        "SELECT count(*) FROM billing_gateway.stripe_events WHERE processed_at IS NULL"
    ),
    "operations in flight or with the grant unresolved": (
        "SELECT count(*) FROM billing_gateway.operations WHERE state = 'in_flight'"
        " OR (state IN ('succeeded', 'failed', 'voided') AND grant_resolution = '')"
    ),
    "outbox messages queued": "SELECT count(*) FROM notifier.messages WHERE status = 'queued'",
    "cancellations due but not run": (
        "SELECT count(*) FROM billing_gateway.operations"
        " WHERE state = 'scheduled' AND run_at < now()"
    ),
    "confirmations not handed to the notifier": (
        "SELECT count(*) FROM billing_gateway.pending_confirmations"
    ),
    "mirror backfill pages not copied": (
        "SELECT count(*) FROM billing_gateway.mirror_backfills WHERE NOT done"
    ),
}


async def unsettled(database_url: str) -> dict[str, int]:
    """What is still moving; empty when everything settled."""
    connection = await asyncpg.connect(database_url)
    try:
        counts = {name: int(await connection.fetchval(sql)) for name, sql in UNSETTLED.items()}
    finally:
        await connection.close()
    return {name: count for name, count in counts.items() if count}


async def settle(stack: ChaosStack, limit_seconds: float) -> dict[str, int]:
    """Polls until nothing is moving (or the limit passes); what is left."""
    deadline = time.monotonic() + limit_seconds
    left: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            left = await unsettled(stack.database_url)
        except (OSError, asyncpg.PostgresError) as error:
            left = {f"database: {type(error).__name__}": 1}
        if not left:
            return {}
        await asyncio.sleep(0.5)
    return left


async def settle_replaying(
    stack: ChaosStack, replayer: Replayer, limit_seconds: float
) -> dict[str, int]:
    """Gives every event its third delivery and lets the services settle; then once more,
    for the events Stripe made while they settled (a cancellation ending at its grace).
    What is left."""
    await replayer.finish(30.0)
    await settle(stack, limit_seconds)
    await replayer.finish(30.0)
    return await settle(stack, 30.0)


async def all_of(list_page: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object of a Stripe list, page by page."""
    found: list[dict[str, Any]] = []
    starting_after = ""
    while True:
        page = await list_page(
            {
                **params,
                "limit": 100,
                **({"starting_after": starting_after} if starting_after else {}),
            }
        )
        found += [item.to_dict() for item in page.data]
        if not page.has_more or not page.data:
            return found
        starting_after = page.data[-1].id


@dataclass
class Records:
    """What the services' schemas hold for one workspace, read at one moment."""

    grants: list[dict[str, Any]]
    operations: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    inbox: dict[str, str]
    mirrored: list[dict[str, Any]]
    enabled: list[str]


async def read_records(database_url: str, workspace: str) -> Records:
    """The grants, operations, outbox, inbox and mirror of a workspace."""
    connection = await asyncpg.connect(database_url)
    try:
        grants = [
            dict(row)
            for row in await connection.fetch(
                "SELECT grant_id, action, state, amount_minor, currency, target_price_id,"
                " subscription_id, charge_id, stripe_object_id,"
                " extract(epoch FROM now() - expires_at) AS past_expiry"
                " FROM policy.grants WHERE workspace_id = $1",
                workspace,
            )
        ]
        operations = [
            dict(row)
            for row in await connection.fetch(
                "SELECT operation_id, action, state, grant_id, stripe_object_id, parameters,"
                " grant_resolution, target_id, stripe_customer_id, created_at, run_at"
                " FROM billing_gateway.operations"
                " WHERE workspace_id = $1",
                workspace,
            )
        ]
        messages = [
            dict(row)
            for row in await connection.fetch(
                "SELECT message_id, channel, status, template, attempts, dedup_key"
                " FROM notifier.messages WHERE workspace_id = $1",
                workspace,
            )
        ]
        inbox = {
            str(row["event_id"]): str(row["outcome"])
            for row in await connection.fetch(
                "SELECT event_id, outcome FROM billing_gateway.stripe_events"
                " WHERE workspace_id = $1",
                workspace,
            )
        }
        mirrored = [
            dict(row)
            for row in await connection.fetch(
                "SELECT object_type, object_id, data, deleted FROM billing_gateway.stripe_objects"
                " WHERE workspace_id = $1",
                workspace,
            )
        ]
        enabled = await connection.fetchval(
            "SELECT enabled_events FROM billing_gateway.accounts WHERE workspace_id = $1",
            workspace,
        )
    finally:
        await connection.close()
    for operation in operations:
        parameters = operation["parameters"]
        operation["parameters"] = (
            json.loads(parameters) if isinstance(parameters, str) else parameters
        )
    return Records(grants, operations, messages, inbox, mirrored, list(enabled or []))


async def reconcile(
    stack: ChaosStack,
    load: Load,
    replayer: Replayer,
    whatsapp: WhatsAppLoad,
    http: aiohttp.ClientSession,
    started_at: int,
) -> Findings:
    """Every comparison of the issue; each mismatch is a difference."""
    findings = Findings()
    records = await read_records(stack.database_url, stack.workspace_id)
    grants, operations, messages = records.grants, records.operations, records.messages
    inbox, mirrored = records.inbox, records.mirrored

    check_ledgers(findings, grants, operations)
    await check_stripe(findings, load, operations, started_at)
    await check_outbox(findings, stack, http, messages)
    check_expiry(findings, grants)
    events = await replayer.every_event()
    _webhooks(findings, replayer, inbox, events)
    _hangs(findings, load, replayer)
    _told(findings, load, operations)
    await check_mirror(findings, load, mirrored)
    await reconcile_flows.flows(
        findings.differ,
        findings.figures,
        stack,
        http,
        load,
        whatsapp,
        [dict(o) for o in operations],
        events,
    )
    return findings


async def check_mirror(findings: Findings, load: Load, mirrored: list[dict[str, Any]]) -> None:
    """The billing gateway's mirror of Stripe agrees with Stripe on every object reads show
    (after every webhook, three times out of order, and the backfill)."""
    v1 = load.stripe_client.v1
    held: dict[tuple[str, str], dict[str, Any]] = {}
    for row in mirrored:
        data = row["data"]
        held[(str(row["object_type"]), str(row["object_id"]))] = {
            **(json.loads(data) if isinstance(data, str) else dict(data)),
            "deleted": bool(row["deleted"]),
        }
    listed = {
        object_type: await all_of(getattr(v1, list_name).list_async, params)
        for object_type, (list_name, _, params) in compare.MIRROR_FIELDS.items()
    }
    differences, compared = compare.mirror(held, listed)
    for difference in differences:
        findings.differ(difference)
    findings.figures["mirror objects compared with Stripe"] = compared


def _told(findings: Findings, load: Load, operations: list[dict[str, Any]]) -> None:
    """Reported, not a difference: confirmations whose answer did not say what the ledger
    shows happened (the answer was lost to a kill or a timeout while the action completed,
    or it completed later through the gateway's reconciliation)."""
    done = Counter(
        (o["stripe_customer_id"], o["action"]) for o in operations if o["state"] == "succeeded"
    )
    by_user = {c.user_id: c.customer_id for c in load.customers}
    said: Counter[tuple[str, str]] = Counter()
    for turn in load.turns:
        if turn.user in by_user and turn.outcome in ("refunded", "plan changed"):
            action = "refund" if turn.outcome == "refunded" else "change_plan"
            said[(by_user[turn.user], action)] += 1
    unsaid = {
        action: sum(
            max(n - said[(customer, a)], 0) for (customer, a), n in done.items() if a == action
        )
        for action in ("refund", "change_plan")
    }
    findings.figures["done but the visitor was not told so"] = unsaid


def check_ledgers(
    findings: Findings, grants: list[dict[str, Any]], operations: list[dict[str, Any]]
) -> None:
    """Policy's committed grants = the gateway's succeeded operations, one to one."""
    by_grant = {operation["grant_id"]: operation for operation in operations}
    for kind in ("refund", "change_plan"):
        committed = [g for g in grants if g["action"] == kind and g["state"] == "committed"]
        succeeded = [o for o in operations if o["action"] == kind and o["state"] == "succeeded"]
        findings.figures[f"policy committed {kind}"] = (
            f"{len(committed)} grants, {sum(g['amount_minor'] for g in committed)} minor units"
        )
        findings.figures[f"gateway succeeded {kind}"] = (
            f"{len(succeeded)} operations, "
            f"{sum(int(o['parameters'].get('amount', 0)) for o in succeeded)} minor units"
        )
        for grant in committed:
            operation = by_grant.get(grant["grant_id"])
            if operation is None or operation["state"] != "succeeded":
                findings.differ(
                    f"policy committed {kind} grant {grant['grant_id']} but the gateway has "
                    f"{'no operation' if operation is None else operation['state']} for it"
                )
                continue
            if kind == "refund" and int(operation["parameters"]["amount"]) != grant["amount_minor"]:
                findings.differ(
                    f"grant {grant['grant_id']} committed {grant['amount_minor']} but operation "
                    f"{operation['operation_id']} refunded {operation['parameters']['amount']}"
                )
            if (
                kind == "change_plan"
                and operation["parameters"].get("price") != (grant["target_price_id"])
            ):
                findings.differ(
                    f"grant {grant['grant_id']} allowed {grant['target_price_id']} but operation "
                    f"{operation['operation_id']} changed to {operation['parameters'].get('price')}"
                )
        states = {g["grant_id"]: g["state"] for g in grants}
        for operation in succeeded:
            state = states.get(operation["grant_id"], "missing")
            if state != "committed":
                findings.differ(
                    f"gateway {kind} operation {operation['operation_id']} succeeded but its "
                    f"grant {operation['grant_id']} is {state} at policy"
                )
    findings.figures["grants by state"] = dict(Counter(g["state"] for g in grants))
    findings.figures["operations by state"] = dict(
        Counter(f"{o['action']} {o['state']}" for o in operations)
    )


async def check_stripe(
    findings: Findings, load: Load, operations: list[dict[str, Any]], started_at: int
) -> None:
    """Stripe's refunds = the gateway's succeeded refund operations (plan changes and
    cancellations: reconcile_flows)."""
    v1 = load.stripe_client.v1
    refunds = [
        r for r in await all_of(v1.refunds.list_async, {}) if int(r["created"]) >= started_at - 5
    ]
    succeeded = {
        o["operation_id"]: o
        for o in operations
        if o["action"] == "refund" and o["state"] == "succeeded"
    }
    findings.figures["Stripe refunds"] = (
        f"{len(refunds)} refunds, {sum(int(r['amount']) for r in refunds)} minor units"
    )
    per_operation = Counter(
        str((r.get("metadata") or {}).get("askvault_operation_id", "")) for r in refunds
    )
    for refund in refunds:
        operation_id = str((refund.get("metadata") or {}).get("askvault_operation_id", ""))
        operation = succeeded.get(operation_id)
        if operation is None:
            findings.differ(
                f"Stripe refund {refund['id']} ({refund['amount']}) has no succeeded refund "
                f"operation (metadata operation {operation_id or 'none'})"
            )
        elif operation["stripe_object_id"] != refund["id"] or int(
            operation["parameters"]["amount"]
        ) != int(refund["amount"]):
            findings.differ(
                f"Stripe refund {refund['id']} ({refund['amount']}) differs from operation "
                f"{operation_id} ({operation['stripe_object_id']}, "
                f"{operation['parameters']['amount']})"
            )
    for operation_id, count in per_operation.items():
        if operation_id and count > 1:
            findings.differ(f"operation {operation_id} refunded {count} times in Stripe")
    refunded = {str(r["id"]) for r in refunds}
    for operation in succeeded.values():
        if operation["stripe_object_id"] not in refunded:
            findings.differ(
                f"refund operation {operation['operation_id']} succeeded but Stripe has no "
                f"refund {operation['stripe_object_id']}"
            )


_MESSAGE_ID = re.compile(r"<([^@>]+)@")


async def sink_counts(stack: ChaosStack, http: aiohttp.ClientSession) -> Counter[str]:
    """How many times the SMTP sink received each outbox message id."""
    async with http.get(f"{stack.url('smtp_sink_http')}/messages") as response:
        received: list[dict[str, Any]] = (await response.json())["messages"]
    at_sink: Counter[str] = Counter()
    for mail in received:
        match = _MESSAGE_ID.search(str(mail.get("message_id", "")))
        at_sink[match.group(1) if match else str(mail.get("message_id", ""))] += 1
    return at_sink


async def check_outbox(
    findings: Findings,
    stack: ChaosStack,
    http: aiohttp.ClientSession,
    messages: list[dict[str, Any]],
) -> None:
    """Every email of the outbox at the SMTP sink once per message id."""
    at_sink = await sink_counts(stack, http)
    received = sum(at_sink.values())
    emails = [m for m in messages if m["channel"] == "email"]
    findings.figures["outbox messages"] = dict(
        Counter(f"{m['channel']} {m['status']}" for m in messages)
    )
    findings.figures["SMTP sink"] = f"{received} received, {len(at_sink)} distinct message ids"
    duplicates = {message_id: n for message_id, n in at_sink.items() if n > 1}
    findings.figures["SMTP duplicates (same message id twice)"] = duplicates or 0
    known = {str(m["message_id"]) for m in emails}
    for message in emails:
        count = at_sink.get(str(message["message_id"]), 0)
        if message["status"] == "dead":
            continue  # a dead letter: compared with what the sink refused (compare.py)
        if count == 0:
            findings.differ(
                f"outbox email {message['message_id']} ({message['template']}, "
                f"{message['status']} after {message['attempts']} attempts) never reached the "
                "SMTP sink"
            )
        elif message["status"] not in ("sent", "delivered", "read"):
            findings.differ(
                f"outbox email {message['message_id']} reached the sink but is "
                f"{message['status']} in the outbox"
            )
    for message_id in at_sink:
        if message_id not in known:
            findings.differ(f"the SMTP sink received {message_id}, which is in no outbox")


def check_expiry(findings: Findings, grants: list[dict[str, Any]]) -> None:
    stale = [
        g
        for g in grants
        if g["state"] == "reserved" and float(g["past_expiry"]) > EXPIRY_SLACK_SECONDS
    ]
    for grant in stale:
        findings.differ(
            f"grant {grant['grant_id']} ({grant['action']}) still reserved "
            f"{float(grant['past_expiry']):.0f} s after its expiry"
        )


def _webhooks(
    findings: Findings, replayer: Replayer, inbox: dict[str, str], events: list[dict[str, Any]]
) -> None:
    """Every event was taken into the gateway's inbox (once: it is keyed by event id), and
    the replayer's polling saw every event Stripe lists (walked to the end), no page lost."""
    for gap in replayer.gaps:
        findings.differ(f"the replayer's paging of Stripe's events: {gap}")
    for event in events:
        if event["id"] not in replayer.seen:
            findings.differ(f"the replayer's polling never saw Stripe event {event['id']}")
    findings.figures["events in Stripe / replayed a third time / in the inbox"] = (
        f"{len(replayer.seen)} / {len(replayer.delivered)} / {len(inbox)}"
    )
    outcomes = Counter(outcome.split(":")[0] for outcome in inbox.values() if outcome)
    findings.figures["inbox events with an outcome note"] = dict(outcomes) or 0
    for event_id in sorted(replayer.seen - set(inbox)):
        findings.differ(f"Stripe event {event_id} never reached the gateway's inbox")
    for event_id in sorted(replayer.pending):
        findings.differ(f"the edge never accepted the third delivery of event {event_id}")


def _hangs(findings: Findings, load: Load, replayer: Replayer) -> None:
    """No request took longer than its deadline plus a margin."""
    limit = TURN_DEADLINE_SECONDS + HANG_MARGIN_SECONDS
    durations = sorted(turn.seconds for turn in load.turns)
    if durations:
        findings.figures["chat turns"] = (
            f"{len(durations)}, p50 {durations[len(durations) // 2]:.3f} s, "
            f"p99 {durations[int(len(durations) * 0.99)]:.3f} s, max {durations[-1]:.3f} s"
        )
    findings.figures["chat outcomes"] = dict(Counter(turn.outcome for turn in load.turns))
    for turn in load.turns:
        if turn.seconds > limit:
            findings.differ(
                f"chat turn {turn.step!r} of {turn.user} took {turn.seconds:.1f} s "
                f"(deadline {TURN_DEADLINE_SECONDS:.1f} s + {HANG_MARGIN_SECONDS:.0f} s margin)"
            )
    webhook_limit = WEBHOOK_DEADLINE_SECONDS + HANG_MARGIN_SECONDS
    slow = [seconds for seconds, _ in replayer.posts if seconds > webhook_limit]
    findings.figures["webhook POSTs by the replayer"] = dict(
        Counter(str(status) for _, status in replayer.posts)
    )
    for seconds in slow:
        findings.differ(f"a webhook POST took {seconds:.1f} s (limit {webhook_limit:.1f} s)")
