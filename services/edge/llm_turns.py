"""Chat turns answered by a language model (optional LLM mode), with the rules as the default
and the fallback.

The model gets the same tools as ``/v1/tools`` and ``/mcp``, run for the turn's verified,
bound visitor: a tool call names no one (identity comes from the turn; an argument naming a
customer, contact or email is refused as unknown), and a money tool only quotes, at most
once a turn. The person confirms the quote with their own "yes" in a later turn, which the
rules answer; the model has no tool that confirms.

The model's words go out only when grounded (``domain.grounding``): every amount, date,
duration, link and policy term must appear in that turn's tool results, and no money action
may be told as done. Otherwise, and when the model called a tool it has not got or with
arguments that do not fit, the reply is replaced: by the tools' own replies when any ran (so
a quote the person may say yes to is always shown in the edge's own words), else by the
rules' answer. A model that fails, is slower than ``llm_timeout_seconds`` or answers with
nothing usable gets the rules' answer too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from edge import metrics, replies, storage, tools
from edge.domain import grounding
from edge.domain.intents import Intent, Parsed
from edge.llm_client import ChatModel, ModelFailed, ModelTurn, ToolCall
from edge.settings import EdgeSettings
from edge.turn import Context, NotFound, Reply, Request, TurnDeps

logger = logging.getLogger(__name__)

# Runs one tool's request for the turn's visitor (the pipeline's answer for the intent).
RunTool = Callable[[Parsed], Awaitable[Reply]]
# The rules' answer to the person's words.
RulesAnswer = Callable[[], Awaitable[Reply]]

# What the rules always answer, model or not: the person's own yes/no (only they confirm),
# asking for a human, and linking WhatsApp (a one-time code the model must not handle).
_RULES_ONLY = frozenset({Intent.YES, Intent.NO, Intent.HUMAN, Intent.WHATSAPP_OPT_IN})
# The intents whose tools may quote (a plan change's preview too).
_QUOTING_INTENTS = frozenset(tool.intent for tool in tools.TOOLS.values() if tool.moves_money)
# Tool calls one turn may make (each is RPCs to the services); more are refused.
_CALLS_PER_TURN = 6
# The longest answer in words a model may give, in characters; longer is a bad answer.
_MAX_WORDS_CHARS = 2000

SYSTEM_PROMPT = (
    "You are the billing assistant of a SaaS company, talking with one verified customer. "
    "Use the tools for every fact: their plan, invoices, charges, plans on sale. The tools "
    "always act for this customer; you cannot look up or act for anyone else. Never state "
    "an amount, date, duration, link or policy (refund windows, caps, guarantees) that a tool "
    "did not return in this conversation turn. Tools that move money only quote: relay the "
    "quote and tell the customer to reply yes to confirm it. You cannot confirm for them, and "
    "nothing is done until they do: never say a refund, cancellation, plan change, pause or "
    "payment has happened. Answer briefly, in plain text."
)
# What a refused tool call tells the model.
_NO_SUCH_TOOL = (
    "No such tool. Only the customer can confirm a quote, by replying yes in their own chat."
)
_NAMES_SOMEONE = (
    "Refused: tools act only for the verified customer of this conversation; arguments "
    "cannot name a customer, contact or email."
)
_ONE_QUOTE = "Refused: one quote per turn; relay the quote you already have."


def model_of(settings: EdgeSettings) -> ChatModel | None:
    """The configured model, or None: the rules answer every turn."""
    if not settings.llm_base_url or not settings.llm_model:
        return None
    return ChatModel(
        settings.llm_base_url, settings.llm_model, settings.llm_api_key.get_secret_value()
    )


def takes(settings: EdgeSettings, request: Request, intent: Intent) -> bool:
    """Whether the model answers this turn: LLM mode on, a chat message (not a tool call, a
    quote answer or WhatsApp) and not one of the rules' own intents."""
    return (
        model_of(settings) is not None
        and request.channel == "chat"
        and request.parsed is None
        and request.quote_answer is None
        and intent not in _RULES_ONLY
    )


