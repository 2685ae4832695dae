"""Lost and duplicated, counted at the end from two sides each: the outbox against what the
SMTP sink and the WhatsApp emulator received, Stripe's events against the gateway's inbox,
Stripe's refunds against the operations that made them, the load's requests against their
answers. (chaos.reconcile then compares every ledger in full: its differences are the
"reconciliation clean" criterion.)"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import aiohttp
import asyncpg

from chaos.load import Load
from chaos.reconcile import all_of
from chaos.webhooks import Replayer
from soak.verdict import Tally
from soak.workload import Mix

_MESSAGE_ID = re.compile(r"<([^@>]+)@")
# An outbox message that got out; "dead" and "failed" ones did not.
_SENT = frozenset({"sent", "delivered", "read"})


async def tally(
    mix: Mix, replayer: Replayer, http: aiohttp.ClientSession, differences: list[str]
) -> Tally:
    load = mix.load
    connection = await asyncpg.connect(load.stack.database_url)
    try:
        messages = [
            dict(row)
            for row in await connection.fetch(
                "SELECT message_id, channel, status, provider_message_id FROM notifier.messages"
                " WHERE workspace_id = $1",
                load.stack.workspace_id,
            )
        ]
        inbox = {
            str(event_id)
            for event_id in await connection.fetchval(
                "SELECT coalesce(array_agg(event_id), '{}') FROM billing_gateway.stripe_events"
                " WHERE workspace_id = $1",
                load.stack.workspace_id,
            )
        }
    finally:
        await connection.close()
    async with http.get(f"{load.stack.url('smtp_sink_http')}/messages") as response:
        mails: list[dict[str, Any]] = (await response.json())["messages"]
    at_sink: Counter[str] = Counter()
    for mail in mails:
        found = _MESSAGE_ID.search(str(mail.get("message_id", "")))
        at_sink[found.group(1) if found else str(mail.get("message_id", ""))] += 1
    sent_wamids = Counter(str(m["wamid"]) for m in await mix.whatsapp_messages(http))
    emails = {str(m["message_id"]) for m in messages if m["channel"] == "email"}
    whatsapp = [m for m in messages if m["channel"] == "whatsapp"]
    provider_ids = {str(m["provider_message_id"]) for m in whatsapp if m["provider_message_id"]}
    refunds = await all_of(load.stripe_client.v1.refunds.list_async, {})
    per_operation = Counter(
        str((r.get("metadata") or {}).get("askvault_operation_id", "")) for r in refunds
    )
    lost = {
        "chat turns without an answer or with a 5xx": _failed_turns(load),
        "WhatsApp webhooks the edge did not take": sum(
            1 for post in mix.whatsapp if post.status != 200
        ),
        "Stripe events not in the gateway's inbox": len(replayer.seen - inbox),
        "outbox messages dead or failed": sum(
            1 for m in messages if m["status"] in ("dead", "failed")
        ),
        "outbox emails not at the SMTP sink": sum(1 for m in emails if not at_sink.get(m)),
        "sent WhatsApp messages not at the emulator": sum(
            1
            for m in whatsapp
            if m["status"] in _SENT and str(m["provider_message_id"]) not in sent_wamids
        ),
    }
    duplicated = {
        "emails received again at the SMTP sink": sum(n - 1 for n in at_sink.values() if n > 1),
        "emails at the SMTP sink in no outbox": sum(1 for m in at_sink if m not in emails),
        "WhatsApp sends in no outbox message": sum(
            1 for wamid in sent_wamids if wamid not in provider_ids
        ),
        "Stripe refunds beyond one per operation": sum(
            n - 1 for operation, n in per_operation.items() if operation and n > 1
        ),
    }
    return Tally(lost, duplicated, differences)


def _failed_turns(load: Load) -> int:
    return sum(1 for turn in load.turns if turn.status is None or turn.status >= 500)
