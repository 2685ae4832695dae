"""How well the rules understand customers: a labeled set of everyday phrasings
(paraphrases, typos, negations, mixed case, amounts inside sentences, plan names that are in
no fixed list) read by ``intents.parse``, with the accuracy per intent printed and written to
``bench/results/understanding.md``.

The first 356 phrasings were written before the rules they measure; two later batches, also
written before being run (76 and 64 phrasings), were read right 92% and 83% of the time
before the rules were improved on them; 18 bare plan aliases ("the cheaper one", "the next
tier up", nothing else said) were added with the rule that reads them
it (one of the 18 was read right before). Expect less than the table on phrasings nobody
has tried yet: add them here when found."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from edge.domain import intents

_HERE = Path(__file__).parent
_SET = _HERE / "utterances.jsonl"
_REPORT = _HERE.parent.parent / "bench" / "results" / "understanding.md"
NOW = datetime(2026, 5, 15, 12, 0, tzinfo=UTC)
OVERALL_FLOOR = 0.97
PER_INTENT_FLOOR = 0.90


@dataclass(frozen=True)
class Utterance:
    """One labeled message: what a customer typed and what they meant."""

    text: str
    intent: str
    plan: str = ""
    amount: tuple[str, str] | None = None


def _labeled() -> list[Utterance]:
    rows: list[Utterance] = []
    for line in _SET.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        amount = row.get("amount")
        rows.append(
            Utterance(
                text=row["text"],
                intent=row["intent"],
                plan=row.get("plan", ""),
                amount=(amount[0], amount[1]) if amount else None,
            )
        )
    return rows


def _understood(utterance: Utterance) -> bool:
    parsed = intents.parse(utterance.text, NOW)
    if parsed.intent.value != utterance.intent:
        return False
    if utterance.plan and parsed.plan != utterance.plan:
        return False
    if utterance.amount is not None:
        major, currency = utterance.amount
        return parsed.amount == intents.MoneyAmount(Decimal(major), currency)
    return True


def _table(totals: Counter[str], right: Counter[str], misses: list[tuple[str, str]]) -> str:
    lines = [
        "# Understanding without a model: accuracy on the labeled set",
        "",
        f"`tests/understanding/utterances.jsonl`, {sum(totals.values())} utterances "
        "(`tests/understanding/test_accuracy.py` writes this file). Later batches written "
        "before being run scored 92% and 83% before the rules were improved on them: expect "
        "less on phrasings nobody has tried yet.",
        "",
        "| intent | utterances | understood | accuracy |",
        "| --- | ---: | ---: | ---: |",
    ]
    for intent in sorted(totals):
        share = right[intent] / totals[intent]
        lines.append(f"| {intent} | {totals[intent]} | {right[intent]} | {share:.1%} |")
    overall = sum(right.values()) / sum(totals.values())
    lines.append(
        f"| **overall** | {sum(totals.values())} | {sum(right.values())} | {overall:.1%} |"
    )
    if misses:
        lines += ["", "Misread:", ""]
        lines += [f"- `{text}` (labeled {intent})" for text, intent in misses]
    return "\n".join(lines) + "\n"


def test_the_labeled_set_is_large_and_covers_every_intent() -> None:
    rows = _labeled()
    assert len(rows) >= 300
    labels = {row.intent for row in rows}
    assert labels == {intent.value for intent in intents.Intent}
    assert len({row.text for row in rows}) == len(rows), "duplicate utterances"


def test_accuracy_per_intent(capsys: pytest.CaptureFixture[str]) -> None:
    totals: Counter[str] = Counter()
    right: Counter[str] = Counter()
    misses: list[tuple[str, str]] = []
    for utterance in _labeled():
        totals[utterance.intent] += 1
        if _understood(utterance):
            right[utterance.intent] += 1
        else:
            misses.append((utterance.text, utterance.intent))
    report = _table(totals, right, misses)
    _REPORT.write_text(report)
    with capsys.disabled():
        print("\n" + report)
    overall = sum(right.values()) / sum(totals.values())
    weakest = {i: right[i] / totals[i] for i in totals if right[i] / totals[i] < PER_INTENT_FLOOR}
    assert overall >= OVERALL_FLOOR, report
    assert not weakest, report
