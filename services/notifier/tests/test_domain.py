"""Pure rules: templates, routing, failure decisions, status monotonicity (no server)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from askvault.notifier.v1 import notifier_pb2 as pb
from notifier.domain import outbox, templates
from notifier.domain.outbox import DeliveryFailure, FailureKind
from runtime import errors

POLICY = outbox.RetryPolicy(max_attempts=4, backoff_base_seconds=1.0, backoff_cap_seconds=10.0)


def test_every_template_of_the_contract_has_a_definition() -> None:
    from notifier.convert import TEMPLATE_TO_KEY as _TEMPLATE_TO_KEY

    defined = {value for value in pb.Template.values() if value != pb.TEMPLATE_UNSPECIFIED}
    assert set(_TEMPLATE_TO_KEY) == defined
    for key in _TEMPLATE_TO_KEY.values():
        template = templates.get(key)
        variables = {name: "x" for name in template.required}
        for name in template.links:
            if name in variables:
                variables[name] = "https://example.com"
        email = templates.render_email(template, variables, name="Ann", sender_name="Acme")
        assert email.subject and email.text and email.html
        assert "{" not in email.text and "{" not in email.html


def test_missing_unknown_and_malformed_variables_are_violations() -> None:
    template = templates.get("payment_failed")
    with pytest.raises(errors.ServiceError) as caught:
        templates.check_variables(
            template, {"amount": "$1", "update_card_url": "javascript:x", "card_number": "4242"}
        )
    fields = {v.field for v in caught.value.violations}
    assert fields == {"variables.update_card_url", "variables.card_number"}


@pytest.mark.parametrize(
    ("variables", "reply_to", "retry", "support"),
    [
        (
            {"invoice_url": "https://invoice.stripe.com/i/1"},
            "billing@acme.test",
            "pay the invoice with the card on file or another one: https://invoice.stripe.com/i/1",
            "reply to this email",
        ),
        ({}, "", 'say "retry my payment" in our chat', 'say "talk to a human" in our chat'),
        (
            {"support_url": "https://acme.test/help"},
            "billing@acme.test",
            'say "retry my payment" in our chat',
            "https://acme.test/help",
        ),
    ],
)
def test_failed_payment_email_always_has_its_three_options(
    variables: dict[str, str], reply_to: str, retry: str, support: str
) -> None:
    """Retry now, update card and talk to support are always there, and none of them asks
    for a reply that nobody reads (no reply-to address: no "reply to this email")."""
    template = templates.get("payment_failed")
    email = templates.render_email(
        template,
        {"amount": "49.00 USD", "update_card_url": "https://billing.stripe.com/p/1", **variables},
        name="Ann",
        sender_name="Acme",
        reply_to=reply_to,
    )
    for body in (email.text, email.html.replace("&quot;", '"')):
        assert "etry now: " + retry in body, body
        assert "https://billing.stripe.com/p/1" in body
        assert "alk to support: " + support in body, body
    assert "reply RETRY" not in email.text and "reply HELP" not in email.text
    whatsapp = templates.render_whatsapp(template, {"amount": "49.00 USD"}, name="", sender_name="")
    assert [button.payload for button in whatsapp.buttons] == [
        templates.RETRY_PAYMENT,
        templates.UPDATE_CARD,
        templates.TALK_TO_HUMAN,
    ]


def test_user_text_is_redacted_and_html_escaped() -> None:
    template = templates.get("chat_reply")
    rendered = templates.render_email(
        template,
        {"text": "<script>alert(1)</script> my card is 4242 4242 4242 4242"},
        name="Ann",
        sender_name="Acme",
    )
    assert "4242" not in rendered.text and "4242" not in rendered.html
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    whatsapp = templates.render_whatsapp(
        template, {"text": "card 4000 0000 0000 0002"}, name="", sender_name=""
    )
    assert not whatsapp.is_template and "0002" not in whatsapp.text


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    rng = random.Random(1)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 10.0)]:
        delays = [outbox.backoff_seconds(attempt, 1.0, 10.0, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1


@pytest.mark.parametrize(
    ("http_status", "code", "kind"),
    [
        (400, 130429, FailureKind.TRANSIENT),
        (400, 131056, FailureKind.TRANSIENT),
        (503, 0, FailureKind.TRANSIENT),
        (400, 131026, FailureKind.FALLBACK),
        (400, 131047, FailureKind.FALLBACK),
        (400, 100, FailureKind.FALLBACK),
    ],
)
def test_whatsapp_codes_are_classified(http_status: int, code: int, kind: FailureKind) -> None:
    assert outbox.classify_whatsapp(http_status, code) is kind


def test_failure_decisions() -> None:
    transient = DeliveryFailure(FailureKind.TRANSIENT, "451")
    retry = outbox.after_failure(
        transient, channel="email", attempts=1, can_email=True, policy=POLICY
    )
    assert isinstance(retry, outbox.Retry)
    dead = outbox.after_failure(
        transient, channel="email", attempts=4, can_email=True, policy=POLICY
    )
    assert isinstance(dead, outbox.Dead) and "451" in dead.error
    fallback = DeliveryFailure(FailureKind.FALLBACK, "131026")
    assert isinstance(
        outbox.after_failure(
            fallback, channel="whatsapp", attempts=9, can_email=True, policy=POLICY
        ),
        outbox.FallBackToEmail,
    )
    assert isinstance(
        outbox.after_failure(
            fallback, channel="whatsapp", attempts=1, can_email=False, policy=POLICY
        ),
        outbox.Dead,
    )


def test_routing_needs_an_opt_in_for_whatsapp() -> None:
    common: dict[str, Any] = {
        "email": "a@example.com",
        "whatsapp_number": "+14155550100",
        "email_consent": None,
        "whatsapp_enabled": True,
        "has_attachments": False,
        "whatsapp_capable": True,
    }
    assert outbox.choose_route(requested="", whatsapp_consent=None, **common).channel == "email"
    opted_out = outbox.Consent(False, "+14155550100")
    assert (
        outbox.choose_route(requested="", whatsapp_consent=opted_out, **common).channel == "email"
    )
    opted_in = outbox.Consent(True, "+14155550199")
    route = outbox.choose_route(requested="", whatsapp_consent=opted_in, **common)
    assert (route.channel, route.whatsapp_number) == ("whatsapp", "+14155550199")
    with pytest.raises(errors.ServiceError) as caught:
        outbox.choose_route(requested="whatsapp", whatsapp_consent=opted_out, **common)
    assert caught.value.reason == "CONSENT_REQUIRED"


def test_statuses_only_move_forward() -> None:
    def apply(current: str, reported: str, code: int = 0) -> object:
        return outbox.apply_whatsapp_status(
            channel="whatsapp", current=current, reported=reported, error_code=code, error_title=""
        )

    assert apply("sent", "delivered") == outbox.StatusChange("delivered")
    assert apply("delivered", "read") == outbox.StatusChange("read")
    assert apply("read", "delivered") is None
    assert apply("delivered", "sent") is None
    assert apply("read", "failed", 131026) is None
    failed = apply("sent", "failed", 131026)
    assert isinstance(failed, outbox.StatusFailure)
    assert failed.failure.kind is FailureKind.FALLBACK
    assert (
        outbox.apply_whatsapp_status(
            channel="email", current="sent", reported="read", error_code=0, error_title=""
        )
        is None
    )


def test_only_the_opt_out_confirmation_goes_to_a_contact_who_opted_out_of_whatsapp() -> None:
    withdrawn = outbox.Consent(False, "+14155550123")
    route = dict(
        requested=outbox.WHATSAPP,
        email="ann@example.com",
        whatsapp_number="",
        whatsapp_consent=withdrawn,
        email_consent=None,
        whatsapp_enabled=True,
        has_attachments=False,
        whatsapp_capable=True,
    )
    with pytest.raises(errors.ServiceError) as refused:
        outbox.choose_route(**route)  # type: ignore[arg-type]
    assert refused.value.reason == "CONSENT_REQUIRED"
    confirmation = outbox.choose_route(**route, answers_opt_out=True)  # type: ignore[arg-type]
    assert confirmation.channel == outbox.WHATSAPP
    with pytest.raises(errors.ServiceError):  # never to a number that never opted in
        outbox.choose_route(**{**route, "whatsapp_consent": None}, answers_opt_out=True)  # type: ignore[arg-type]
    now = datetime.now(UTC)
    for key, failed in (("chat_reply", True), (templates.WHATSAPP_OPTED_OUT, False)):
        context = outbox.DeliveryContext(
            channel=outbox.WHATSAPP,
            template_key=key,
            email="ann@example.com",
            whatsapp_consent=withdrawn,
            email_consent=None,
            window_closes_at=now + timedelta(hours=1),
            now=now,
        )
        assert (outbox.precheck(context, free_form=True) is not None) == failed
