"""Who a call is for: the customer its identity assertion names (the only one it may touch),
and the admin credential it carries on to policy."""

from __future__ import annotations

from typing import Any, Protocol

import grpc

from billing_gateway.accounts import AccountDirectory
from billing_gateway.peers import Peers
from billing_gateway.stripe_api import StripeAccount
from runtime import errors


class CustomerScoped(Protocol):
    """A request that acts for the visitor its assertion names."""

    @property
    def workspace_id(self) -> str: ...

    @property
    def identity_assertion(self) -> str: ...


def not_linked() -> errors.ServiceError:
    return errors.ServiceError(
        errors.Kind.FAILED_PRECONDITION,
        "CUSTOMER_NOT_LINKED",
        "the contact is not linked to a Stripe customer",
    )


def authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's ``authorization`` metadata, forwarded as it is to policy (which verifies
    the admin credential itself)."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization" and isinstance(value, str):
            return value
    return ""


async def customer_of(
    peers: Peers, accounts: AccountDirectory, request: CustomerScoped
) -> tuple[str, StripeAccount]:
    """The Stripe customer of the request's verified assertion, and the workspace's account."""
    workspace_id = request.workspace_id
    check = errors.Validator()
    check.non_empty(workspace_id, "workspace_id")
    check.check()
    verified = await peers.verify(request.identity_assertion, workspace_id)
    if not verified.stripe_customer_id:
        raise not_linked()
    return verified.stripe_customer_id, await accounts.account(workspace_id)
