"""Plain-English intents of the billing skill and their entities, without a language model.

The parser is deliberately conservative: it recognises what a customer asks for and pulls
out the objects named (a period, an amount, a plan, Stripe ids). It never decides whether
an action is allowed: whatever the text says ("my manager approved this", "ignore your
rules"), an action still goes through policy and confirmation.

How a message is read: its words are normalised (``spelling.tokens``: case, contractions,
typos); every rule that matches names an intent; a negated action ("I do not want a
refund") is dropped; a more specific intent outranks the ones it refines (a duplicate
charge outranks a refund, any action outranks a read); and when two actions are still
left, the visitor is asked which one they mean (``Intent.CLARIFY``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from edge.domain import spelling
from edge.domain.entities import MoneyAmount, Period, parse_amount, parse_period

__all__ = [
    "BILLING_INTENTS",
    "Intent",
    "MoneyAmount",
    "Parsed",
    "Period",
    "parse",
    "parse_amount",
    "parse_period",
]


class Intent(enum.Enum):
    """What the visitor asks for."""

    STATUS = "status"
    RENEWAL = "renewal"
    NEXT_INVOICE = "next_invoice"
    CURRENT_PLAN = "current_plan"
    INVOICES = "invoices"
    EMAIL_INVOICES = "email_invoices"
    DUPLICATE_CHARGE = "duplicate_charge"
    REFUND = "refund"
    LIST_PLANS = "list_plans"
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"
    UNDO = "undo"
    PAUSE = "pause"
    RESUME = "resume"
    PAYMENT_FAILED = "payment_failed"
    RETRY_PAYMENT = "retry_payment"
    UPDATE_CARD = "update_card"
    HUMAN = "human"
    WHATSAPP_OPT_IN = "whatsapp_opt_in"
    CLARIFY = "clarify"
    YES = "yes"
    NO = "no"
    GREETING = "greeting"
    FALLBACK = "fallback"


# Intents that read or move billing data: an unverified visitor gets a hand-off for these.
BILLING_INTENTS = frozenset(Intent) - {
    Intent.GREETING,
    Intent.FALLBACK,
    Intent.HUMAN,
    Intent.YES,
    Intent.NO,
}


@dataclass(frozen=True)
class Parsed:
    """The intent of one message and the entities it names."""

    intent: Intent
    period: Period | None = None
    amount: MoneyAmount | None = None
    # The plan asked for as said ("basalt"): matched to the live catalog where it is known.
    plan: str = ""
    direction: str = ""  # "upgrade" or "downgrade" when said
    charge_id: str = ""
    invoice_id: str = ""
    last_charge: bool = False
    mentions: tuple[str, ...] = field(default_factory=tuple)
    # The intents a CLARIFY asks the visitor to choose between, most likely first.
    alternatives: tuple[Intent, ...] = field(default_factory=tuple)


_CHARGE_ID = re.compile(r"\b(ch_[A-Za-z0-9]+|py_[A-Za-z0-9]+)\b")
_WHATSAPP_NUMBER = re.compile(r"\+\d[\d ()-]{7,18}\d")
_INVOICE_ID = re.compile(r"\b(in_[A-Za-z0-9]+)\b")

# ----- whole-message answers: yes, no, hello -----

# A "yes" is a message made only of these words, with at least one of the first set.
_YES_CORE = spelling.word_set(
    "y ya yea yeah yep yup yes sure ok okay k alright confirm confirmed correct absolutely "
    "definitely proceed affirmative agreed"
)
_YES_PHRASES = ("go ahead", "do it", "go for it", "sounds good", "please do", "let us do it")
_YES_FILLER = spelling.word_set(
    "please thanks thank you that this is fine right good great sounds it do go ahead for "
    "thing perfect let us now of course indeed just yes sir i we and"
)
_NO_CORE = spelling.word_set("n no nope nah never not nevermind stop")
_NO_PHRASES = ("cancel that", "never mind", "forget it", "leave it")
_NO_FILLER = spelling.word_set(
    "thanks thank you that do it i am good now leave please this time mind fine want need "
    "to okay for"
)
_GREETING_WORDS = spelling.word_set("hi hello hey hiya howdy greetings yo")
_GREETING = re.compile(
    r"^ (hi|hello|hey|hiya|howdy|greetings|yo|good (morning|afternoon|evening|day))"
    r"( (there|all|team|again|folks))?( (how are you|anyone there|is anyone there|"
    r"anybody there|how is it going))? $"
)


def _squeezed(word: str) -> str:
    """ "yesss" -> "yes", "noo" -> "no": a repeated last letter is emphasis."""
    return re.sub(r"(.)\1+$", r"\1", word)


def _only(
    words: list[str], core: frozenset[str], phrases: Iterable[str], filler: frozenset[str]
) -> bool:
    joined = " " + " ".join(_squeezed(w) for w in words) + " "
    said = False
    for phrase in phrases:
        if f" {phrase} " in joined:
            said = True
            joined = joined.replace(f" {phrase} ", " ")
    rest = joined.split()
    said = said or any(word in core for word in rest)
    return said and all(word in core or word in filler for word in rest)


# ----- the rules: each names an intent -----

_ACTION_WORDS = (
    r"(talk|speak|chat|connect|get|want|need|transfer|escalate|contact|reach|call|put|help)"
)
_PEOPLE = (
    r"(human|humans|agent|agents|person|someone|somebody|representative|operator|manager|"
    r"support|customer service|customer care|staff|real people|team member)"
)
_CHANGE_VERB = r"(change|changing|switch|switching|move|moving|swap|go|going)"
_INVOICE_WORDS = (
    r"(invoice|invoices|receipt|receipts|billing history|payment history|statement|statements)"
)
_PLAN_WORDS = r"(plan|plans|tier|tiers|subscription|package)"

# A plan by its place from the visitor's own, as plan_choice.step_named reads it.
_RELATIVE_PLAN = (
    r"((cheaper|less expensive|smaller|bigger|larger|more expensive|pricier|higher|lower)"
    r"( one| plan| tier| option| package)"
    r"|(next|one) (tier|plan|level)( up| down| higher| lower)?"
    r"|(tier|plan|level|one|step) (up|down|above|below|higher|lower))"
)
_PICK = (
    r"(ok |okay |so |then |fine |hmm |maybe )?"
    r"(i will take |i will go with |i would like |let us do |let us go with |i want |give me "
    r"|go with |go for |take |maybe )?"
)
_PICK_END = r"( please| then| instead| plan| tier| thanks| thank you)* "

# (intent, pattern over " word word "): every match names its intent.
_RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = tuple(
    (intent, re.compile(pattern))
    for intent, pattern in (
        (Intent.HUMAN, rf"\b{_PEOPLE}\b.*\b{_ACTION_WORDS}\b|\b{_ACTION_WORDS}\b.*\b{_PEOPLE}\b"),
        (
            Intent.HUMAN,
            r"^ (a )?(human|agent|representative|operator|real person|person|support|help|"
            r"help me|i need help|i need some help|need help|customer service)"
            r"( please| now| pls| asap)? $",
        ),
        (
            Intent.DUPLICATE_CHARGE,
            r"\b(charged|billed|paid|charging|billing|charge|charges|took|taken|deducted)"
            r"( \S+){0,6} (twice|two times|2 times|2x|double|two charges)\b",
        ),
        (
            Intent.DUPLICATE_CHARGE,
            r"\b(double|duplicate|duplicated|doubled) ?(charge|charged|charges|payment|payments"
            r"|billing|billed|transaction|transactions)\b|\btwo (identical |separate )?"
            r"(charges|payments|transactions)\b|\bsame (charge|payment)( \S+){0,3} twice\b",
        ),
        (
            Intent.REFUND,
            r"\b(refund|refunds|refunded|reimburse|reimbursement|money back)\b"
            r"|\b(return|give back|send back)( me)? (my|the) money\b",
        ),
        (
            Intent.LIST_PLANS,
            r"\b(plans|pricing|prices|price list|tiers|options|option|compare)\b"
            r"|\bhow much( \w+){0,4} (cost|costs)\b"
            r"|\b(each|every|all|your|available|other) (plan|tier)s?\b"
            r"|\bdo you (offer|have|sell)( \w+){0,3} (plan|plans|tier|tiers)\b"
            r"|\b(cheaper|cheapest|less expensive|more affordable|lower price|budget)\b",
        ),
        (Intent.CHANGE_PLAN, r"\b(upgrade|downgrade|upgrading|downgrading)\b"),
        # A plan named only by where it stands, and nothing else said ("the cheaper one",
        # "the next tier up", "I will take the bigger one"): a choice, not a question about
        # the price list ("is there a cheaper option" asks that).
        (Intent.CHANGE_PLAN, rf"^ {_PICK}(the |a )?{_RELATIVE_PLAN}{_PICK_END}$"),
        (Intent.CHANGE_PLAN, rf"\b{_CHANGE_VERB}( \S+){{0,4}} {_PLAN_WORDS}\b"),
        (
            Intent.CHANGE_PLAN,
            r"\b(switch|move|swap|change|moving|switching)( \w+){0,3} (to|into|onto)"
            r" (?!my |your |me |us )\w+|\b(go|going|move|moving) from \w+( plan| tier)? to \w+",
        ),
        (
            Intent.CHANGE_PLAN,
            r"\b(want|need|would like|give me|get me|sign me up for|put me on|take)"
            r"( the| a| an)? \w+ (plan|tier)\b",
        ),
        (
            Intent.CANCEL,
            r"\b(cancel|cancelling|canceling|unsubscribe|terminate|end|stop|close|delete|quit"
            r"|shut down|shutdown|get rid of)( \S+){0,2} (subscription|subscriptions|plan|"
            r"account|membership|billing|everything|it|service)\b",
        ),
        (
            Intent.CANCEL,
            r"\b(cancel|cancelling|canceling|unsubscribe)\b|\bstop (billing|charging) me\b",
        ),
        (
            Intent.UNDO,
            r"\b(undo|reverse|revert|take back)\b|\bdo not (\w+ )?(want to )?cancel\b"
            r"|\b(keep|restore|reactivate) (my|the) (subscription|plan|account)\b"
            r"|\bchanged my mind\b",
        ),
        (
            Intent.PAUSE,
            r"\b(pause|freeze|suspend)\b|\bon hold\b|\bhold (my|the) \w+|\btake a break\b",
        ),
        (
            Intent.RESUME,
            r"\b(resume|unpause|un pause|restart)\b|\bstart( \w+){0,2} again\b"
            r"|\breactivate( \w+){0,2} paused\b|\bturn( \w+){0,2} back on\b",
        ),
        (
            Intent.PAYMENT_FAILED,
            r"\b(payment|payments|card|charge|transaction|invoice|pay|paying)\b.*"
            r"\b(declined|decline|failed|fail|fails|failing|failure|bounced|rejected|"
            r"unsuccessful|did not go through|not go through|not accepted|not working)\b"
            r"|\b(declined|failed|rejected)( \w+){0,2} (payment|card|charge)\b"
            r"|\bpayment (failure|problem|issue)\b",
        ),
        (
            Intent.RETRY_PAYMENT,
            r"\b(retry|re try)\b|\btry( \w+){0,3} (again|one more time|once more)\b"
            r"|\btry charging\b"
            r"|\bcharge( my card| me| it| the card) again\b|\bpay now\b"
            r"|\bpay (my|the)( open| unpaid| outstanding| last)? (invoice|bill|balance)\b",
        ),
        (
            Intent.UPDATE_CARD,
            r"\b(update|updating|change|replace|new|add|switch|swap|use|edit|put)( out| in)?"
            r"( my| the| a| your| another| different| other)*( credit| debit| payment| billing)?"
            r" (card|cards|payment method|payment details|payment info|billing details)\b"
            r"|\bcard (details|info|information|number|expired|has expired|on file)\b",
        ),
        (Intent.EMAIL_INVOICES, rf"\b{_INVOICE_WORDS}\b.*\b(email|e mail|mail|emailed|inbox)\b"),
        (Intent.EMAIL_INVOICES, rf"\b(email|e mail|mail|inbox)\b.*\b{_INVOICE_WORDS}\b"),
        (Intent.INVOICES, rf"\b{_INVOICE_WORDS}\b"),
        (
            Intent.NEXT_INVOICE,
            # "the date of my next charge" asks when, not how much: that is the renewal.
            r"^(?!.*\b(date|day|when)\b).*\b(next|upcoming|coming|following)"
            r" (invoice|bill|payment|charge)\b|\bhow much( \w+){0,7} (next|upcoming)\b"
            r"|\bpreview( \w+){0,2} (invoice|bill)\b",
        ),
        (
            Intent.RENEWAL,
            r"\b(renew|renewal|renews|renewing|next billing|billing date|billed next)\b"
            r"|\bwhen( \w+){0,4} (charged|billed|charge me|bill me)\b|\bcharged again\b"
            r"|\b(what|which) (day|date)( \w+){0,4} (charge|bill)\b"
            r"|\b(date|day|when)\b.*\bnext (charge|payment|bill|invoice)\b",
        ),
        (
            Intent.CURRENT_PLAN,
            r"\b(which|what|current)( \w+){0,3} (plan|tier|package)\b"
            r"|\bmy (current )?(plan|tier)( is)? $"
            r"|\bam i (on|subscribed to|paying for)( \w+){0,3} (plan|tier|package)\b",
        ),
        (
            Intent.STATUS,
            r"\b(status|subscription|subscribed|account|billing|standing|paid up|active)\b",
        ),
    )
)

_READS = (
    Intent.NEXT_INVOICE,
    Intent.RENEWAL,
    Intent.INVOICES,
    Intent.LIST_PLANS,
    Intent.CURRENT_PLAN,
    Intent.STATUS,
)
# What each intent outranks when both match: it refines them (a duplicate charge is a
# refund asked for a reason; undoing a cancellation mentions cancelling).
_OUTRANKS: dict[Intent, frozenset[Intent]] = {
    Intent.DUPLICATE_CHARGE: frozenset(
        {Intent.REFUND, Intent.PAYMENT_FAILED, Intent.UPDATE_CARD, Intent.CHANGE_PLAN}
    ),
    Intent.UNDO: frozenset({Intent.CANCEL, Intent.CHANGE_PLAN}),
    Intent.RESUME: frozenset({Intent.PAUSE, Intent.UNDO, Intent.CANCEL}),
    Intent.RETRY_PAYMENT: frozenset({Intent.PAYMENT_FAILED}),
    Intent.UPDATE_CARD: frozenset({Intent.PAYMENT_FAILED, Intent.CHANGE_PLAN}),
    Intent.REFUND: frozenset({Intent.PAYMENT_FAILED}),
    Intent.EMAIL_INVOICES: frozenset({Intent.INVOICES}),
    Intent.NEXT_INVOICE: frozenset({Intent.RENEWAL, Intent.INVOICES, Intent.STATUS}),
    Intent.RENEWAL: frozenset({Intent.CURRENT_PLAN, Intent.STATUS}),
    Intent.LIST_PLANS: frozenset({Intent.CURRENT_PLAN, Intent.STATUS}),
    Intent.CURRENT_PLAN: frozenset({Intent.STATUS}),
    Intent.INVOICES: frozenset({Intent.STATUS}),
}

# The words that name an action, for telling "I do not want a refund" from "a refund".
_ACTION_KEYWORDS: dict[Intent, frozenset[str]] = {
    Intent.REFUND: frozenset({"refund", "refunds", "refunded", "reimburse"}),
    Intent.CANCEL: frozenset(
        {"cancel", "cancelling", "canceling", "unsubscribe", "close", "delete", "terminate"}
    ),
    Intent.PAUSE: frozenset({"pause", "freeze", "suspend"}),
    Intent.CHANGE_PLAN: frozenset({"change", "switch", "upgrade", "downgrade", "move"}),
    Intent.RETRY_PAYMENT: frozenset({"retry"}),
    Intent.UPDATE_CARD: frozenset({"update", "change", "replace"}),
    Intent.EMAIL_INVOICES: frozenset({"email", "mail"}),
    Intent.RESUME: frozenset({"resume", "unpause", "restart"}),
}
# A negated action: "no refund", "not a refund", "instead of cancelling" (the visitor prefers
# the other thing named), or a wish negated ("do not want a refund", "no need to refund").
# "I did not get my refund" asks about one: nothing wished, so nothing negated.
_NEGATED = (
    r"\b(not|no|never|instead of)( a| an| the| any| my)? ({})\b"
    r"|\b(not|no|never)( really| even)? (want|need|wish|like)"
    r"( to| a| an| the| any| my| it| get| do| that| this| please| me){{0,4}} ({})\b"
)


def _negated(lowered: str, intent: Intent) -> bool:
    keywords = "|".join(sorted(_ACTION_KEYWORDS.get(intent, frozenset())))
    return bool(keywords) and re.search(_NEGATED.format(keywords, keywords), lowered) is not None


def _rank(found: set[Intent]) -> list[Intent]:
    """The intents left once the refined ones are dropped, actions before reads."""
    kept = {i for i in found if not any(i in _OUTRANKS.get(o, ()) for o in found if o != i)}
    if kept - set(_READS):
        kept -= set(_READS)
    order = list(Intent)
    return sorted(kept, key=order.index)


# ----- plans -----

# Words after "to" or before "plan" that describe (or do) rather than name a plan.
_NOT_PLAN_NAMES = spelling.word_set(
    """
    a an the my our your this that it me us one bigger larger higher better smaller cheaper
    lower different new other another current same paid annual monthly yearly next previous
    plan plans tier tiers subscription package month year
    change switch move upgrade downgrade swap cancel go get be have keep pay see know do make
    """
)
_TO_PLAN = re.compile(r"\b(to|into|onto|for|with) (the )?(\w+)( plan| tier)?\b")
_NAMED_PLAN = re.compile(r"\b(the |a |an )?(\w+) (plan|tier)\b")


def _plan_mentions(lowered: str, plan_names: tuple[str, ...]) -> list[str]:
    found: list[tuple[int, str]] = []
    for name in plan_names:
        for match in re.finditer(rf"\b{re.escape(name.lower())}\b", lowered):
            found.append((match.start(), name.lower()))
    found.sort()
    return [name for _, name in found]


def _asked_plan(lowered: str, mentions: list[str]) -> str:
    """The plan moved to: a known name after "to"/"into"/"onto"/"for", else the last known
    name; without known names, the word after "to" or before "plan" ("to Basalt", "the
    Basalt plan")."""
    for name in mentions:
        if re.search(rf"\b(to|into|onto|for|with) (the )?{re.escape(name)}\b", lowered):
            return name
    if mentions:
        return mentions[-1]
    for pattern, group in ((_TO_PLAN, 3), (_NAMED_PLAN, 2)):
        for match in pattern.finditer(lowered):
            word = match.group(group)
            if word not in _NOT_PLAN_NAMES and word not in spelling.BILLING_WORDS:
                return word
    return ""


def _direction(lowered: str) -> str:
    if re.search(r"\b(upgrade|upgrading|bigger|larger|higher|go up|move up)\b", lowered):
        return "upgrade"
    if re.search(r"\b(downgrade|downgrading|smaller|lower|go down|move down)\b", lowered):
        return "downgrade"
    return ""


# ----- the parse -----


def parse(text: str, now: datetime, plan_names: tuple[str, ...] = ()) -> Parsed:
    """The intent and entities of one chat message; ``plan_names`` are the catalog's, when
    the caller knows them (the words after "to" or before "plan" otherwise)."""
    words = spelling.tokens(text)
    lowered = " " + " ".join(words) + " "
    if _only(words, _YES_CORE, _YES_PHRASES, _YES_FILLER):
        return Parsed(Intent.YES)
    if _only(words, _NO_CORE, _NO_PHRASES, _NO_FILLER):
        return Parsed(Intent.NO)
    charge_match = _CHARGE_ID.search(text)
    invoice_match = _INVOICE_ID.search(text)
    amount = parse_amount(text)
    mentions = _plan_mentions(lowered, plan_names)
    base = Parsed(
        Intent.FALLBACK,
        amount=amount,
        period=parse_period(text, now),
        charge_id=charge_match.group(1) if charge_match else "",
        invoice_id=invoice_match.group(1) if invoice_match else "",
        mentions=tuple(mentions),
    )
    if re.search(r"\b(whatsapp|whats app)\b", lowered) and _WHATSAPP_NUMBER.search(text):
        # "send my billing messages to WhatsApp +1 415 555 0100": consent with the number.
        return replace(base, intent=Intent.WHATSAPP_OPT_IN)
    found = {intent for intent, rule in _RULES if rule.search(lowered)}
    if mentions and re.search(rf"\b{_CHANGE_VERB}\b", lowered):
        found.add(Intent.CHANGE_PLAN)
    if Intent.HUMAN in found:
        # Asked for a person in so many words: that comes before anything else said.
        return replace(base, intent=Intent.HUMAN)
    negated = {intent for intent in found if _negated(lowered, intent)}
    ranked = _rank(found - negated)
    if negated and (not ranked or ranked[0] in _READS):
        # "I do not want a refund", "I don't want to change my plan": a no, to whatever
        # was offered, not the action named nor a read of its topic.
        return replace(base, intent=Intent.NO)
    if not ranked:
        if (words and words[0] in _GREETING_WORDS) or _GREETING.match(lowered):
            return replace(base, intent=Intent.GREETING)
        return base
    if len(ranked) > 1 and ranked[0] not in _READS:
        return replace(base, intent=Intent.CLARIFY, alternatives=tuple(ranked[:2]))
    intent = ranked[0]
    if intent is Intent.CHANGE_PLAN:
        return replace(
            base,
            intent=intent,
            plan=_asked_plan(lowered, mentions),
            direction=_direction(lowered),
        )
    if intent is Intent.REFUND:
        last = bool(
            re.search(r"\b(last|latest|most recent|previous) (charge|payment|invoice)\b", lowered)
        ) or not (charge_match or amount)
        return replace(base, intent=intent, last_charge=last)
    return replace(base, intent=intent)
