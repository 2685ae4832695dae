"""LLM mode end to end: the edge with ``LLM_BASE_URL``/``LLM_MODEL``/``LLM_API_KEY`` set to the
scripted model emulator, every service and the Stripe emulator running. The model answers
chat turns through the ``/v1/tools`` tools; its words go out only when grounded in that
turn's tool results; it never confirms money; it acts only for the verified visitor; the rules
answer when it fails."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge import replies, tools
from model_emulator import app as model_app
from tests.e2e.conftest import Stack, running_stack

# The edge waits this long for the model in these tests (8 s by default).
MODEL_TIMEOUT_SECONDS = 1.5
# The rules' answer to a status question (tests/e2e/test_flows.py).
RULES_STATUS = "You're on the Growth plan ($49/month)."


@pytest.fixture
async def model() -> AsyncIterator[model_app.RunningEmulator]:
    running = await model_app.start()
    yield running
    await running.close()


@pytest.fixture
async def llm_stack(database_url: str, model: model_app.RunningEmulator) -> AsyncIterator[Stack]:
    async with running_stack(
        database_url,
        llm_base_url=model.base_url,
        llm_model="scripted-model",
        llm_api_key=model_app.API_KEY,
        llm_timeout_seconds=MODEL_TIMEOUT_SECONDS,
    ) as running:
        yield running


async def _script(
    stack: Stack, model: model_app.RunningEmulator, steps: list[dict[str, Any]]
) -> None:
    async with stack.http.post(f"{model.url}/_emulator/script", json={"steps": steps}) as answer:
        assert answer.status == 200
    model.state.requests.clear()


def _calls(*calls: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments} for name, arguments in calls]}


def _tool_results(model: model_app.RunningEmulator) -> list[str]:
    """What the edge told the model its tool calls returned, over the whole turn."""
    last = model.state.requests[-1]["messages"]
    return [str(message["content"]) for message in last if message["role"] == "tool"]


async def test_the_model_answers_through_the_tools(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    words = "You're on the Growth plan, and you pay $49 a month."
    await _script(llm_stack, model, [_calls(("get_subscription", {})), {"content": words}])
    answer = await llm_stack.turn("alice", "how much am I paying these days?", conversation="ok")
    assert answer["reply"] == words, answer
    first, second = model.state.requests
    # The same tools as /v1/tools, in the chat-completions form.
    assert [t["function"]["name"] for t in first["tools"]] == list(tools.TOOLS)
    assert first["model"] == "scripted-model"
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert "how much am I paying" in first["messages"][1]["content"]
    (result,) = _tool_results(model)
    assert "Growth" in result and "$49" in result
    assert second["messages"][2]["tool_calls"][0]["function"]["name"] == "get_subscription"
    # The next turn carries the conversation so far.
    await _script(llm_stack, model, [{"content": "Anything else?"}])
    await llm_stack.turn("alice", "thanks a lot", conversation="ok")
    (third,) = model.state.requests
    assert [m["role"] for m in third["messages"]] == ["system", "user", "assistant", "user"]
    assert third["messages"][2]["content"] == words


async def test_a_quote_by_the_model_runs_only_on_the_persons_yes(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    await _script(
        llm_stack,
        model,
        [
            _calls(("request_refund", {})),
            {"content": "I can refund your last charge of $49. Reply yes to confirm."},
        ],
    )
    quoted = await llm_stack.turn("alice", "I'd like my money back please", conversation="q")
    assert quoted["reply"].startswith("I can refund your last charge of $49."), quoted
    # The edge's own quote goes out with it: the person says yes to exactly those terms.
    assert "Shall I go ahead?" in quoted["reply"], quoted
    assert any(action["type"] == "confirm" for action in quoted["actions"])
    assert await llm_stack.refunds() == []
    # The person's own "yes" is the rules', never the model's.
    done = await llm_stack.turn("alice", "yes", conversation="q")
    assert "refunded $49" in done["reply"], done
    assert [r["amount"] for r in await llm_stack.refunds()] == [4900]
    assert len(model.state.requests) == 2  # the model was not asked about the "yes"


async def test_a_model_that_tries_to_confirm_moves_no_money(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    # A confirm-like tool, then a claim that it is done.
    await _script(
        llm_stack,
        model,
        [
            _calls(("find_duplicate_charges", {})),
            _calls(("confirm_refund", {"quote_id": "anything"})),
            _calls(("request_refund", {})),
            {"content": "Done! I've refunded your duplicate charge of $19."},
        ],
    )
    answer = await llm_stack.turn("bob", "you took my money twice", conversation="dup")
    assert "I've refunded" not in answer["reply"] and "Done!" not in answer["reply"], answer
    # Replaced by the tools' own words: the duplicate's quote, waiting for the person.
    assert "twice" in answer["reply"] and "Shall I go ahead?" in answer["reply"], answer
    results = _tool_results(model)
    assert "Only the customer can confirm" in results[1]
    assert "one quote per turn" in results[2]
    assert await llm_stack.refunds() == []

    # Only a claim, no tool that confirms: still replaced, still nothing moved.
    await _script(
        llm_stack,
        model,
        [
            _calls(("request_refund", {})),
            {"content": "All sorted: your refund of $49 has been processed."},
        ],
    )
    claimed = await llm_stack.turn("alice", "refund my last payment", conversation="claim")
    assert "processed" not in claimed["reply"] and "All sorted" not in claimed["reply"], claimed
    assert "Shall I go ahead?" in claimed["reply"], claimed
    assert await llm_stack.refunds() == []


async def test_a_model_that_invents_a_refund_policy_is_replaced(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    # No tool at all: the rules answer instead.
    await _script(
        llm_stack,
        model,
        [{"content": "Our refund policy: any charge is refundable within 60 days."}],
    )
    answer = await llm_stack.turn("alice", "What's my subscription status?", conversation="p1")
    assert "60 days" not in answer["reply"] and "policy" not in answer["reply"], answer
    assert RULES_STATUS in answer["reply"], answer
    assert len(model.state.requests) == 1  # the model was asked, and overruled
    # After a tool: the tool's own words instead.
    await _script(
        llm_stack,
        model,
        [
            _calls(("get_subscription", {})),
            {"content": "You're on Growth at $49. You have a money-back guarantee, too."},
        ],
    )
    after_tool = await llm_stack.turn("alice", "am I covered?", conversation="p2")
    assert "guarantee" not in after_tool["reply"], after_tool
    assert RULES_STATUS in after_tool["reply"], after_tool
    assert len(model.state.requests) == 2


async def test_a_model_that_acts_for_another_customer_is_refused(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    bob = llm_stack.customer("bob@example.com")
    await _script(
        llm_stack,
        model,
        [
            _calls(
                ("get_subscription", {"customer_id": bob["customer"]}),
                ("list_invoices", {"email": "bob@example.com"}),
                ("request_refund", {"charge_id": bob["charges"][-1]}),
            ),
            {"content": "Bob is on the Starter plan at $19 a month; I've queued his refund."},
        ],
    )
    answer = await llm_stack.turn("alice", "what does bob@example.com pay?", conversation="x")
    assert "Starter" not in answer["reply"] and "$19" not in answer["reply"], answer
    assert "Bob" not in answer["reply"], answer
    assert not any(action["type"] == "confirm" for action in answer["actions"]), answer
    results = _tool_results(model)
    assert "Refused" in results[0] and "Refused" in results[1]
    assert "couldn't find that charge" in results[2]
    # Nothing of bob's reached the model either.
    told = "\n".join(results)
    assert bob["customer"] not in told and "Starter" not in told and "$19" not in told
    assert await llm_stack.refunds() == []


async def test_a_failing_slow_or_garbled_model_gets_the_rules_answer(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    steps: list[dict[str, Any]] = [
        {"http_status": 500},
        {"raw": {"choices": []}},
        {"content": ""},
        {"delay_seconds": 5, "content": "too late"},
    ]
    for number, step in enumerate(steps):
        await _script(llm_stack, model, [step])
        started = time.monotonic()
        answer = await llm_stack.turn(
            "alice", "What's my subscription status?", conversation=f"f{number}"
        )
        assert RULES_STATUS in answer["reply"], (step, answer)
        assert "too late" not in answer["reply"]
        assert time.monotonic() - started < MODEL_TIMEOUT_SECONDS + 2.5, step
        assert len(model.state.requests) == 1


async def test_a_handoff_by_the_model_says_so_in_the_edges_words(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    await _script(
        llm_stack,
        model,
        [_calls(("handoff_to_human", {"note": "wants to talk"})), {"content": "Done, hang on."}],
    )
    answer = await llm_stack.turn("alice", "this is too confusing for me", conversation="h")
    assert answer["escalated"] is True and answer["escalation_id"], answer
    assert answer["reply"].startswith("Done, hang on.\n\n"), answer
    assert replies.HUMAN_ASKED in answer["reply"], answer
    assert any(e.escalation_id == answer["escalation_id"] for e in await llm_stack.escalations())


async def _metrics(stack: Stack) -> dict[tuple[str, str], float]:
    """The edge's LLM samples from its /metrics: (sample name, its one label value) -> value."""
    async with stack.http.get(f"{stack.edge_url}/metrics") as response:
        assert response.status == 200
        text = await response.text()
    samples: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("askvault_edge_llm_"):
            continue
        for sample in family.samples:
            # The exporter adds the instrumentation scope (otel_scope_*) to every sample.
            label = next(
                (v for k, v in sample.labels.items() if not k.startswith("otel_scope_")), ""
            )
            samples[sample.name, label] = sample.value
    return samples


