"""Which plan of the live catalog a visitor means: the plan names come from the workspace's
own catalog (never a fixed list), so "upgrade to Basalt" finds Basalt where Basalt is sold,
and a typo ("Grwoth") still finds Growth."""

from __future__ import annotations

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
