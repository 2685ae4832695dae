"""Payment methods (test cards, UPI), payment intents, charges and refunds."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from stripe_emulator import errors, events, objects
from stripe_emulator.state import Account, State

Json = dict[str, Any]


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    # Declined when charged: (decline_code, message); None means the charge succeeds.
    decline: tuple[str, str] | None = None
    # Stripe refuses to attach some declining cards at all (they fail the attach check).
    declines_on_attach: bool = False


_GENERIC_DECLINE = ("generic_decline", "Your card was declined.")
_INSUFFICIENT_FUNDS = ("insufficient_funds", "Your card has insufficient funds.")

# Stripe's test payment method tokens. `pm_card_chargeCustomerFail` attaches and then
# declines every charge: the card a past_due customer has on file.
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_amex": TestCard("amex", "8431"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", _GENERIC_DECLINE, declines_on_attach=True),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", _INSUFFICIENT_FUNDS, declines_on_attach=True
    ),
    "pm_card_chargeCustomerFail": TestCard("visa", "0341", _GENERIC_DECLINE),
}
DECLINES_BY_LAST4 = {card.last4: card.decline for card in TEST_CARDS.values() if card.decline}


def card_from_token(
    state: State, account: Account, token: str, now: int, metadata: dict[str, str]
) -> Json:
    card = TEST_CARDS[token]
    fingerprint = hashlib.sha256(f"{account.id}:{card.last4}".encode()).hexdigest()[:16]
    return account.put(
        objects.card_payment_method(
            state.new_id("pm"),
            now,
            brand=card.brand,
            last4=card.last4,
            fingerprint=fingerprint,
            exp_month=12,
            exp_year=2034,
            customer_id=None,
            metadata=metadata,
        )
    )


def resolve_payment_method(
    state: State, account: Account, payment_method_id: str, now: int, param: str
) -> Json:
    """An existing payment method, or a fresh one made from a test token like `pm_card_visa`."""
    if payment_method_id in TEST_CARDS:
        return card_from_token(state, account, payment_method_id, now, {})
    return account.get("payment_method", payment_method_id, param)


def attach(state: State, account: Account, payment_method: Json, customer: Json) -> None:
    if payment_method["customer"] == customer["id"]:
        return
    if payment_method["customer"] is not None:
        raise errors.invalid_request(
            "The payment method you provided has already been attached to a customer.",
            param="payment_method",
        )
    decline = decline_of(payment_method)
    if decline is not None and _declines_on_attach(payment_method):
        raise errors.card_declined(decline[1], decline[0], charge_id=None)
    payment_method["customer"] = customer["id"]
    events.emit(state, account, "payment_method.attached", payment_method)


def _declines_on_attach(payment_method: Json) -> bool:
    card = payment_method.get("card") or {}
    return any(
        candidate.declines_on_attach and candidate.last4 == card.get("last4")
        for candidate in TEST_CARDS.values()
    )


def decline_of(payment_method: Json) -> tuple[str, str] | None:
    if payment_method["type"] != "card":
        return None
    return DECLINES_BY_LAST4.get(str(payment_method["card"]["last4"]))


def ensure_charges_enabled(account: Account) -> None:
    if account.restriction == "charges_disabled":
        raise errors.invalid_request(
            "Your account cannot currently make charges. To find out why charge creation is "
            "disabled, look in the Dashboard under the account's requirements.",
            code="account_invalid",
            status=400,
        )


@dataclass
class PaymentOutcome:
    payment_intent: Json
    charge: Json | None
    # (decline_code, message) when declined; None when the charge succeeded.
    decline: tuple[str, str] | None


def collect(
    state: State,
    account: Account,
    *,
    customer_id: str | None,
    payment_method: Json | None,
    amount: int,
    currency: str,
    description: str | None,
    now: int,
    metadata: dict[str, str] | None = None,
) -> PaymentOutcome:
    """Create a payment intent and try to charge it now, as an off-session confirmation."""
    ensure_charges_enabled(account)
    intent = account.put(
        objects.payment_intent(
            state.new_id("pi"),
            now,
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            payment_method_id=payment_method["id"] if payment_method else None,
            payment_method_type=payment_method["type"] if payment_method else "card",
            description=description,
            metadata=metadata or {},
            client_secret="",
        )
    )
    intent["client_secret"] = f"{intent['id']}_secret_{state.new_id('cs', 16)[3:]}"
    events.emit(state, account, "payment_intent.created", intent, created=now)
    if payment_method is None:
        return PaymentOutcome(intent, None, ("payment_method_missing", "No payment method."))
    return confirm(state, account, intent, payment_method, now)


def confirm(
    state: State, account: Account, intent: Json, payment_method: Json, now: int
) -> PaymentOutcome:
    decline = decline_of(payment_method)
    succeeded = decline is None
    if payment_method["type"] == "card":
        details = objects.card_payment_details(payment_method["card"], intent["amount"])
    else:
        details = {"type": payment_method["type"], payment_method["type"]: payment_method["upi"]}
    charge = account.put(
        objects.charge(
            state.new_id("ch"),
            now,
            amount=intent["amount"],
            currency=intent["currency"],
            customer_id=intent["customer"],
            description=intent["description"],
            payment_intent_id=intent["id"],
            payment_method_id=payment_method["id"],
            payment_method_details=details,
            succeeded=succeeded,
            failure_code=None if succeeded else "card_declined",
            failure_message=None if decline is None else decline[1],
            outcome=objects.charge_outcome(succeeded, None if decline is None else decline[0]),
            receipt_url=f"{state.public_base_url}/receipts/{intent['id']}",
            metadata=dict(intent["metadata"]),
            balance_transaction=state.new_id("txn") if succeeded else None,
        )
    )
    intent["payment_method"] = payment_method["id"]
    intent["payment_method_types"] = [payment_method["type"]]
    intent["latest_charge"] = charge["id"]
    if decline is None:
        intent["status"] = "succeeded"
        intent["amount_received"] = intent["amount"]
        intent["last_payment_error"] = None
        events.emit(state, account, "charge.succeeded", charge, created=now)
        events.emit(state, account, "payment_intent.succeeded", intent, created=now)
    else:
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": decline[0],
            "message": decline[1],
            "charge": charge["id"],
            "payment_method": payment_method["id"],
        }
        events.emit(state, account, "charge.failed", charge, created=now)
        events.emit(state, account, "payment_intent.payment_failed", intent, created=now)
    return PaymentOutcome(intent, charge, decline)


def declined_error(outcome: PaymentOutcome) -> errors.StripeError:
    assert outcome.decline is not None
    return errors.card_declined(
        outcome.decline[1],
        outcome.decline[0],
        charge_id=outcome.charge["id"] if outcome.charge else None,
    )


def refund(
    state: State,
    account: Account,
    charge: Json,
    *,
    amount: int | None,
    reason: str | None,
    metadata: dict[str, str],
    now: int,
) -> Json:
    """Refund part or all of what is left on a charge; never more than that."""
    if charge["status"] != "succeeded":
        raise errors.invalid_request(
            f"Charge {charge['id']} has not been captured and cannot be refunded.",
            param="charge",
            code="charge_not_refundable",
        )
    remaining = int(charge["amount_captured"]) - int(charge["amount_refunded"])
    if remaining <= 0:
        raise errors.invalid_request(
            f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded"
        )
    refund_amount = remaining if amount is None else amount
    if refund_amount <= 0:
        raise errors.invalid_param(
            "amount", "Invalid positive integer", "parameter_invalid_integer"
        )
    if refund_amount > remaining:
        raise errors.invalid_request(
            f"Refund amount ({_money(refund_amount, charge['currency'])}) is greater than "
            f"unrefunded amount on charge ({_money(remaining, charge['currency'])})",
            param="amount",
        )
    if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
        raise errors.invalid_param("reason", f"Invalid reason: {reason}")
    before = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
    created = account.put(
        objects.refund(
            state.new_id("re"),
            now,
            amount=refund_amount,
            charge_id=charge["id"],
            currency=charge["currency"],
            payment_intent_id=charge["payment_intent"],
            reason=reason,
            metadata=metadata,
            card=charge["payment_method_details"]["type"] == "card",
            customer_id=charge["customer"],
            payment_method_id=charge["payment_method"],
        )
    )
    charge["amount_refunded"] = int(charge["amount_refunded"]) + refund_amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount_captured"]
    events.emit(state, account, "refund.created", created, created=now)
    events.emit(state, account, "charge.refunded", charge, previous_attributes=before, created=now)
    return created


def _money(amount: int, currency: str) -> str:
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "inr": "₹"}.get(currency, "")
    return f"{symbol}{amount / 100:.2f}"
