"""The edge's metrics, OpenTelemetry instruments like every service's (``runtime.telemetry``
collects them; the edge serves them at ``/metrics``): HTTP requests and those shed for
overload, turns, and LLM mode.

LLM turns are counted by what became of them: the model's words went out (``model``), they
were replaced by grounded ones (``replaced``: a finding of ``domain.grounding`` or a refused
tool call, by kind), or the rules answered because the model failed (``fallback``, by
reason). Each model call is counted by its result and timed, and so is the model's part of a
turn. Every label takes a value from a short fixed list.

The Prometheus names are those of the edge's former prometheus_client registry (the alert
rules and dashboards of deploy/components/monitoring use them): the exporter turns
``askvault.edge.turns`` into ``askvault_edge_turns_total`` and a histogram in seconds
``askvault.edge.http.duration`` into ``askvault_edge_http_duration_seconds_*``."""

from __future__ import annotations

from opentelemetry import metrics

_meter = metrics.get_meter("askvault.edge")

# prometheus_client's default buckets, which the edge's HTTP histogram had.
_HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)

HTTP_REQUESTS = _meter.create_counter(
    "askvault.edge.http.requests", description="HTTP requests by route and status"
)
HTTP_DURATION = _meter.create_histogram(
    "askvault.edge.http.duration",
    unit="s",
    description="HTTP handling time by route",
    explicit_bucket_boundaries_advisory=_HTTP_BUCKETS,
)
HTTP_SHED = _meter.create_counter(
    "askvault.edge.http.shed",
    description=(
        "Requests refused for overload (503 OVERLOADED), by reason: queue_full, wait_timeout,"
        " dependency (a service answered OVERLOADED)"
    ),
)
TURNS = _meter.create_counter("askvault.edge.turns", description="Chat turns by intent and outcome")
LLM_TURNS = _meter.create_counter(
    "askvault.edge.llm.turns",
    description="Chat turns given to the model, by outcome: model, replaced, fallback",
)
LLM_CALLS = _meter.create_counter(
    "askvault.edge.llm.calls",
    description=(
        "Chat-completion calls to the model, by result: ok, timeout, http_error, bad_answer, error"
    ),
)
LLM_FALLBACKS = _meter.create_counter(
    "askvault.edge.llm.fallbacks",
    description="Turns the rules answered because the model failed, by reason",
)
LLM_REPLACEMENTS = _meter.create_counter(
    "askvault.edge.llm.replacements",
    description="Model replies replaced by grounded ones, by finding or refusal kind",
)
LLM_CALL_SECONDS = _meter.create_histogram(
    "askvault.edge.llm.call.duration",
    unit="s",
    description="Time of one chat-completion call to the model",
    explicit_bucket_boundaries_advisory=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0),
)
LLM_TURN_SECONDS = _meter.create_histogram(
    "askvault.edge.llm.turn.duration",
    unit="s",
    description="Time of the model's part of a turn (every round and tool run)",
    explicit_bucket_boundaries_advisory=(0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0),
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
