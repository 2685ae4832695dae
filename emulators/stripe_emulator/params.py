"""Typed readers over decoded request parameters, raising Stripe's validation errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stripe_emulator import errors

Params = dict[str, Any]


def text(params: Params, name: str, *, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None:
        if required:
            raise errors.missing_param(name)
        return None
    if not isinstance(value, str):
        raise errors.invalid_param(name, f"Invalid string: {name}", "parameter_invalid_string")
    return value


def required_text(params: Params, name: str) -> str:
    value = text(params, name, required=True)
    assert value is not None
    return value


def integer(params: Params, name: str, *, required: bool = False) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise errors.missing_param(name)
        return None
    try:
        return int(str(value))
    except ValueError:
        raise errors.invalid_param(
            name, f"Invalid integer: {value}", "parameter_invalid_integer"
        ) from None


def boolean(params: Params, name: str, default: bool = False) -> bool:
    value = params.get(name)
    if value is None:
        return default
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise errors.invalid_param(name, f"Invalid boolean: {value}")


def mapping(params: Params, name: str) -> Params:
    value = params.get(name)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise errors.invalid_param(name, f"Invalid hash: {name}")
    return value


def sequence(params: Params, name: str) -> list[Any]:
    value = params.get(name)
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        # A list sent with sparse indices decodes as a dict; keep the order of the indices.
        return [
            value[key] for key in sorted(value, key=lambda key: int(key) if key.isdigit() else 0)
        ]
    if not isinstance(value, list):
        return [value]
    return value


def metadata(params: Params, current: dict[str, str] | None = None) -> dict[str, str]:
    """Merge metadata as Stripe does: keys set to "" are removed, "" for the whole hash clears."""
    merged = dict(current or {})
    value = params.get("metadata")
    if value == "":
        return {}
    if value is None:
        return merged
    if not isinstance(value, dict):
        raise errors.invalid_param("metadata", "Invalid hash: metadata")
    for key, item in value.items():
        if item == "":
            merged.pop(key, None)
        else:
            merged[key] = str(item)
    return merged


@dataclass(frozen=True)
class CreatedFilter:
    """Stripe's range filter on a timestamp, `created=ts` or `created[gt|gte|lt|lte]=ts`,
    read once per request rather than once per object it is matched against."""

    gt: int | None = None
    gte: int | None = None
    lt: int | None = None
    lte: int | None = None

    @property
    def lowest(self) -> int | None:
        """The earliest timestamp that can match (None: no lower bound)."""
        bounds = [
            bound
            for bound in (self.gte, None if self.gt is None else self.gt + 1)
            if bound is not None
        ]
        return max(bounds) if bounds else None

    def matches(self, created: int) -> bool:
        return (
            (self.gt is None or created > self.gt)
            and (self.gte is None or created >= self.gte)
            and (self.lt is None or created < self.lt)
            and (self.lte is None or created <= self.lte)
        )


def created_filter(params: Params, name: str = "created") -> CreatedFilter:
    value = params.get(name)
    if value is None or value == "":
        return CreatedFilter()
    if isinstance(value, str):
        exact = int(value)
        return CreatedFilter(gte=exact, lte=exact)
    if not isinstance(value, dict):
        raise errors.invalid_param(name, f"Invalid {name} filter")
    bounds = {key: int(str(bound)) for key, bound in value.items()}
    return CreatedFilter(
        gt=bounds.get("gt"), gte=bounds.get("gte"), lt=bounds.get("lt"), lte=bounds.get("lte")
    )


def created_filter_matches(params: Params, created: int, name: str = "created") -> bool:
    """Stripe's range filters: `created=ts` or `created[gt|gte|lt|lte]=ts`."""
    return created_filter(params, name).matches(created)
