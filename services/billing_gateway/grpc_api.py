"""The billing gateway's gRPC layer: checks the caller (an admin's credential, or a visitor's
identity assertion that scopes every customer call to its Stripe customer), validates and maps
messages; the use cases live in their modules: the customer's reads in ``reads``,
``customer_search`` and ``plans``, their writes in ``writes`` and ``payment_links``, escalations
in ``escalations``, the account and webhooks in ``account_setup`` and ``webhook_setup``,
recovery in ``recovery_reads`` and the mirror's administration in ``mirror_admin``."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import grpc

from askvault.billing.v1 import billing_pb2 as pb
from askvault.billing.v1 import billing_pb2_grpc
from billing_gateway import (
    callers,
    customer_search,
    escalations,
    notices,
    webhook_setup,
    webhooks,
)
from billing_gateway.account_setup import MAX_SECRET_OVERLAP_SECONDS, AccountSetup
from billing_gateway.accounts import AccountDirectory
from billing_gateway.confirmation_outbox import ConfirmationOutbox
from billing_gateway.customer_search import CustomerSearch
from billing_gateway.ledger import Clock, Ledger
from billing_gateway.mirror import Mirror
from billing_gateway.mirror_admin import MAX_MIRROR_AGE_SECONDS, MirrorAdmin
from billing_gateway.payment_links import PaymentLinks
from billing_gateway.peers import Peers
from billing_gateway.plans import Plans
from billing_gateway.reading import CustomerObjects
from billing_gateway.reads import Reads
from billing_gateway.recovery_reads import RecoveryReads
from billing_gateway.settings import BillingGatewaySettings
from billing_gateway.stripe_api import StripeAccount, StripeGateway
from billing_gateway.writes import Writes
from runtime import auth, errors, idempotency
from runtime.secretbox import SecretBox

Json = dict[str, Any]

_HTTP_URL = re.compile(r"^https?://[^\s]+$")


class BillingGatewayServicer(billing_pb2_grpc.BillingGatewayServiceServicer):
    """Implements askvault.billing.v1.BillingGatewayService."""

    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: BillingGatewaySettings,
        secret_box: SecretBox,
        gateway: StripeGateway,
        peers: Peers,
        accounts: AccountDirectory,
        ledger: Ledger,
        ingestion: webhooks.Ingestion,
        clock: Clock,
        mirror: Mirror,
        confirmations: ConfirmationOutbox,
    ) -> None:
        self._pool = pool
        self._admins = auth.AdminVerifier.from_settings(settings)
        self._stripe = gateway
        self._peers = peers
        self._accounts = accounts
        self._ingestion = ingestion
        self._clock = clock
        objects = CustomerObjects(pool, gateway, mirror, peers, clock)
        self._reads = Reads(pool, gateway, mirror, peers, clock, objects)
        self._search = CustomerSearch(pool, gateway, mirror, accounts, clock, objects)
        self._plans = Plans(pool, gateway, mirror, accounts, clock, objects)
        self._writes = Writes(pool, gateway, ledger, confirmations, objects)
        self._links = PaymentLinks(pool, gateway, ledger, objects)
        self._setup = AccountSetup(pool, secret_box, gateway, mirror, accounts, clock)
        self._recovery = RecoveryReads(pool, clock)
        self._mirror_admin = MirrorAdmin(pool, mirror, settings)
        self._escalations = escalations.Escalations(
            pool, peers, accounts, notices.Notices(peers, accounts, gateway), self._writes
        )

    async def CarryOutEscalation(
        self, request: pb.CarryOutEscalationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CarryOutEscalationResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id", max_length=64)
        check.non_empty(request.escalation_id, "escalation_id", max_length=128)
        # Policy's keys are derived from it and the escalation id (at most 200 together).
        check.non_empty(request.idempotency_key, "idempotency_key", max_length=64)
        check.check()
        return await self._escalations.carry_out(request, callers.authorization(context))

    async def DeclineEscalation(
        self, request: pb.DeclineEscalationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DeclineEscalationResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id", max_length=64)
        check.non_empty(request.escalation_id, "escalation_id", max_length=128)
        check.non_empty(request.reason, "reason", max_length=2048)
        # Policy's keys are derived from it and the escalation id (at most 200 together).
        check.non_empty(request.idempotency_key, "idempotency_key", max_length=64)
        check.check()
        return await self._escalations.decline(request, callers.authorization(context))

    # -- helpers ---------------------------------------------------------------------------

    async def _admin(self, context: grpc.aio.ServicerContext[Any, Any], workspace_id: str) -> str:
        return await self._admins.subject_of_call(context.invocation_metadata(), workspace_id)

    async def _customer(self, request: Any) -> tuple[str, StripeAccount]:
        return await callers.customer_of(self._peers, self._accounts, request)

    # -- reads -----------------------------------------------------------------------------

    async def SyncContactTags(
        self, request: pb.SyncContactTagsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SyncContactTagsResponse:
        customer_id, account = await self._customer(request)
        return await self._reads.sync_contact_tags(request, customer_id, account)

    async def GetSubscription(
        self, request: pb.GetSubscriptionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetSubscriptionResponse:
        customer_id, account = await self._customer(request)
        return await self._reads.get_subscription(request, customer_id, account)

    async def ListInvoices(
        self, request: pb.ListInvoicesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListInvoicesResponse:
        customer_id, account = await self._customer(request)
        return await self._reads.list_invoices(request, customer_id, account)

    async def ListCharges(
        self, request: pb.ListChargesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListChargesResponse:
        customer_id, account = await self._customer(request)
        return await self._reads.list_charges(request, customer_id, account)

    async def GetCharge(
        self, request: pb.GetChargeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetChargeResponse:
        customer_id, account = await self._customer(request)
        return await self._reads.get_charge(request, customer_id, account)

    async def FindDuplicateCharges(
        self, request: pb.FindDuplicateChargesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FindDuplicateChargesResponse:
        customer_id, account = await self._customer(request)
        window = request.window.seconds if request.HasField("window") else 86_400
        lookback = request.lookback.seconds if request.HasField("lookback") else 90 * 86_400
        check = errors.Validator()
        check.require(window > 0, "window", "must be positive")
        check.require(lookback > 0, "lookback", "must be positive")
        check.check()
        return await self._reads.find_duplicate_charges(customer_id, account, window, lookback)

    async def FindCustomers(
        self, request: pb.FindCustomersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.FindCustomersResponse:
        customer_search.check(request)
        return await self._search.find_customers(request)

    async def ListPlans(
        self, request: pb.ListPlansRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListPlansResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        return await self._plans.list_plans(request)

    async def PreviewPlanChange(
        self, request: pb.PreviewPlanChangeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PreviewPlanChangeResponse:
        customer_id, account = await self._customer(request)
        return await self._plans.preview_plan_change(request, customer_id, account)

    # -- writes ----------------------------------------------------------------------------

    async def RefundCharge(
        self, request: pb.RefundChargeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefundChargeResponse:
        check = errors.Validator()
        check.non_empty(request.charge_id, "charge_id")
        check.require(request.amount.amount_minor > 0, "amount.amount_minor", "must be positive")
        check.non_empty(request.amount.currency, "amount.currency", max_length=3)
        check.check()
        customer_id, account = await self._customer(request)
        return await self._writes.refund_for(request, customer_id, account)

    async def ChangePlan(
        self, request: pb.ChangePlanRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ChangePlanResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.non_empty(request.target_price_id, "target_price_id")
        check.check()
        customer_id, account = await self._customer(request)
        return await self._writes.change_plan_for(request, customer_id, account)

    async def CancelSubscription(
        self, request: pb.CancelSubscriptionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CancelSubscriptionResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.check()
        customer_id, account = await self._customer(request)
        return await self._writes.cancel_for(request, customer_id, account)

    async def UndoCancellation(
        self, request: pb.UndoCancellationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UndoCancellationResponse:
        customer_id, _ = await self._customer(request)
        return await self._writes.undo_cancellation(request, customer_id)

    async def _subscription_write(
        self,
        request: Any,
        action: str,
        parameters: Json,
    ) -> pb.PauseSubscriptionResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.check()
        customer_id, account = await self._customer(request)
        return await self._writes.subscription_write_for(
            request, action, parameters, customer_id, account
        )

    async def PauseSubscription(
        self, request: pb.PauseSubscriptionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PauseSubscriptionResponse:
        resumes_at = request.resumes_at.seconds if request.HasField("resumes_at") else None
        return await self._subscription_write(
            request, "pause_subscription", {"resumes_at": resumes_at}
        )

    async def ResumeSubscription(
        self, request: pb.ResumeSubscriptionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResumeSubscriptionResponse:
        done = await self._subscription_write(request, "resume_subscription", {})
        return pb.ResumeSubscriptionResponse(
            operation=done.operation, subscription=done.subscription
        )

    async def StartResubscription(
        self, request: pb.StartResubscriptionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StartResubscriptionResponse:
        check = errors.Validator()
        check.non_empty(request.subscription_id, "subscription_id")
        check.non_empty(request.target_price_id, "target_price_id")
        check.require(
            len(request.success_url) <= 2048
            and (not request.success_url or _HTTP_URL.match(request.success_url) is not None),
            "success_url",
            "an http(s) URL of at most 2048 characters, or empty",
        )
        check.check()
        customer_id, account = await self._customer(request)
        return await self._links.start_resubscription(request, customer_id, account)

    async def RetryInvoicePayment(
        self, request: pb.RetryInvoicePaymentRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetryInvoicePaymentResponse:
        customer_id, account = await self._customer(request)
        return await self._writes.retry_payment_for(request, customer_id, account)

    async def CreatePaymentMethodUpdateLink(
        self,
        request: pb.CreatePaymentMethodUpdateLinkRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> pb.CreatePaymentMethodUpdateLinkResponse:
        customer_id, account = await self._customer(request)
        check = errors.Validator()
        check.require(len(request.return_url) <= 2048, "return_url", "at most 2048 characters")
        check.check()
        return await self._links.payment_method_update_link(request, customer_id, account)

    async def GetOperation(
        self, request: pb.GetOperationRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetOperationResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.operation_id, "operation_id")
        check.check()
        # A customer sees their own operations only (another customer's id is NOT_FOUND,
        # as for every read); without an assertion only an admin may look.
        customer_id = ""
        if request.identity_assertion:
            customer_id, _ = await self._customer(request)
        else:
            await self._admin(context, request.workspace_id)
        return await self._reads.get_operation(request, customer_id)

    # -- webhooks --------------------------------------------------------------------------

    async def IngestStripeEvent(
        self, request: pb.IngestStripeEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.IngestStripeEventResponse:
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(bool(request.payload), "payload", "must not be empty")
        check.check()
        event_id, duplicate = await self._ingestion.ingest(
            request.workspace_id, request.payload, request.signature_header
        )
        return pb.IngestStripeEventResponse(event_id=event_id, duplicate=duplicate)

    # -- admin -----------------------------------------------------------------------------

    async def ConnectAccount(
        self, request: pb.ConnectAccountRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ConnectAccountResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.secret_key, "secret_key", max_length=512)
        check.require(
            request.secret_key.startswith(("sk_", "rk_")), "secret_key", "must be a secret key"
        )
        check.require(
            request.webhook_url.startswith(("https://", "http://")),
            "webhook_url",
            "must be an http(s) URL",
        )
        check.check()
        return await self._setup.connect(request)

    async def CheckWebhookSetup(
        self, request: pb.CheckWebhookSetupRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.CheckWebhookSetupResponse:
        await self._admin(context, request.workspace_id)
        return await webhook_setup.check(
            self._pool, self._stripe, self._accounts, request.workspace_id, self._clock()
        )

    async def RetireWebhookSecret(
        self, request: pb.RetireWebhookSecretRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RetireWebhookSecretResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.non_empty(request.secret_id, "secret_id")
        check.require(
            request.overlap_seconds <= MAX_SECRET_OVERLAP_SECONDS,
            "overlap_seconds",
            f"at most {MAX_SECRET_OVERLAP_SECONDS}",
        )
        check.check()
        return await self._setup.retire_secret(request)

    async def ListRecoveryCases(
        self, request: pb.ListRecoveryCasesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListRecoveryCasesResponse:
        await self._admin(context, request.workspace_id)
        return await self._recovery.list_cases(request)

    async def GetRecoveryStats(
        self, request: pb.GetRecoveryStatsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetRecoveryStatsResponse:
        await self._admin(context, request.workspace_id)
        return await self._recovery.stats(request)

    # -- the mirror ------------------------------------------------------------------------

    async def GetMirrorStatus(
        self, request: pb.GetMirrorStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetMirrorStatusResponse:
        await self._admin(context, request.workspace_id)
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.check()
        return await self._mirror_admin.status(request)

    async def UpdateMirrorSettings(
        self, request: pb.UpdateMirrorSettingsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UpdateMirrorSettingsResponse:
        await self._admin(context, request.workspace_id)
        seconds = request.max_age.seconds if request.HasField("max_age") else 0
        check = errors.Validator()
        check.non_empty(request.workspace_id, "workspace_id")
        check.require(
            0 <= seconds <= MAX_MIRROR_AGE_SECONDS and request.max_age.nanos == 0,
            "max_age",
            f"whole seconds from 1 to {MAX_MIRROR_AGE_SECONDS}, or unset for the default",
        )
        check.check()
        idempotency.require_key(request.idempotency_key)
        await self._accounts.account(request.workspace_id)
        return await self._mirror_admin.update_settings(request, seconds)