def tool_definitions() -> list[dict[str, Any]]:
    """The ``/v1/tools`` tools in the chat-completions form."""
    return [
        {
            "type": "function",
            "function": {
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.definition()["input_schema"],
            },
        }
        for tool in tools.TOOLS.values()
    ]


@dataclass
class _Turn:
    """What the model's tool calls did in one turn."""

    outcomes: list[tuple[tools.Tool, Reply]] = field(default_factory=list)
    # Tool results as the model saw them: the evidence its words are checked against.
    evidence: list[str] = field(default_factory=list)
    # Why the model's words cannot be trusted this turn (a refused call), if any.
    refusals: list[str] = field(default_factory=list)

    @property
    def quoted(self) -> bool:
        return any(reply.status == "needs_confirmation" for _, reply in self.outcomes)


async def answer(
    deps: TurnDeps,
    context: Context,
    text: str,
    run_tool: RunTool,
    rules: RulesAnswer,
) -> Reply:
    """The model's grounded answer to ``text``, or a grounded replacement."""
    model = model_of(deps.settings)
    assert model is not None  # callers ask ``takes`` first
    turn = _Turn()
    started = time.perf_counter()
    try:
        history = await _history(deps, context)
        words = await _converse(deps.settings, model, history, text, run_tool, context, turn)
    except ModelFailed as failure:
        metrics.LLM_TURN_SECONDS.record(time.perf_counter() - started)
        logger.info("model failed; the rules answer", extra={"reason": str(failure)})
        metrics.LLM_TURNS.add(1, {"outcome": "fallback"})
        metrics.LLM_FALLBACKS.add(1, {"reason": metrics.failure_kind(str(failure))})
        return await _replacement(turn, rules)
    metrics.LLM_TURN_SECONDS.record(time.perf_counter() - started)
    problems = grounding.findings(words, grounding.Evidence.of(turn.evidence))
    if problems or turn.refusals:
        kinds = sorted({p.kind for p in problems} | set(turn.refusals))
        logger.info(
            "model reply replaced",
            extra={
                "findings": sorted({p.kind for p in problems}),
                "refusals": sorted(set(turn.refusals)),
            },
        )
        metrics.LLM_TURNS.add(1, {"outcome": "replaced"})
        for kind in kinds:
            metrics.LLM_REPLACEMENTS.add(1, {"kind": kind})
        return await _replacement(turn, rules)
    metrics.LLM_TURNS.add(1, {"outcome": "model"})
    return _combined(turn, words)


async def _history(deps: TurnDeps, context: Context) -> list[dict[str, Any]]:
    """The conversation's last lines before this turn's, as chat messages: the bot's and the
    verified visitor's (a line typed before verification could be anyone's)."""
    wanted = deps.settings.llm_history_lines
    if wanted == 0:
        return []
    async with deps.pool.acquire() as connection:
        lines = await storage.recent_messages(
            connection, context.workspace_id, context.conversation_id, wanted + 1
        )
    messages = []
    for line in lines[:-1]:  # the last is this turn's, stored before the answer
        if line.author == "bot":
            messages.append({"role": "assistant", "content": line.text})
        elif line.verified is not False:
            messages.append({"role": "user", "content": line.text})
    return messages


