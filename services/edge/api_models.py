"""The edge's HTTP contract as pydantic models: every JSON request and answer of the API
(the OpenAPI document, ``edge.openapi``, is built from them), and the one way a request body
is checked against its model (``check``), which keeps the edge's 4xx body: a problem per
field, in the edge's own words."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from edge.turn import Reply

ID_REGEX = r"^[A-Za-z0-9_.:@+-]{1,128}$"
ID_MESSAGE = "required: letters, digits and _.:@+- (at most 128)"
# A workspace, conversation or quote id.
Id = Annotated[str, StringConstraints(pattern=ID_REGEX)]
# At least one character that is not white space.
Text = Annotated[str, StringConstraints(pattern=r"\S")]
_PROOF = Annotated[str, StringConstraints(max_length=4096)]


class Model(BaseModel):
    """A request or answer: strict types (no "1" for 1, no 1 for true); ``messages`` names
    the problem of a bad value per field path ("visitor.email"), in the edge's words."""

    model_config = ConfigDict(strict=True)
    messages: ClassVar[dict[str, str]] = {}


M = TypeVar("M", bound=Model)


def problems(model: type[Model], failure: ValidationError) -> dict[str, str]:
    """The ``fields`` of the 4xx body: path to problem, the model's words where it has them."""
    found: dict[str, str] = {}
    unknown: dict[str, list[str]] = {}
    for item in failure.errors():
        parts = [str(part) for part in item["loc"]]
        if item["type"] == "extra_forbidden":
            unknown.setdefault(".".join(parts[:-1]), []).append(parts[-1])
            continue
        # A list's item is told as the list: the longest path the model has words for.
        path = ".".join(parts)
        while path not in model.messages and len(parts) > 1:
            parts.pop()
            if ".".join(parts) in model.messages:
                path = ".".join(parts)
        if item["type"] == "value_error":
            # A model's own rule (a ValueError in a validator): its message is the problem.
            found[path] = str(item.get("ctx", {}).get("error", item["msg"]))
        else:
            found[path] = model.messages.get(path, item["msg"])
    for path, names in unknown.items():
        found[path] = f"unknown fields: {', '.join(sorted(names))}"
    return found


def check(model: type[M], body: dict[str, Any]) -> M | dict[str, str]:
    """The body as the model, or the problems per field."""
    try:
        return model.model_validate(body)
    except ValidationError as failure:
        return problems(model, failure)


# ----- errors -----


class ErrorDetail(Model):
    code: str = Field(description="What went wrong, for programs (INVALID_ARGUMENT, ...).")
    message: str = Field(description="What went wrong, for people.")
    fields: dict[str, str] | None = Field(
        default=None, description="The problem per field path, for a request that was refused."
    )


class ErrorBody(Model):
    """Every 4xx and 5xx of the edge's own handlers."""

    error: ErrorDetail


# ----- the visitor -----


class Visitor(Model):
    """Who the visitor says they are, and their proof: ``user_hash`` (the HMAC of the user id
    with the workspace's secret) or ``token`` (an HS256 visitor token), not both."""

    user_id: _PROOF = ""
    email: _PROOF = ""
    user_hash: _PROOF = ""
    token: _PROOF = ""

    @model_validator(mode="after")
    def _one_proof(self) -> Visitor:
        if self.user_hash and self.token:
            raise ValueError("give user_hash or token, not both")
        return self


_VISITOR_MESSAGES = {"visitor": "must be an object"} | {
    f"visitor.{name}": "must be a string" for name in Visitor.model_fields
}


# ----- chat -----


# The optional header of POST /v1/chat/turns (edge/turn_keys.py).
CHAT_TURN_IDEMPOTENCY_KEY = (
    "Optional; 1 to 200 printable characters without spaces, unique per turn (a UUID). A"
    " retry of the turn with the same key (after a lost answer) gets the first answer, kept"
    " for 24 hours, instead of running the turn again; the visitor must be verified as the"
    " same contact again. The same key with another turn (conversation, claimed visitor or"
    " text) is 422 IDEMPOTENCY_MISMATCH; while the first turn still runs, 409"
    " IDEMPOTENCY_IN_PROGRESS with Retry-After. A turn answered with an error keeps nothing."
)


class ChatTurnRequest(Model):
    """``POST /v1/chat/turns``: one message of a visitor (optionally with an
    ``Idempotency-Key`` header: ``CHAT_TURN_IDEMPOTENCY_KEY``)."""

    messages: ClassVar[dict[str, str]] = {
        "workspace_id": ID_MESSAGE,
        "conversation_id": ID_MESSAGE,
        "text": "required",
        **_VISITOR_MESSAGES,
    }
    workspace_id: Id
    conversation_id: Id
    visitor: Visitor = Field(default_factory=Visitor)
    text: Text = Field(description="The message; at most MAX_TEXT_CHARS characters.")


