"""Decoding of Stripe's bracketed form encoding (`items[0][price]=...`, `expand[]=...`)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def split_key(key: str) -> list[str]:
    """`items[0][price]` -> `["items", "0", "price"]`; `expand[]` -> `["expand", ""]`."""
    head, bracket, rest = key.partition("[")
    if not bracket:
        return [key]
    return [head, *_SEGMENT.findall(bracket + rest)]


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Build nested dicts and lists from form pairs, as Stripe's API reads them."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        segments = split_key(key)
        node = root
        for position, segment in enumerate(segments):
            last = position == len(segments) - 1
            if segment == "":
                # `expand[]=a&expand[]=b`: an unindexed list item, appended in order.
                segment = str(len(node))
            if last:
                node[segment] = value
            else:
                child = node.get(segment)
                if not isinstance(child, dict):
                    child = {}
                    node[segment] = child
                node = child
    converted = _listify(root)
    assert isinstance(converted, dict)
    return converted


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {key: _listify(value) for key, value in node.items()}
    if converted and all(key.isdigit() for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted
