"""The notifier's outbox: messages by status, resending dead ones."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from askvault.notifier.v1 import notifier_pb2
from askvault_cli import calls, output
from askvault_cli.commands import IdempotencyKey, admin

app = typer.Typer(help="Outbox messages and dead letters.", no_args_is_help=True)


class Status(enum.StrEnum):
    all = "all"
    queued = "queued"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"
    dead = "dead"


def _status(value: notifier_pb2.MessageStatus.ValueType) -> str:
    return output.enum_name(notifier_pb2.MessageStatus.Name(value), "MESSAGE_STATUS_")


def _rows(message: notifier_pb2.Message) -> tuple[object, ...]:
    return (
        message.message_id,
        _status(message.status),
        output.enum_name(notifier_pb2.Template.Name(message.template), "TEMPLATE_"),
        output.enum_name(notifier_pb2.Channel.Name(message.channel), "CHANNEL_"),
        message.contact_id,
        message.attempts,
        output.when(message.created_at),
        message.last_error,
    )


@app.command("list")
def list_messages(
    ctx: typer.Context,
    status: Annotated[Status, typer.Option(help="Only messages in this status.")] = Status.all,
    contact: Annotated[str | None, typer.Option(help="Only this contact's messages.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=5000)] = 50,
) -> None:
    """The workspace's messages, newest first."""
    session = admin(ctx)
    wanted = (
        notifier_pb2.MESSAGE_STATUS_UNSPECIFIED
        if status == Status.all
        else notifier_pb2.MessageStatus.Value("MESSAGE_STATUS_" + status.name.upper())
    )
    found: list[notifier_pb2.Message] = []
    token = ""
    while len(found) < limit:
        page = session.call(
            session.notifier.ListMessages,
            notifier_pb2.ListMessagesRequest(
                workspace_id=session.workspace,
                contact_id=contact or "",
                status=wanted,
                page_size=min(500, limit - len(found)),
                page_token=token,
            ),
        )
        found.extend(page.messages)
        token = page.next_page_token
        if not token:
            break
    document = notifier_pb2.ListMessagesResponse(messages=found[:limit])
    output.show(
        session.options.json_output,
        document,
        lambda: output.table(
            f"Messages of {session.workspace} ({status.value})",
            (
                "message id",
                "status",
                "template",
                "channel",
                "contact",
                "attempts",
                "queued",
                "last error",
            ),
            (_rows(message) for message in document.messages),
            wrap=("last error",),
        ),
    )


@app.command("resend")
def resend(
    ctx: typer.Context,
    message_id: Annotated[str, typer.Argument(help="A dead or failed message.")],
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Queue a dead (or failed) message again; a sent one is refused."""
    session = admin(ctx)
    answer = session.call(
        session.notifier.ResendMessage,
        notifier_pb2.ResendMessageRequest(
            workspace_id=session.workspace,
            message_id=message_id,
            idempotency_key=calls.idempotency_key(idempotency_key),
        ),
    )
    output.show(
        session.options.json_output,
        answer,
        lambda: output.table(
            "Message queued again",
            (
                "message id",
                "status",
                "template",
                "channel",
                "contact",
                "attempts",
                "queued",
                "last error",
            ),
            [_rows(answer.message)],
        ),
    )
