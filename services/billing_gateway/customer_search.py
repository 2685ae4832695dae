"""FindCustomers: a workspace's Stripe customers by email, by a metadata value or by id, from
the mirror when it holds them fresh, else from Stripe."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg

from askvault.billing.v1 import billing_pb2 as pb
from billing_gateway import mirror_reads
from billing_gateway.accounts import AccountDirectory
from billing_gateway.ledger import Clock
from billing_gateway.mirror import Mirror
from billing_gateway.reading import CustomerObjects
from billing_gateway.stripe_api import StripeAccount, StripeGateway, to_json
from runtime import errors

# A metadata key and value safe to put inside a customers.search query's quoted strings.
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_METADATA_VALUE = re.compile(r"^[^'\"\\\x00-\x1f\x7f]{1,500}$")
_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")


def check(request: pb.FindCustomersRequest) -> None:
    """INVALID_ARGUMENT unless the request asks by exactly one of email, metadata and id,
    each well formed (a metadata key and value that cannot break out of a search query)."""
    check = errors.Validator()
    check.non_empty(request.workspace_id, "workspace_id")
    by_metadata = request.HasField("metadata")
    asked = [bool(request.email), by_metadata, bool(request.stripe_customer_id)]
    check.require(
        sum(asked) == 1,
        "email",
        "exactly one of email, metadata and stripe_customer_id is required",
    )
    if request.email:
        check.non_empty(request.email, "email", max_length=320)
    if by_metadata:
        check.require(
            bool(_METADATA_KEY.match(request.metadata.key)),
            "metadata.key",
            "[A-Za-z0-9_-]{1,40}",
        )
        check.require(
            bool(_METADATA_VALUE.match(request.metadata.value)),
            "metadata.value",
            "1 to 500 characters, without quotes, backslashes or control characters",
        )
    if request.stripe_customer_id:
        check.require(
            bool(_CUSTOMER_ID.match(request.stripe_customer_id)),
            "stripe_customer_id",
            "must be a Stripe customer id (cus_...)",
        )
    check.check()


@dataclass(frozen=True)
class CustomerSearch:
    """Finds a workspace's customers."""

    _pool: asyncpg.Pool
    _stripe: StripeGateway
    _mirror: Mirror
    _accounts: AccountDirectory
    _clock: Clock
    _objects: CustomerObjects

    async def find_customers(self, request: pb.FindCustomersRequest) -> pb.FindCustomersResponse:
        """The customers the (validated) request names."""
        by_metadata = request.HasField("metadata")
        account = await self._accounts.account(request.workspace_id)
        held = await self._customers_from_mirror(request)
        if held is not None:
            return held
        if by_metadata:
            found_by_metadata = await self._find_by_metadata(account, request.metadata)
            found_by_metadata.origin.CopyFrom(self._objects.from_stripe())
            return found_by_metadata
        if request.stripe_customer_id:
            found_by_id = await self._find_by_id(account, request.stripe_customer_id)
            found_by_id.origin.CopyFrom(self._objects.from_stripe())
            return found_by_id
        wanted = request.email.strip().lower()
        found: dict[str, str] = {}
        for email in dict.fromkeys((request.email.strip(), wanted)):
            listed = await self._list_customers(account, email)
            for customer in listed.data:
                if str(customer.email or "").lower() == wanted:
                    found[str(customer.id)] = str(customer.email)
        return pb.FindCustomersResponse(
            customers=[
                pb.StripeCustomer(stripe_customer_id=customer_id, email=email)
                for customer_id, email in found.items()
            ],
            origin=self._objects.from_stripe(),
        )

    async def _customers_from_mirror(
        self, request: pb.FindCustomersRequest
    ) -> pb.FindCustomersResponse | None:
        by_metadata = request.HasField("metadata")
        async with self._pool.acquire() as connection:
            freshness = await self._mirror.freshness(connection, request.workspace_id)
            held = await mirror_reads.customers(
                connection,
                request.workspace_id,
                customer_id=request.stripe_customer_id,
                email=request.email.strip(),
                metadata=(request.metadata.key, request.metadata.value) if by_metadata else None,
                freshness=freshness,
                now=self._clock(),
            )
        if held is None:
            return None
        return pb.FindCustomersResponse(
            customers=[
                pb.StripeCustomer(
                    stripe_customer_id=str(customer["id"]),
                    email=str(customer.get("email") or ""),
                    metadata_value=(
                        str((customer.get("metadata") or {}).get(request.metadata.key, ""))
                        if by_metadata
                        else ""
                    ),
                )
                for customer in held.customers
            ],
            origin=self._objects.from_mirror(held.as_of),
        )

    async def _find_by_metadata(
        self, account: StripeAccount, wanted: pb.MetadataQuery
    ) -> pb.FindCustomersResponse:
        # Key and value were validated to hold no quote or backslash, so they cannot break
        # out of the query's quoted strings. Stripe's search index lags writes by up to a
        # minute; a customer created just now may be found on a later turn.
        query: Any = {
            "query": f"metadata['{wanted.key}']:'{wanted.value}'",
            "limit": 10,
        }
        result = await self._stripe.call(
            account, "customers.search", lambda c: c.v1.customers.search_async(query)
        )
        customers = []
        for customer in result.data:
            metadata = to_json(customer).get("metadata") or {}
            value = str(metadata.get(wanted.key, ""))
            # Search matching is Stripe's; the exact value is ours to check.
            if value == wanted.value:
                customers.append(
                    pb.StripeCustomer(
                        stripe_customer_id=str(customer.id),
                        email=str(customer.email or ""),
                        metadata_value=value,
                    )
                )
        return pb.FindCustomersResponse(customers=customers)

    async def _find_by_id(
        self, account: StripeAccount, customer_id: str
    ) -> pb.FindCustomersResponse:
        try:
            customer = await self._stripe.call(
                account,
                "customers.retrieve",
                lambda c: c.v1.customers.retrieve_async(customer_id),
            )
        except errors.ServiceError as error:
            if error.kind is errors.Kind.NOT_FOUND:
                return pb.FindCustomersResponse()
            raise
        if getattr(customer, "deleted", False):
            return pb.FindCustomersResponse()
        return pb.FindCustomersResponse(
            customers=[
                pb.StripeCustomer(
                    stripe_customer_id=str(customer.id), email=str(customer.email or "")
                )
            ]
        )

    async def _list_customers(self, account: StripeAccount, email: str) -> Any:
        query: Any = {"email": email, "limit": 100}
        return await self._stripe.call(
            account, "customers.list", lambda c: c.v1.customers.list_async(query)
        )