def _delta(
    after: dict[tuple[str, str], float], before: dict[tuple[str, str], float], key: tuple[str, str]
) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_llm_turns_are_counted_on_the_edges_metrics(
    llm_stack: Stack, model: model_app.RunningEmulator
) -> None:
    before = await _metrics(llm_stack)
    # Grounded: two model calls, the model's words go out.
    await _script(
        llm_stack,
        model,
        [_calls(("get_subscription", {})), {"content": "You're on Growth at $49 a month."}],
    )
    await llm_stack.turn("alice", "how much do I pay?", conversation="m1")
    # Ungrounded: replaced.
    await _script(llm_stack, model, [{"content": "Refunds are possible within 60 days."}])
    await llm_stack.turn("alice", "What's my subscription status?", conversation="m2")
    # Failing: the rules answer.
    await _script(llm_stack, model, [{"http_status": 500}])
    await llm_stack.turn("alice", "What's my subscription status?", conversation="m3")
    after = await _metrics(llm_stack)
    assert _delta(after, before, ("askvault_edge_llm_turns_total", "model")) == 1
    assert _delta(after, before, ("askvault_edge_llm_turns_total", "replaced")) == 1
    assert _delta(after, before, ("askvault_edge_llm_turns_total", "fallback")) == 1
    assert _delta(after, before, ("askvault_edge_llm_fallbacks_total", "http_error")) == 1
    assert _delta(after, before, ("askvault_edge_llm_calls_total", "ok")) == 3
    assert _delta(after, before, ("askvault_edge_llm_calls_total", "http_error")) == 1
    replaced = sum(
        value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0] == "askvault_edge_llm_replacements_total"
    )
    assert replaced >= 1, after
    assert _delta(after, before, ("askvault_edge_llm_call_duration_seconds_count", "")) == 4
    assert _delta(after, before, ("askvault_edge_llm_turn_duration_seconds_count", "")) == 3
