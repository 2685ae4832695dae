"""What the CLI sends for escalations approve / deny and messages resend, and how it reads
each outcome, against a gRPC server that serves those RPCs alone and records each request:
the admin's bearer and no service credential, the workspace, an idempotency key (fresh by
default, the given one when a script passes it). They also run end to end against the real
services in test_cli_system.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from typer.testing import CliRunner, Result

from askvault.billing.v1 import billing_pb2
from askvault.notifier.v1 import notifier_pb2
from askvault_cli.main import app
from runtime import service_auth, testing

WORKSPACE = "ws_contract"


@dataclass
class Recorded:
    """The requests the servicers received, with their metadata."""

    requests: list[Any] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)

    def record(self, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        self.requests.append(request)
        self.metadata.append(
            {
                key: str(value)
                for key, value in cast(grpc.aio.Metadata, context.invocation_metadata())
            }
        )


class Billing:
    def __init__(self, recorded: Recorded) -> None:
        self.recorded = recorded

    async def CarryOutEscalation(
        self,
        request: billing_pb2.CarryOutEscalationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> billing_pb2.CarryOutEscalationResponse:
        self.recorded.record(request, context)
        if request.escalation_id == "esc_gone":
            return billing_pb2.CarryOutEscalationResponse(
                outcome=billing_pb2.ESCALATION_OUTCOME_FAILED,
                operation_id="op_2",
                failure_reason="ALREADY_REFUNDED",
                notice_message_id="msg_2",
            )
        return billing_pb2.CarryOutEscalationResponse(
            outcome=billing_pb2.ESCALATION_OUTCOME_EXECUTED,
            operation_id="op_1",
            stripe_object_id="re_1",
            notice_message_id="msg_1",
        )

    async def DeclineEscalation(
        self,
        request: billing_pb2.DeclineEscalationRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> billing_pb2.DeclineEscalationResponse:
        self.recorded.record(request, context)
        return billing_pb2.DeclineEscalationResponse(
            outcome=billing_pb2.ESCALATION_OUTCOME_DECLINED, notice_message_id="msg_3"
        )


class Notifier:
    def __init__(self, recorded: Recorded) -> None:
        self.recorded = recorded

    async def ResendMessage(
        self,
        request: notifier_pb2.ResendMessageRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> notifier_pb2.ResendMessageResponse:
        self.recorded.record(request, context)
        return notifier_pb2.ResendMessageResponse(
            message=notifier_pb2.Message(
                message_id=request.message_id,
                workspace_id=request.workspace_id,
                status=notifier_pb2.MESSAGE_STATUS_QUEUED,
                template=notifier_pb2.TEMPLATE_REFUND_CONFIRMATION,
                channel=notifier_pb2.CHANNEL_EMAIL,
            )
        )


def _handlers(service: str, methods: dict[str, tuple[Any, Any]]) -> Any:
    """Only the RPCs under test (the others answer UNIMPLEMENTED, as a server lacking them)."""
    return grpc.method_handlers_generic_handler(
        service,
        {
            name: grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=request_type.FromString,
                response_serializer=lambda message: message.SerializeToString(),
            )
            for name, (handler, request_type) in methods.items()
        },
    )


@dataclass
class Served:
    address: str
    recorded: Recorded
    home: Path

    async def run(self, *args: str) -> Result:
        environment = {
            "ASKVAULT_BILLING_GATEWAY_ADDR": self.address,
            "ASKVAULT_NOTIFIER_ADDR": self.address,
            "ASKVAULT_WORKSPACE": WORKSPACE,
            "ASKVAULT_ADMIN_TOKEN": testing.TEST_ADMIN_PROVIDER.issue("admin-ops"),
            "ASKVAULT_CONFIG_DIR": str(self.home),
            "COLUMNS": "200",
        }
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=environment)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    recorded = Recorded()
    server = grpc.aio.server()
    billing, notifier = Billing(recorded), Notifier(recorded)
    server.add_generic_rpc_handlers(
        (
            _handlers(
                billing_pb2.DESCRIPTOR.services_by_name["BillingGatewayService"].full_name,
                {
                    "CarryOutEscalation": (
                        billing.CarryOutEscalation,
                        billing_pb2.CarryOutEscalationRequest,
                    ),
                    "DeclineEscalation": (
                        billing.DeclineEscalation,
                        billing_pb2.DeclineEscalationRequest,
                    ),
                },
            ),
            _handlers(
                notifier_pb2.DESCRIPTOR.services_by_name["NotifierService"].full_name,
                {"ResendMessage": (notifier.ResendMessage, notifier_pb2.ResendMessageRequest)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield Served(f"127.0.0.1:{port}", recorded, tmp_path)
    finally:
        await server.stop(0)


def _as_admin(metadata: dict[str, str]) -> None:
    assert metadata["authorization"].startswith("Bearer ey")
    assert service_auth.HEADER not in metadata


async def test_approve_carries_out_the_escalation(served: Served) -> None:
    result = await served.run("--json", "escalations", "approve", "esc_1")
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["outcome"] == "ESCALATION_OUTCOME_EXECUTED"
    assert answer["stripe_object_id"] == "re_1"
    again = await served.run("escalations", "approve", "esc_1", "--idempotency-key", "retry-1")
    assert again.exit_code == 0, again.stderr
    assert "executed" in again.stdout and "re_1" in again.stdout
    first, second = served.recorded.requests
    assert (first.workspace_id, first.escalation_id) == (WORKSPACE, "esc_1")
    assert first.idempotency_key.startswith("cli-") and second.idempotency_key == "retry-1"
    for metadata in served.recorded.metadata:
        _as_admin(metadata)


async def test_an_approval_that_no_longer_applies_exits_with_a_conflict(served: Served) -> None:
    result = await served.run("escalations", "approve", "esc_gone")
    assert result.exit_code == 9
    assert "ALREADY_REFUNDED" in result.stderr and "nothing moved" in result.stderr


async def test_deny_sends_the_reason(served: Served) -> None:
    missing = await served.run("escalations", "deny", "esc_1")
    assert missing.exit_code == 2 and "--reason" in missing.stderr
    result = await served.run(
        "--json", "escalations", "deny", "esc_1", "--reason", "Outside our refund policy."
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["outcome"] == "ESCALATION_OUTCOME_DECLINED"
    (request,) = served.recorded.requests
    assert request.reason == "Outside our refund policy."
    assert request.idempotency_key.startswith("cli-")
    _as_admin(served.recorded.metadata[0])


async def test_resend_queues_the_message_again(served: Served) -> None:
    result = await served.run("messages", "resend", "msg_dead")
    assert result.exit_code == 0, result.stderr
    assert "msg_dead" in result.stdout and "queued" in result.stdout
    (request,) = served.recorded.requests
    assert (request.workspace_id, request.message_id) == (WORKSPACE, "msg_dead")
    assert request.idempotency_key.startswith("cli-")
    _as_admin(served.recorded.metadata[0])


async def test_an_rpc_the_service_lacks_is_named(served: Served) -> None:
    result = await served.run("webhook-check")
    assert result.exit_code == 1
    assert "does not offer this RPC" in result.stderr and "UNIMPLEMENTED" in result.stderr
