"""Stripe's shapes as the `stripe` library declares them, to check the stand-in's objects.

stripe-python's resource classes are generated from Stripe's OpenAPI spec (v1 and v2): a
field the spec requires and does not make nullable is annotated without ``Optional``, an
enum is a ``Literal`` (with ``str`` beside it when the spec leaves it open), an expandable
field a union of ``str`` and the object. ``shape_problems(obj, cls)`` lists what in ``obj``
does not fit: a field Stripe's object lacks, a required one missing or null, a value of
another type, a value outside a closed enum; nested objects of the class's own inner types
are checked the same way.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from stripe import ListObject, StripeObject

_NONE = type(None)


def annotations_of(cls: type) -> dict[str, Any]:
    """Every field ``cls`` (and its bases) declares, without class variables."""
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, hint in vars(klass).get("__annotations__", {}).items():
            if typing.get_origin(hint) is not typing.ClassVar and not name.startswith("_"):
                fields[name] = hint
    return fields


def _arms(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _accepts(arm: Any, value: Any) -> bool | None:
    """Whether ``value`` fits ``arm``; None when ``arm`` is a closed enum it misses."""
    origin = typing.get_origin(arm)
    if origin is typing.Literal:
        return value in typing.get_args(arm) or None
    if arm is bool:
        return isinstance(value, bool)
    if arm is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if arm is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if arm is str or getattr(arm, "__name__", "") == "StripeContext":  # a context is a string
        return isinstance(value, str)
    if origin in (list, typing.List):  # noqa: UP006 - the library's own spelling
        return isinstance(value, list)
    # Dicts, expanded objects (forward references), lists and inner classes.
    return isinstance(value, dict)


def _inner_class(arm: Any) -> type | None:
    if not isinstance(arm, type) or issubclass(arm, ListObject):
        return None
    if issubclass(arm, StripeObject) and arm.__name__ == "UntypedStripeObject":
        return None
    return arm if annotations_of(arm) else None


def shape_problems(obj: dict[str, Any], cls: type, where: str = "") -> list[str]:
    """What in ``obj`` does not fit Stripe's ``cls`` (empty when it all fits)."""
    where = where or str(obj.get("object") or cls.__name__)
    fields = annotations_of(cls)
    problems = [f"{where}.{name}: Stripe has no such field" for name in obj if name not in fields]
    for name, hint in fields.items():
        arms = _arms(hint)
        optional = _NONE in arms
        if name not in obj:
            if not optional:
                problems.append(f"{where}.{name} is required")
            continue
        value = obj[name]
        if value is None:
            if not optional:
                problems.append(f"{where}.{name} is null")
            continue
        answers = [_accepts(arm, value) for arm in arms if arm is not _NONE]
        if not any(answers):
            wanted = " | ".join(getattr(a, "__name__", str(a)) for a in arms if a is not _NONE)
            kind = "not one of" if None in answers and False not in answers else "not"
            problems.append(f"{where}.{name}={value!r:.60} is {kind} {wanted:.120}")
            continue
        for arm in arms:
            inner = _inner_class(arm)
            if inner is not None and isinstance(value, dict):
                problems += shape_problems(value, inner, f"{where}.{name}")
    return problems
