"""Stripe-style list pages: newest first, ``limit``, ``starting_after``, ``ending_before``,
and the ``created`` filter (``created=N`` or ``created[gt|gte|lt|lte]=N``).

``list_page()`` is a whole list endpoint of one kind of object; the endpoints call it with
their URL and the parameters they filter by."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from localstripe.resources import List, store, try_convert_to_int

from ._errors import invalid, no_such


class Page(List):
    """One page of a list, its ``has_more`` decided by the caller."""

    def __init__(self, url: str, items: Sequence[Any], has_more: bool) -> None:
        super().__init__(url, limit=max(1, len(items)))
        self._list = list(items)
        self._has_more = has_more

    @property
    def has_more(self) -> bool:
        return self._has_more


def _limit(value: Any) -> int:
    if value is None:
        return 10
    limit = try_convert_to_int(value)
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise invalid(
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            code="parameter_invalid_integer",
            param="limit",
        )
    return limit


def paginate(
    url: str,
    items: Sequence[Any],
    object_name: str,
    *,
    limit: Any = None,
    starting_after: Any = None,
    ending_before: Any = None,
) -> Page:
    """A page of ``items`` (already newest first), as Stripe's cursor pagination does it."""
    size = _limit(limit)
    if starting_after and ending_before:
        raise invalid(
            "You may only specify one of these parameters: starting_after, ending_before."
        )
    ids = [getattr(item, "id", None) for item in items]
    if starting_after:
        if starting_after not in ids:
            raise no_such(object_name, str(starting_after), "starting_after")
        start = ids.index(starting_after) + 1
        return Page(url, items[start : start + size], start + size < len(items))
    if ending_before:
        if ending_before not in ids:
            raise no_such(object_name, str(ending_before), "ending_before")
        end = ids.index(ending_before)
        start = max(0, end - size)
        return Page(url, items[start:end], start > 0)
    return Page(url, items[:size], len(items) > size)


def created_filter(created: Any) -> Callable[[Any], bool]:
    """A predicate for Stripe's ``created`` list parameter."""
    if created is None:
        return lambda obj: True
    if not isinstance(created, dict):
        exact = try_convert_to_int(created)
        if not isinstance(exact, int):
            raise invalid(f"Invalid integer: {created}", param="created")
        return lambda obj: obj.created == exact
    bounds: dict[str, int] = {}
    for op, raw in created.items():
        value = try_convert_to_int(raw)
        if op not in ("gt", "gte", "lt", "lte") or not isinstance(value, int):
            raise invalid(f"Invalid created[{op}]: {raw}", param=f"created[{op}]")
        bounds[op] = value

    def accept(obj: Any) -> bool:
        stamp = obj.created
        return (
            ("gt" not in bounds or stamp > bounds["gt"])
            and ("gte" not in bounds or stamp >= bounds["gte"])
            and ("lt" not in bounds or stamp < bounds["lt"])
            and ("lte" not in bounds or stamp <= bounds["lte"])
        )

    return accept


def stored(object_name: str, created: Any = None, **equal: Any) -> list[Any]:
    """Stored objects of one kind, newest first, passing the ``created`` filter and whose
    attributes equal the given values (a ``None`` value matches anything); only the current
    request's account's (``Stripe-Account``)."""
    from ._connect import visible

    accept = created_filter(created)
    items = [
        value
        for key, value in list(store.items())
        if key.startswith(object_name + ":")
        and accept(value)
        and visible(value)
        and all(want is None or getattr(value, name, None) == want for name, want in equal.items())
    ]
    items.reverse()  # the store keeps creation order; Stripe lists newest first
    return items


def list_page(
    object_name: str,
    url: str,
    params: dict[str, Any],
    *,
    filters: Sequence[str] = (),
    keep: Callable[[Any], bool] | None = None,
) -> Page:
    """``GET`` a list of stored objects of one kind, as Stripe answers it: the current
    account's only, newest first, filtered by ``created`` and by equality on ``filters``
    (the parameters the endpoint takes; any other is refused), and paginated.

    ``keep``: a further predicate an object must pass.
    """
    params = dict(params)
    paging = {name: params.pop(name, None) for name in ("limit", "starting_after", "ending_before")}
    created = params.pop("created", None)
    equal = {name: params.pop(name) for name in filters if name in params}
    unknown_params(params)
    items = stored(object_name, created, **equal)
    if keep is not None:
        items = [item for item in items if keep(item)]
    return paginate(url, items, object_name, **paging)


def unknown_params(params: dict[str, Any]) -> None:
    if params:
        name = sorted(params)[0]
        raise invalid(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)
