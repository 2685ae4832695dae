"""Messages: the workspace's outbox (notifier ListMessages) filtered by status, dead
letters first in mind, with a Resend button (ResendMessage) on dead and failed ones."""

from __future__ import annotations

import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from askvault.notifier.v1 import notifier_pb2
from console.backends import NOTIFIER, CallFailed
from console.web import Admin, action, console_of, flash, page, redirect, render

STATUSES = {
    "all": notifier_pb2.MESSAGE_STATUS_UNSPECIFIED,
    "dead": notifier_pb2.MESSAGE_STATUS_DEAD,
    "failed": notifier_pb2.MESSAGE_STATUS_FAILED,
    "queued": notifier_pb2.MESSAGE_STATUS_QUEUED,
    "sent": notifier_pb2.MESSAGE_STATUS_SENT,
    "delivered": notifier_pb2.MESSAGE_STATUS_DELIVERED,
    "read": notifier_pb2.MESSAGE_STATUS_READ,
}
RESENDABLE = frozenset({notifier_pb2.MESSAGE_STATUS_DEAD, notifier_pb2.MESSAGE_STATUS_FAILED})
PAGE_SIZE = 50


async def outbox(request: Request, admin: Admin) -> Response:
    backends = console_of(request).backends
    status = request.query_params.get("status", "all")
    if status not in STATUSES:
        status = "all"
    problems: list[str] = []
    messages: list[notifier_pb2.Message] = []
    next_page = ""
    try:
        answer = await backends.call(
            NOTIFIER,
            backends.notifier.ListMessages,
            notifier_pb2.ListMessagesRequest(
                workspace_id=admin.workspace_id,
                status=STATUSES[status],
                page_size=PAGE_SIZE,
                page_token=request.query_params.get("page", ""),
            ),
            admin.token,
        )
        messages, next_page = list(answer.messages), answer.next_page_token
    except CallFailed as failure:
        problems.append(failure.text)
    return render(
        request,
        "messages.html",
        admin,
        problems=problems,
        messages=messages,
        status=status,
        statuses=list(STATUSES),
        next_page=next_page,
        resendable=RESENDABLE,
        # Each rendered button carries its own key: a double submit resends once.
        form_nonce=uuid.uuid4().hex,
    )


async def resend(request: Request, admin: Admin, form: dict[str, str]) -> Response:
    backends = console_of(request).backends
    message_id = request.path_params["message_id"]
    answer = await backends.call(
        NOTIFIER,
        backends.notifier.ResendMessage,
        notifier_pb2.ResendMessageRequest(
            workspace_id=admin.workspace_id,
            message_id=message_id,
            idempotency_key=form.get("idempotency_key") or f"console-resend-{uuid.uuid4()}",
        ),
        admin.token,
    )
    flash(request, f"Message {answer.message.message_id} is queued again.")
    return redirect(form.get("back", "/messages"))


def routes() -> list[Route]:
    return [page("/messages", outbox), action("/messages/{message_id}/resend", resend)]
