"""Which plan of the live catalog a visitor means: the plan names come from the workspace's
own catalog (never a fixed list), so "upgrade to Basalt" finds Basalt where Basalt is sold,
and a typo ("Grwoth") still finds Growth."""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import fuzz, process

from edge.domain import spelling

# How alike a typed name must be to a catalog name to be taken for it (0-100).
SIMILARITY_FLOOR = 80


@dataclass(frozen=True)
class PlanNames:
    """What a catalog plan can be called: its name, its tier and its price id."""

    name: str
    tier: str = ""
    price_id: str = ""

    def callable_by(self) -> tuple[str, ...]:
        """The lower-case names it answers to."""
        return tuple(key.lower() for key in (self.name, self.tier, self.price_id) if key)


def choose(asked: str, text: str, catalog: Sequence[PlanNames]) -> int | None:
    """The index in ``catalog`` of the plan meant: the one ``asked`` names exactly, else the
    one the text moves to ("from Starter to Team Plus": Team Plus), else (nothing asked) the
    last one named, else the one ``asked`` spells nearly (``SIMILARITY_FLOOR``); None when
    none is meant."""
    asked = asked.strip().lower()
    for index, plan in enumerate(catalog):
        if asked and asked in plan.callable_by():
            return index
    lowered = " " + " ".join(spelling.tokens(text)) + " " if text else ""
    named: list[tuple[int, int]] = []  # (position in the text, index in the catalog)
    for index, plan in enumerate(catalog):
        for key in plan.callable_by():
            for match in re.finditer(rf"\b{re.escape(key)}\b", lowered):
                named.append((match.start(), index))
    named.sort()
    for position, index in named:
        if re.search(r"\b(to|into|onto|for|with)( the)? $", lowered[:position]):
            return index
    if named and not asked:
        return named[-1][1]
    if asked:
        names = [plan.name.lower() for plan in catalog]
        found = process.extractOne(asked, names, scorer=fuzz.ratio, score_cutoff=SIMILARITY_FLOOR)
        if found is not None:
            return int(found[2])
    return None


class Step(enum.Enum):
    """A plan named by where it stands from the visitor's own ("the cheaper one")."""

    DOWN = "down"
    UP = "up"
    CHEAPEST = "cheapest"
    DEAREST = "dearest"


# Checked in this order: "the cheapest" is not "cheaper", "the next tier up" is not "next".
_STEPS: tuple[tuple[Step, re.Pattern[str]], ...] = (
    (Step.CHEAPEST, re.compile(r"\b(cheapest|lowest|smallest|least expensive|basic one)\b")),
    (
        Step.DEAREST,
        re.compile(r"\b(most expensive|priciest|highest|biggest|top tier|top plan|best plan)\b"),
    ),
    (
        Step.DOWN,
        re.compile(
            r"\b(cheaper|less expensive|smaller|lower|(next|one) (tier|plan|level) down"
            r"|(tier|plan|level) (down|below|lower)|one below|step down)\b"
        ),
    ),
    (
        Step.UP,
        re.compile(
            r"\b(more expensive|bigger|higher|(next|one) (tier|plan|level)( up)?"
            r"|(tier|plan|level) (up|above|higher)|one above|step up)\b"
        ),
    ),
)


def step_named(text: str) -> Step | None:
    """The relative plan the text names, if any ("move me to the next tier up": UP)."""
    lowered = " ".join(spelling.tokens(text))
    for step, pattern in _STEPS:
        if pattern.search(lowered):
            return step
    return None


def step_from(step: Step, current_amount: float, amounts: Sequence[float]) -> int | None:
    """The index in ``amounts`` (the offered plans' prices per month, in the visitor's
    currency) of the plan ``step`` names from a plan costing ``current_amount``: one step
    down is the dearest plan cheaper than it, one step up the cheapest plan dearer; None when
    there is none that way."""
    if step is Step.DOWN:
        below = [(amount, index) for index, amount in enumerate(amounts) if amount < current_amount]
        return max(below)[1] if below else None
    if step is Step.UP:
        above = [(amount, index) for index, amount in enumerate(amounts) if amount > current_amount]
        return min(above)[1] if above else None
    if not amounts:
        return None
    ordered = sorted((amount, index) for index, amount in enumerate(amounts))
    return ordered[0][1] if step is Step.CHEAPEST else ordered[-1][1]