class ReplyAction(BaseModel):
    """A button or link offered with the reply: its type, label and type's own fields."""

    model_config = ConfigDict(extra="allow")
    type: str
    label: str


class ChatTurnReply(BaseModel):
    """The bot's answer to a chat turn."""

    reply: str
    actions: list[ReplyAction]
    intent: str
    escalated: bool
    escalation_id: str | None = Field(default=None, description="Present when escalated.")


# ----- confirmations -----


class ConfirmationRequest(Model):
    """``POST /v1/confirmations``: the chat UI's confirm button, with the visitor's own
    proof (``user_hash`` or ``token``); never a tool."""

    messages: ClassVar[dict[str, str]] = {
        "workspace_id": ID_MESSAGE,
        "conversation_id": ID_MESSAGE,
        "quote_id": ID_MESSAGE,
        "terms_hash": "required: the quote's terms_hash (64 lower-case hex)",
        "answer": 'either "confirm" or "decline"',
        **_VISITOR_MESSAGES,
    }
    workspace_id: Id
    conversation_id: Id
    quote_id: Id
    terms_hash: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    answer: Literal["confirm", "decline"] = "confirm"
    visitor: Visitor = Field(default_factory=Visitor)


class ConfirmationReply(ChatTurnReply):
    """The reply of the confirmed (or declined) action."""

    status: str = Field(description="ok, denied, expired, nothing_pending, ...")
    data: dict[str, Any]


def _reply_fields(reply: Reply) -> dict[str, Any]:
    return {
        "reply": reply.text,
        "actions": [
            ReplyAction(type=action.type, label=action.label, **action.extra)
            for action in reply.actions
        ],
        "intent": reply.intent,
        "escalated": reply.escalated,
        "escalation_id": reply.escalation_id or None,
    }


def _unset(reply: Reply) -> set[str]:
    # escalation_id is in the answer only when the turn escalated.
    return set() if reply.escalation_id else {"escalation_id"}


def chat_turn_reply(reply: Reply) -> dict[str, Any]:
    """A chat turn's JSON answer (``ChatTurnReply``)."""
    return ChatTurnReply(**_reply_fields(reply)).model_dump(exclude=_unset(reply))


def confirmation_reply(reply: Reply) -> dict[str, Any]:
    """A confirmation's JSON answer (``ConfirmationReply``): the turn's, its status and data."""
    answer = ConfirmationReply(**_reply_fields(reply), status=reply.status, data=reply.data)
    return answer.model_dump(exclude=_unset(reply))


# ----- content access -----


class AccessRequirement(Model):
    """What the content needs; every part given must hold."""

    model_config = ConfigDict(strict=True, extra="forbid")
    customer_statuses: list[Literal["active", "trialing", "past_due", "canceled"]] = []
    minimum_plan_tier: Literal["", "free", "starter", "growth", "business", "enterprise"] | None = (
        None
    )
    require_active_trial: bool = False


class AccessCheckRequest(Model):
    """``POST /v1/access/check``."""

    messages: ClassVar[dict[str, str]] = {
        "workspace_id": ID_MESSAGE,
        **_VISITOR_MESSAGES,
        "requirement": "must be an object",
        "requirement.customer_statuses": "a list of active, trialing, past_due, canceled",
        "requirement.minimum_plan_tier": "one of free, starter, growth, business, enterprise",
        "requirement.require_active_trial": "true or false",
    }

    workspace_id: Id
    visitor: Visitor = Field(default_factory=Visitor)
    requirement: AccessRequirement = Field(default_factory=AccessRequirement)


class AccessCheckReply(BaseModel):
    """Whether the verified visitor may see the content (``Cache-Control: private,
    no-store``)."""

    allowed: bool
    unmet: list[str] = Field(description="The requirement's parts not met, by their names.")


# ----- webhooks, health -----


class StripeEventReceived(BaseModel):
    """The Stripe event is stored (a duplicate delivery is stored once)."""

    received: Literal[True]
    event_id: str
    duplicate: bool


class WhatsAppReceived(BaseModel):
    """The WhatsApp webhook's events were taken."""

    received: Literal[True]


class Liveness(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    """Ready (200) or not (503): the database, draining, each channel's state."""

    ready: bool
    database: bool
    draining: bool
    dependencies: dict[str, str]
