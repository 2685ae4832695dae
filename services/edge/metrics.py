"""The edge's Prometheus registry (served at ``/metrics``) and the metrics of LLM mode.

LLM turns are counted by what became of them: the model's words went out (``model``), they
were replaced by grounded ones (``replaced``: a finding of ``domain.grounding`` or a refused
tool call, by kind), or the rules answered because the model failed (``fallback``, by
reason). Each model call is counted by its result and timed, and so is the model's part of a
turn. Every label takes a value from a short fixed list."""

from __future__ import annotations

import prometheus_client

REGISTRY = prometheus_client.CollectorRegistry()

LLM_TURNS = prometheus_client.Counter(
    "askvault_edge_llm_turns",
    "Chat turns given to the model, by outcome: model, replaced, fallback",
    ["outcome"],
    registry=REGISTRY,
)
LLM_CALLS = prometheus_client.Counter(
    "askvault_edge_llm_calls",
    "Chat-completion calls to the model, by result: ok, timeout, http_error, bad_answer, error",
    ["result"],
    registry=REGISTRY,
)
LLM_FALLBACKS = prometheus_client.Counter(
    "askvault_edge_llm_fallbacks",
    "Turns the rules answered because the model failed, by reason",
    ["reason"],
    registry=REGISTRY,
)
LLM_REPLACEMENTS = prometheus_client.Counter(
    "askvault_edge_llm_replacements",
    "Model replies replaced by grounded ones, by finding or refusal kind",
    ["kind"],
    registry=REGISTRY,
)
LLM_CALL_SECONDS = prometheus_client.Histogram(
    "askvault_edge_llm_call_duration_seconds",
    "Time of one chat-completion call to the model",
    registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
)
LLM_TURN_SECONDS = prometheus_client.Histogram(
    "askvault_edge_llm_turn_duration_seconds",
    "Time of the model's part of a turn (every round and tool run)",
    registry=REGISTRY,
    buckets=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
)


def failure_kind(reason: str) -> str:
    """A model failure's reason (``ModelFailed``'s text) as one of a few label values."""
    lowered = reason.lower()
    if "timeout" in lowered:
        return "timeout"
    if lowered.startswith("http "):
        return "http_error"
    if lowered in {"no usable answer", "no answer within the rounds"} or "not " in lowered:
        return "bad_answer"
    return "error"