async def _converse(
    settings: EdgeSettings,
    model: ChatModel,
    history: list[dict[str, Any]],
    text: str,
    run_tool: RunTool,
    context: Context,
    turn: _Turn,
) -> str:
    """Rounds of model calls and tool runs until the model answers in words."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.llm_timeout_seconds
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        *history,
        {"role": "user", "content": text},
    ]
    definitions = tool_definitions()
    for _ in range(settings.llm_max_rounds):
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise ModelFailed("timeout")
        said = await _complete(model, messages, definitions, remaining)
        if not said.tool_calls:
            if not said.content or len(said.content) > _MAX_WORDS_CHARS:
                raise ModelFailed("no usable answer")
            return said.content
        messages.append(said.as_message())
        for call in said.tool_calls:
            if len(turn.evidence) >= _CALLS_PER_TURN:
                result: dict[str, Any] = {"status": "refused", "message": "too many calls"}
                turn.refusals.append("too_many_calls")
            else:
                result = await _run(call, context, run_tool, turn)
            content = json.dumps(result, default=str)
            turn.evidence.append(content)
            messages.append({"role": "tool", "tool_call_id": call.call_id, "content": content})
    raise ModelFailed("no answer within the rounds")


async def _complete(
    model: ChatModel,
    messages: list[dict[str, Any]],
    definitions: list[dict[str, Any]],
    timeout_seconds: float,
) -> ModelTurn:
    """One model call, counted by its result and timed."""
    started = time.perf_counter()
    try:
        said = await model.complete(messages, definitions, timeout_seconds)
    except ModelFailed as failure:
        metrics.LLM_CALLS.add(1, {"result": metrics.failure_kind(str(failure))})
        raise
    finally:
        metrics.LLM_CALL_SECONDS.record(time.perf_counter() - started)
    metrics.LLM_CALLS.add(1, {"result": "ok"})
    return said


async def _run(call: ToolCall, context: Context, run_tool: RunTool, turn: _Turn) -> dict[str, Any]:
    """One tool call for the turn's visitor, or its refusal."""
    tool = tools.TOOLS.get(call.name)
    if tool is None:
        turn.refusals.append("unknown_tool")
        return {"status": "refused", "message": _NO_SUCH_TOOL}
    if call.arguments is None:
        turn.refusals.append("bad_arguments")
        return {"status": "refused", "message": "arguments must be a JSON object"}
    try:
        parsed = tools.to_parsed(
            tool, call.arguments, context.now.astimezone(ZoneInfo(context.zone))
        )
    except tools.ToolArgumentError as problem:
        turn.refusals.append("bad_arguments")
        return {"status": "refused", "message": _NAMES_SOMEONE, "fields": problem.fields}
    if tool.intent in _QUOTING_INTENTS and turn.quoted:
        turn.refusals.append("second_quote")
        return {"status": "refused", "message": _ONE_QUOTE}
    try:
        reply = await run_tool(parsed)
    except NotFound as missing:
        reply = Reply(replies.not_found(str(missing)), status="not_found")
    turn.outcomes.append((tool, reply))
    result: dict[str, Any] = {"status": reply.status, "message": reply.text, "data": reply.data}
    if reply.status == "needs_confirmation":
        result["next_step"] = "Relay these terms; the customer confirms by replying yes."
    return result


async def _replacement(turn: _Turn, rules: RulesAnswer) -> Reply:
    """The tools' own replies when any ran, else the rules' answer."""
    if turn.outcomes:
        return _combined(turn, "")
    return await rules()


def _combined(turn: _Turn, words: str) -> Reply:
    """The model's words (or, with none, the tools' replies), with the tools' buttons and
    status. A quote's and a hand-off's own words always go out: the person says yes to
    exactly what the edge quoted, never to a model's retelling, and learns that a human has
    their case."""
    replies_ = [reply for _, reply in turn.outcomes]
    if words:
        kept = [r.text for r in replies_ if r.status == "needs_confirmation" or r.escalated]
        text = "\n\n".join([words, *(k for k in kept if k not in words)])
    else:
        text = "\n\n".join(r.text for r in replies_)
    escalated = next((r for r in replies_ if r.escalated), None)
    status = "ok"
    for wanted in ("needs_confirmation", "escalated", "denied", "not_found"):
        if any(r.status == wanted for r in replies_):
            status = wanted
            break
    data: dict[str, Any] = {}
    for reply in replies_:
        data.update(reply.data)
    return Reply(
        text,
        intent=(turn.outcomes[0][1].intent or turn.outcomes[0][0].intent.value)
        if turn.outcomes
        else "",
        actions=[action for reply in replies_ for action in reply.actions],
        escalated=escalated is not None,
        escalation_id=escalated.escalation_id if escalated is not None else "",
        data=data,
        status=status,
    )
