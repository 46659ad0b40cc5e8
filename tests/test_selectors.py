"""Tests for the message-selector language (``django_stripe_bridge.selectors``)."""

from __future__ import annotations

import pickle
import random
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from django_stripe_bridge.selectors import (
    MAX_DEPTH,
    MAX_IN_ITEMS,
    MAX_SELECTOR_LENGTH,
    Selector,
    SelectorError,
    compile_selector,
)

HEADERS: dict[str, object] = {
    "id": "ch_1",
    "type": "charge.succeeded",
    "event_id": "evt_1",
    "object": "charge",
    "status": "succeeded",
    "amount": 1000,
    "currency": "usd",
    "livemode": False,
    "created": 1700000000,
    "refunded": True,
    "nothing": None,
    "ratio": 0.25,
    "tags": ["a", "b"],
    "note": "50% off (a.b*c) [x]",
}

PROPERTY_SETTINGS = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def matches(text: str, headers: Mapping[str, object] = HEADERS) -> bool:
    return compile_selector(text).matches(headers)


# --- evaluation ---------------------------------------------------------------------------

MATCH_CASES = [
    # plain comparisons
    ("id = 'ch_1'", True),
    ("id = 'ch_2'", False),
    ("id <> 'ch_2'", True),
    ("id != 'ch_2'", True),
    ("id != 'ch_1'", False),
    ("amount = 1000", True),
    ("amount = 1000.0", True),
    ("amount > 500", True),
    ("amount >= 1000", True),
    ("amount < 1000", False),
    ("amount <= 999.5", False),
    ("ratio < 0.3", True),
    ("id = 'ch_1' AND amount > 500", True),
    # literal on the left, negative numbers and exponents
    ("'ch_1' = id", True),
    ("500 < amount", True),
    ("1000 <= amount", True),
    ("amount > -1", True),
    ("-2 < amount", True),
    ("amount = 1E3", True),
    ("amount = 1.0e+3", True),
    ("amount < 1.5E3", True),
    ("amount > 1.5E3", False),
    ("ratio = 25E-2", True),
    ("ratio = .25", True),
    ("created > 1.6e9", True),
    ("-1.5E3 < amount AND amount < +2000", True),
    # strings compare exactly, with = and <> only
    ("currency = 'USD'", False),
    ("currency = 'usd '", False),
    ("currency < 'zzz'", False),
    ("NOT currency < 'zzz'", False),
    ("currency > 'a'", False),
    ("'it''s' = 'it''s'", True),
    ("note = '50% off (a.b*c) [x]'", True),
    # string vs number mismatches are unknown, never an error
    ("amount = '1000'", False),
    ("NOT amount = '1000'", False),
    ("amount <> '1000'", False),
    ("id = 1", False),
    ("id <> 1", False),
    ("NOT id = 1", False),
    ("id > 0", False),
    # booleans
    ("livemode = FALSE", True),
    ("livemode = TRUE", False),
    ("livemode <> TRUE", True),
    ("refunded = TRUE", True),
    ("livemode = 0", False),
    ("NOT livemode = 0", False),
    ("refunded = 1", False),
    ("NOT refunded = 1", False),
    ("refunded > FALSE", False),
    ("NOT refunded > FALSE", False),
    ("amount = TRUE", False),
    ("NOT amount = TRUE", False),
    # a boolean may stand alone; anything else alone is unknown
    ("livemode", False),
    ("NOT livemode", True),
    ("refunded", True),
    ("NOT refunded", False),
    ("TRUE", True),
    ("FALSE", False),
    ("NOT FALSE", True),
    ("amount", False),
    ("NOT amount", False),
    ("id", False),
    ("NOT id", False),
    ("missing", False),
    ("NOT missing", False),
    ("nothing", False),
    ("NOT nothing", False),
    ("tags", False),
    # missing headers, None values and NULL are unknown
    ("missing = 'x'", False),
    ("NOT missing = 'x'", False),
    ("missing <> 'x'", False),
    ("nothing = 'x'", False),
    ("NOT nothing = 'x'", False),
    ("nothing <> 1", False),
    ("id = NULL", False),
    ("NOT id = NULL", False),
    ("id <> NULL", False),
    ("NULL = NULL", False),
    ("NOT (NULL = NULL)", False),
    ("missing = missing", False),
    ("NOT missing = missing", False),
    ("type = type", True),
    # three-valued AND / OR / NOT
    ("missing = 1 OR id = 'ch_1'", True),
    ("missing = 1 OR id = 'no'", False),
    ("NOT (missing = 1 OR id = 'no')", False),
    ("missing = 1 AND id = 'no'", False),
    ("NOT (missing = 1 AND id = 'no')", True),
    ("NOT (missing = 1 AND id = 'ch_1')", False),
    ("TRUE OR missing = 1", True),
    ("FALSE AND missing = 1", False),
    ("NOT (FALSE AND missing = 1)", True),
    ("NOT (TRUE AND missing = 1)", False),
    ("NOT NOT livemode", False),
    ("NOT NOT NOT livemode", True),
    ("NOT NOT missing", False),
    # precedence: comparisons, then NOT, then AND, then OR
    ("id = 'no' AND amount = 1 OR livemode = FALSE", True),
    ("id = 'no' AND (amount = 1 OR livemode = FALSE)", False),
    ("livemode = FALSE OR id = 'no' AND amount = 1", True),
    ("(livemode = FALSE OR id = 'no') AND amount = 1", False),
    ("NOT id = 'no' AND amount = 1", False),
    ("NOT (id = 'no' AND amount = 1)", True),
    ("NOT id = 'ch_1' OR amount = 1000", True),
    ("NOT (id = 'ch_1' OR amount = 1000)", False),
    ("NOT livemode AND refunded", True),
    ("NOT refunded OR livemode", False),
    ("NOT FALSE AND FALSE", False),
    ("NOT TRUE OR TRUE", True),
    # IN and NOT IN
    ("id IN ('ch_1', 'ch_2')", True),
    ("id IN ('ch_2')", False),
    ("id NOT IN ('ch_2', 'ch_3')", True),
    ("id NOT IN ('ch_1')", False),
    ("missing IN ('a')", False),
    ("missing NOT IN ('a')", False),
    ("nothing NOT IN ('a')", False),
    ("amount IN (1000, 2000)", True),
    ("amount IN (1E3)", True),
    ("amount NOT IN (1, 2)", True),
    ("amount IN ('1000')", False),
    ("amount NOT IN ('1000')", False),
    ("id IN (1, 2)", False),
    ("id NOT IN (1, 2)", False),
    ("livemode IN (0)", False),
    ("livemode NOT IN (0)", False),
    ("refunded IN (1)", False),
    ("tags IN ('a')", False),
    ("tags NOT IN ('a')", False),
    ("'x' IN ('x', 'y')", True),
    # LIKE, with wildcards and ESCAPE
    ("id LIKE 'ch_%'", True),
    ("id LIKE 'ch%'", True),
    ("id LIKE 'CH%'", False),
    ("id LIKE 'c_'", False),
    ("id LIKE 'c__1'", True),
    ("id LIKE '____'", True),
    ("id LIKE '%'", True),
    ("id LIKE '%%%'", True),
    ("id LIKE '%1'", True),
    ("id LIKE '%h%'", True),
    ("id LIKE 'ch_1'", True),
    ("id LIKE 'ch_'", False),
    ("id NOT LIKE 'pi_%'", True),
    ("id NOT LIKE 'ch%'", False),
    ("id LIKE 'ch\\_%' ESCAPE '\\'", True),
    ("type LIKE 'ch\\_%' ESCAPE '\\'", False),
    ("type LIKE 'charge!.%' ESCAPE '!'", True),
    ("note LIKE '50!% off%' ESCAPE '!'", True),
    ("note LIKE '51!% off%' ESCAPE '!'", False),
    ("note LIKE '50!%off%' ESCAPE '!'", False),
    ("note LIKE '%(a.b*c)%'", True),
    ("note LIKE '%(a_b*c) [x]'", True),
    ("note LIKE '%[x]'", True),
    ("note LIKE '%a.b.c%'", False),
    ("type LIKE 'charge.s%'", True),
    ("type LIKE 'charge_s%'", True),
    ("type LIKE 'charge.*'", False),
    ("type LIKE '.*'", False),
    ("'a+b' LIKE 'a+b'", True),
    ("'aab' LIKE 'a+b'", False),
    ("'a$' LIKE 'a$'", True),
    ("'x|y' LIKE 'x|y'", True),
    ("'x' LIKE 'x|y'", False),
    ("'^ab' LIKE '^a%'", True),
    ("'line\nbreak' LIKE 'line_break'", True),
    ("'line\nbreak' LIKE 'line%'", True),
    ("'100%' LIKE '100!%' ESCAPE '!'", True),
    ("'1000' LIKE '100!%' ESCAPE '!'", False),
    ("'a!b' LIKE 'a!!b' ESCAPE '!'", True),
    ("'a_b' LIKE 'a\\_b' ESCAPE '\\'", True),
    ("'axb' LIKE 'a\\_b' ESCAPE '\\'", False),
    ("'ab' LIKE 'a%%b'", True),
    ("'aab' LIKE '%ab'", True),
    ("'abcabd' LIKE '%abd'", True),
    ("'abcabd' LIKE 'a%c%d'", True),
    ("'abcabd' LIKE '%b_a%'", True),
    ("'abcabd' LIKE '%b_d'", False),
    ("'ab' LIKE '%b%b'", False),
    ("'abab' LIKE '%b%b'", True),
    ("'aXbXc' LIKE '%X_X%'", True),
    ("'' LIKE ''", True),
    ("'' LIKE '%'", True),
    ("'' LIKE '_'", False),
    ("amount LIKE '1%'", False),
    ("amount NOT LIKE '1%'", False),
    ("missing LIKE '%'", False),
    ("missing NOT LIKE '%'", False),
    ("livemode LIKE '%'", False),
    # BETWEEN and NOT BETWEEN
    ("amount BETWEEN 500 AND 1500", True),
    ("amount BETWEEN 1000 AND 1000", True),
    ("amount BETWEEN 1001 AND 2000", False),
    ("amount BETWEEN 1.5E3 AND 500", False),
    ("amount NOT BETWEEN 1001 AND 2000", True),
    ("amount NOT BETWEEN 0 AND 2000", False),
    ("amount BETWEEN -5 AND 1E4 AND id = 'ch_1'", True),
    ("amount BETWEEN 0 AND 5 OR id = 'ch_1'", True),
    ("ratio BETWEEN 0 AND .5", True),
    ("amount BETWEEN created AND created", False),
    ("id BETWEEN 'a' AND 'z'", False),
    ("id NOT BETWEEN 'a' AND 'z'", False),
    ("missing BETWEEN 0 AND 1", False),
    ("missing NOT BETWEEN 0 AND 1", False),
    ("amount BETWEEN 0 AND NULL", False),
    ("amount NOT BETWEEN 0 AND NULL", False),
    ("amount BETWEEN 2000 AND NULL", False),
    ("amount NOT BETWEEN 2000 AND NULL", True),
    ("livemode BETWEEN 0 AND 1", False),
    ("livemode NOT BETWEEN 0 AND 1", False),
    # IS [NOT] NULL
    ("missing IS NULL", True),
    ("missing IS NOT NULL", False),
    ("nothing IS NULL", True),
    ("id IS NULL", False),
    ("id IS NOT NULL", True),
    ("livemode IS NOT NULL", True),
    ("tags IS NOT NULL", True),
    ("NOT missing IS NULL", False),
    ("NULL IS NULL", True),
    ("1 IS NOT NULL", True),
    # keywords are case-insensitive; identifiers are not
    ("id = 'ch_1' and amount > 500", True),
    ("id = 'no' Or AMOUNT > 500", False),
    ("id = 'no' oR amount > 500", True),
    ("not livemode", True),
    ("id in ('ch_1') AnD amount between 1 aNd 2000", True),
    ("id not like 'x%' escape '!'", True),
    ("missing is not null", False),
    ("nothing Is Null", True),
    ("livemode = false", True),
    ("refunded = True", True),
    ("id = null", False),
    ("ID = 'ch_1'", False),
    ("Id IS NULL", True),
    # whitespace is free-form
    ("  id='ch_1'AND(amount>500)  ", True),
    ("id\t=\n'ch_1'", True),
    ("(((livemode = FALSE)))", True),
]


@pytest.mark.parametrize(("text", "expected"), MATCH_CASES)
def test_matches(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "headers", "expected"),
    [
        ("amount > 5", {"amount": 10.5}, True),
        ("amount > 5", {"amount": float("nan")}, False),
        ("NOT amount > 5", {"amount": float("nan")}, False),
        ("amount > 5", {"amount": float("inf")}, True),
        ("amount IS NULL", {"amount": None}, True),
        ("amount IS NULL", {}, True),
        ("id = 'x'", {"id": b"x"}, False),
        ("NOT id = 'x'", {"id": b"x"}, False),
        ("id = 'x'", {"id": ["x"]}, False),
        ("id IN ('x')", {"id": ("x",)}, False),
        ("id LIKE 'x'", {"id": {"x": 1}}, False),
        ("flag", {"flag": 1}, False),
        ("NOT flag", {"flag": 0}, False),
        ("flag = 1", {"flag": True}, False),
        ("flag <> 1", {"flag": True}, False),
        ("flag = TRUE", {"flag": 1}, False),
        ("flag IN (1)", {"flag": True}, False),
        ("flag NOT IN (1)", {"flag": True}, False),
        ("n IN (1, 2)", {"n": 2.0}, True),
        ("n BETWEEN 1 AND 3", {"n": 2}, True),
    ],
)
def test_matches_unusual_header_values(
    text: str, headers: Mapping[str, object], expected: bool
) -> None:
    assert matches(text, headers) is expected


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t "])
def test_empty_selector_is_broad(text: str | None) -> None:
    selector = compile_selector(text)
    assert selector.text == ""
    assert selector.pinned_ids is None
    assert selector.matches({})
    assert selector.matches(HEADERS)


# --- errors -------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "(" * depth + "livemode" + ")" * depth


def _nots(count: int) -> str:
    return "NOT " * count + "livemode"


def _in_list(count: int) -> str:
    """An IN list of ``count`` numbers, written tightly to fit in MAX_SELECTOR_LENGTH."""
    return "amount IN (" + ",".join(str(i) for i in range(count)) + ")"


ERROR_CASES = [
    ("id = 'x' AND", 13, "unexpected end of input"),
    ("id = 'x' OR", 12, "unexpected end of input"),
    ("id = ", 6, "unexpected end of input"),
    ("id =", 5, "unexpected end of input"),
    ("id IN ()", 8, "unexpected token ')'"),
    ("id IN ('a',)", 12, "unexpected token ')'"),
    ("id IN ('a' 'b')", 12, "unexpected token 'b'"),
    ("id IN 'a'", 7, "unexpected token 'a'"),
    ("id IN (a)", 8, "unexpected token 'a'"),
    ("id IN (NULL)", 8, "unexpected token 'NULL'"),
    ("id IN ('a', 1)", 13, "IN list mixes strings and numbers"),
    ("id IN ('a'", 11, "unexpected end of input"),
    ("(id = 'a'", 10, "unexpected end of input"),
    ("id = 'a')", 9, "unexpected token ')'"),
    ("()", 2, "unexpected token ')'"),
    ("id = 'unterminated", 6, "unterminated string"),
    ("id = 'it''s", 6, "unterminated string"),
    ("id = 'a' AND type = 'b", 21, "unterminated string"),
    ("id == 'a'", 5, "unexpected token '='"),
    ("id = = 'a'", 6, "unexpected token '='"),
    ("id =< 'a'", 5, "unexpected token '<'"),
    ("AND", 1, "unexpected token 'AND'"),
    ("OR id = 'a'", 1, "unexpected token 'OR'"),
    ("id = 'a' AND AND amount > 1", 14, "unexpected token 'AND'"),
    ("id = 'a' id = 'b'", 10, "unexpected token 'id'"),
    ("id 'a'", 4, "unexpected token 'a'"),
    ("NOT", 4, "unexpected end of input"),
    ("id NOT = 'a'", 4, "unexpected token 'NOT'"),
    ("id NOT 'LIKE'", 4, "unexpected token 'NOT'"),
    ("id NOT", 4, "unexpected token 'NOT'"),
    ("id IS 'a'", 7, "unexpected token 'a'"),
    ("id IS NOT", 10, "unexpected end of input"),
    ("id LIKE", 8, "unexpected end of input"),
    ("id LIKE 5", 9, "unexpected token '5'"),
    ("id LIKE type", 9, "unexpected token 'type'"),
    ("id LIKE 'a' ESCAPE", 19, "unexpected end of input"),
    ("id LIKE 'a' ESCAPE 'ab'", 20, "ESCAPE needs exactly one character"),
    ("id LIKE 'a' ESCAPE ''", 20, "ESCAPE needs exactly one character"),
    ("id LIKE 'a!' ESCAPE '!'", 9, "LIKE pattern ends with its escape character"),
    ("amount BETWEEN 1 5", 18, "unexpected token '5'"),
    ("amount BETWEEN 1 OR 5", 18, "unexpected token 'OR'"),
    ("amount BETWEEN 1 AND", 21, "unexpected end of input"),
    ("'x'", 4, "unexpected end of input"),
    ("5", 2, "unexpected end of input"),
    ("NULL", 5, "unexpected end of input"),
    ("id = 'a' OR 'b'", 16, "unexpected end of input"),
    ("$", 1, "unexpected character '$'"),
    ('id = "a"', 6, "unexpected character '\"'"),
    ("amount > - 1", 10, "unexpected character '-'"),
    ("amount ! 1", 8, "unexpected character '!'"),
    ("id = 'a' ; DROP TABLE x", 10, "unexpected character ';'"),
    ("amount > 1.5.3", 13, "unexpected token '.3'"),
    ("  id = ", 8, "unexpected end of input"),
    ("  AND", 3, "unexpected token 'AND'"),
    ("x" * (MAX_SELECTOR_LENGTH + 1), MAX_SELECTOR_LENGTH + 1, "longer than 4096 characters"),
    (
        "livemode OR " * 400 + "livemode",
        MAX_SELECTOR_LENGTH + 1,
        "longer than 4096 characters",
    ),
    ("  " + "x" * (MAX_SELECTOR_LENGTH - 1), MAX_SELECTOR_LENGTH + 1, "longer than"),
    (_nested(MAX_DEPTH + 1), MAX_DEPTH + 1, "nesting deeper than 32 levels"),
    (_nested(2000), MAX_DEPTH + 1, "nesting deeper than 32 levels"),
    ("(" * MAX_SELECTOR_LENGTH, MAX_DEPTH + 1, "nesting deeper than 32 levels"),
    (_nots(MAX_DEPTH + 1), 4 * MAX_DEPTH + 1, "nesting deeper than 32 levels"),
    (_nots(1000), 4 * MAX_DEPTH + 1, "nesting deeper than 32 levels"),
    ("NOT (" * 16 + "NOT livemode" + ")" * 16, 16 * 5 + 1, "nesting deeper than 32 levels"),
    (_in_list(MAX_IN_ITEMS + 1), _in_list(MAX_IN_ITEMS + 1).find(",1000)") + 2, "more than 1000"),
]


@pytest.mark.parametrize(
    ("text", "column", "reason"), ERROR_CASES, ids=[c[0][:40] for c in ERROR_CASES]
)
def test_errors(text: str, column: int, reason: str) -> None:
    with pytest.raises(SelectorError) as info:
        compile_selector(text)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.position == column
    assert reason in str(error)
    assert str(error).endswith(f" at column {column}")


def test_error_message_format() -> None:
    with pytest.raises(SelectorError, match=r"^unexpected token 'AND' at column 10$"):
        compile_selector("amount > AND 1")
    with pytest.raises(SelectorError, match=r"^unexpected end of input at column 13$"):
        compile_selector("id = 'x' AND")
    error = SelectorError("unexpected character '$'", 3)
    assert error.reason == "unexpected character '$'"
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert (copy.position, str(copy)) == (3, str(error))


@pytest.mark.parametrize(
    "text",
    [
        "x" * MAX_SELECTOR_LENGTH,
        " " + "x" * (MAX_SELECTOR_LENGTH - 2) + "\n",
        _nested(MAX_DEPTH),
        _nots(MAX_DEPTH),
        "NOT (" * 16 + "livemode" + ")" * 16,
        "NOT (" * 15 + "NOT livemode" + ")" * 15,
        "(" * MAX_DEPTH + "livemode) AND (" * MAX_DEPTH + "TRUE" + ")" * MAX_DEPTH,
        "livemode IN ('x') AND id NOT IN ('y')",
        _in_list(MAX_IN_ITEMS),
        "id IN (" + ",".join(["'a'"] * MAX_IN_ITEMS) + ")",
    ],
    ids=lambda text: f"{text[:30]}..{len(text)}",
)
def test_within_limits(text: str) -> None:
    selector = compile_selector(text)
    assert isinstance(selector.matches(HEADERS), bool)


def test_depth_limit_values() -> None:
    assert compile_selector(_nested(MAX_DEPTH)).matches({"livemode": True})
    assert compile_selector(_nots(MAX_DEPTH)).matches({"livemode": True})
    assert not compile_selector(_nots(MAX_DEPTH - 1)).matches({"livemode": True})


def test_long_flat_selectors_evaluate_without_deep_recursion() -> None:
    chain = " AND ".join(["livemode"] * 300)
    assert len(chain) <= MAX_SELECTOR_LENGTH
    either = " OR ".join(["id = 'x'"] * 300)
    limit, depth, frame = sys.getrecursionlimit(), 0, sys._getframe()
    while frame.f_back is not None:
        depth, frame = depth + 1, frame.f_back
    selector, other = compile_selector(chain), compile_selector(either)
    sys.setrecursionlimit(depth + 30)
    try:
        assert selector.matches({"livemode": True})
        assert other.pinned_ids == frozenset({"x"})
        assert not other.matches({"id": "y"})
    finally:
        sys.setrecursionlimit(limit)


def test_non_string_selector_is_refused() -> None:
    with pytest.raises(SelectorError, match="at column 1"):
        compile_selector(42)  # type: ignore[arg-type]


# --- pinned ids ---------------------------------------------------------------------------

PINNED_CASES: list[tuple[str | None, frozenset[str] | None]] = [
    (None, None),
    ("", None),
    ("id = 'a'", frozenset({"a"})),
    ("'a' = id", frozenset({"a"})),
    ("(id = 'a')", frozenset({"a"})),
    ("id IN ('a', 'b')", frozenset({"a", "b"})),
    ("id IN ('a', 'a')", frozenset({"a"})),
    ("id = 'a' OR id = 'b'", frozenset({"a", "b"})),
    ("id = 'a' OR id IN ('b', 'c')", frozenset({"a", "b", "c"})),
    ("id = 'a' AND id = 'b'", frozenset()),
    ("id = 'a' AND id = 'a'", frozenset({"a"})),
    ("id IN ('a', 'b') AND id IN ('b', 'c')", frozenset({"b"})),
    ("id = 'a' AND amount > 5", frozenset({"a"})),
    ("amount > 5 AND id IN ('a', 'b')", frozenset({"a", "b"})),
    ("(id = 'a' OR id = 'b') AND livemode", frozenset({"a", "b"})),
    ("(id = 'a' OR amount > 5) AND id IN ('a', 'b')", frozenset({"a", "b"})),
    ("(id = 'a' OR id = 'b') AND (id = 'b' OR id = 'c')", frozenset({"b"})),
    ("id = 'a' OR amount > 5", None),
    ("amount > 5 OR id = 'a'", None),
    ("id = 'a' OR id = 'b' OR livemode", None),
    ("id = 'a' OR (id = 'b' AND amount > 5)", frozenset({"a", "b"})),
    ("NOT id = 'a'", None),
    ("NOT NOT id = 'a'", None),
    ("NOT (id = 'a' OR id = 'b')", None),
    ("NOT id = 'a' AND id = 'b'", frozenset({"b"})),
    ("id <> 'a'", None),
    ("id != 'a'", None),
    ("id NOT IN ('a')", None),
    ("id LIKE 'a'", None),
    ("id = 1", None),
    ("id IN (1, 2)", None),
    ("id = NULL", None),
    ("id = type", None),
    ("id IS NOT NULL", None),
    ("type = 'a'", None),
    ("ID = 'a'", None),
    ("'a' = 'a'", None),
    ("amount > 5", None),
    ("TRUE", None),
]


@pytest.mark.parametrize(("text", "expected"), PINNED_CASES)
def test_pinned_ids(text: str | None, expected: frozenset[str] | None) -> None:
    pinned = compile_selector(text).pinned_ids
    assert pinned == expected
    assert pinned is None or isinstance(pinned, frozenset)


def test_pinned_ids_are_not_capped() -> None:
    names = [a + b for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
    selector = compile_selector("id IN (" + ",".join(f"'{n}'" for n in names[:600]) + ")")
    assert selector.pinned_ids == frozenset(names[:600])


# --- the Selector object ------------------------------------------------------------------


def test_selector_object() -> None:
    selector = compile_selector("  id = 'ch_1' AND amount > 500\n")
    assert isinstance(selector, Selector)
    assert selector.text == "id = 'ch_1' AND amount > 500"
    assert str(selector) == selector.text
    assert repr(selector) == "Selector(\"id = 'ch_1' AND amount > 500\")"
    assert selector.matches(HEADERS)
    assert not selector.matches({**HEADERS, "amount": 10})
    assert selector == compile_selector("id = 'ch_1' AND amount > 500")
    assert selector != compile_selector("id = 'ch_1'")
    assert len({selector, compile_selector(selector.text)}) == 1
    with pytest.raises(AttributeError):
        selector.text = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        selector._pinned = None
    with pytest.raises(AttributeError):
        del selector._test
    copy = pickle.loads(pickle.dumps(selector))  # noqa: S301
    assert copy == selector and copy.matches(HEADERS)
    assert copy.pinned_ids == {"ch_1"}


def test_selector_constructor_compiles() -> None:
    assert Selector("livemode").matches({"livemode": True})
    with pytest.raises(SelectorError):
        Selector("id =")


# --- property-based tests -----------------------------------------------------------------
#
# Expressions are generated as small trees; `render` writes them as selector text in a random
# style and `reference` evaluates them independently with None standing for UNKNOWN.

Tree = tuple[Any, ...]
NAMES = ["id", "account", "a", "b", "n", "flag"]
STRING_CHARS = "ab%_'!.x"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


numbers = st.one_of(
    st.integers(-3, 3).map(lambda n: (str(n), n)),
    st.integers(-30, 30).map(lambda n: (f"{n / 10:.1f}", float(f"{n / 10:.1f}"))),
    st.sampled_from([("1E1", 10.0), ("-2.5e0", -2.5), ("0.2E+1", 2.0), ("30e-1", 3.0)]),
)
strings = st.text(STRING_CHARS, max_size=3).map(lambda s: (_quote(s), s))
literals = st.one_of(
    numbers,
    strings,
    st.sampled_from([("TRUE", True), ("FALSE", False), ("NULL", None)]),
)
operands = st.one_of(
    st.sampled_from(NAMES).map(lambda n: ("name", n)), literals.map(lambda x: ("lit", *x))
)
# a LIKE pattern is a list of parts: a literal character, "one" (_) or "many" (%)
like_parts = st.lists(
    st.one_of(st.sampled_from(["one", "many"]), st.sampled_from("ab%_'!.")), max_size=5
)

leaves = st.one_of(
    st.tuples(
        st.just("cmp"), operands, st.sampled_from(["=", "<>", "!=", "<", "<=", ">", ">="]), operands
    ),
    st.tuples(
        st.just("in"),
        operands,
        st.one_of(
            st.lists(numbers, min_size=1, max_size=3), st.lists(strings, min_size=1, max_size=3)
        ),
        st.booleans(),
    ),
    st.tuples(
        st.just("like"), operands, like_parts, st.sampled_from([None, "!", "\\"]), st.booleans()
    ),
    st.tuples(st.just("between"), operands, operands, operands, st.booleans()),
    st.tuples(st.just("isnull"), operands, st.booleans()),
    st.tuples(
        st.just("alone"), st.one_of(st.sampled_from(NAMES), st.sampled_from(["TRUE", "FALSE"]))
    ),
)
trees = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.tuples(st.just("not"), inner),
        st.tuples(st.sampled_from(["and", "or"]), inner, inner),
    ),
    max_leaves=8,
)
header_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.5, -2.5, 10.0, 3.0, float("nan")]),
    st.text(STRING_CHARS, max_size=3),
    st.lists(st.integers(), max_size=2),
)
headers_strategy = st.dictionaries(st.sampled_from(NAMES), header_values)


def _levels(tree: Tree) -> int:
    """Nesting levels of the rendered text: each NOT adds NOT and a parenthesis."""
    if tree[0] == "not":
        return 2 + _levels(tree[1])
    if tree[0] in ("and", "or"):
        return 1 + max(_levels(tree[1]), _levels(tree[2]))
    return 0


def render(tree: Tree, rnd: random.Random) -> str:
    def kw(word: str) -> str:
        return "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in word)

    def sp() -> str:
        return rnd.choice([" ", "  ", "\t", "\n "])

    def value(operand: Tree) -> str:
        text = str(operand[1])
        if operand[0] == "name":
            return text
        return kw(text) if text in ("TRUE", "FALSE", "NULL") else text

    kind = tree[0]
    if kind == "cmp":
        return (
            value(tree[1])
            + rnd.choice(["", " "])
            + str(tree[2])
            + rnd.choice(["", " "])
            + value(tree[3])
        )
    if kind == "in":
        items = ("," + sp()).join(text for text, _ in tree[2])
        return (
            f"{value(tree[1])}{sp()}{kw('NOT') + sp() if tree[3] else ''}{kw('IN')}{sp()}({items})"
        )
    if kind == "like":
        escape = tree[3]
        pattern = ""
        for part in tree[2]:
            if part == "one":
                pattern += "_"
            elif part == "many":
                pattern += "%"
            elif escape is not None and part in ("%", "_", escape):
                pattern += escape + part
            elif escape is None and part in ("%", "_"):
                pattern += "."  # no escape available: use a plain character instead
            else:
                pattern += part
        not_ = kw("NOT") + sp() if tree[4] else ""
        suffix = f"{sp()}{kw('ESCAPE')}{sp()}{_quote(escape)}" if escape else ""
        return f"{value(tree[1])}{sp()}{not_}{kw('LIKE')}{sp()}{_quote(pattern)}{suffix}"
    if kind == "between":
        not_ = kw("NOT") + sp() if tree[4] else ""
        return (
            f"{value(tree[1])}{sp()}{not_}{kw('BETWEEN')}{sp()}{value(tree[2])}"
            f"{sp()}{kw('AND')}{sp()}{value(tree[3])}"
        )
    if kind == "isnull":
        not_ = kw("NOT") + sp() if tree[2] else ""
        return f"{value(tree[1])}{sp()}{kw('IS')}{sp()}{not_}{kw('NULL')}"
    if kind == "alone":
        return kw(tree[1]) if tree[1] in ("TRUE", "FALSE") else tree[1]
    if kind == "not":
        return f"{kw('NOT')}{sp()}({render(tree[1], rnd)})"
    return f"({render(tree[1], rnd)}){sp()}{kw(kind)}{sp()}({render(tree[2], rnd)})"


def _type(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is bool:
        return "bool"
    if type(value) is str:
        return "str"
    if type(value) in (int, float) and value == value:
        return "num"
    return None


def _ref_like(parts: list[str], text: str) -> bool:
    """Independent LIKE: memoised recursion over (part index, text index)."""
    memo: dict[tuple[int, int], bool] = {}

    def go(i: int, j: int) -> bool:
        if (i, j) not in memo:
            if i == len(parts):
                result = j == len(text)
            elif parts[i] == "many":
                result = go(i + 1, j) or (j < len(text) and go(i, j + 1))
            elif j == len(text):
                result = False
            else:
                result = (parts[i] == "one" or parts[i] == text[j]) and go(i + 1, j + 1)
            memo[i, j] = result
        return memo[i, j]

    return go(0, 0)


def _ref_cmp(op: str, left: object, right: object) -> bool | None:
    kind = _type(left)
    if kind is None or kind != _type(right):
        return None
    if op == "=":
        return left == right
    if op in ("<>", "!="):
        return left != right
    if kind != "num":
        return None
    table: dict[str, Callable[[Any, Any], bool]] = {
        "<": lambda x, y: x < y,
        "<=": lambda x, y: x <= y,
        ">": lambda x, y: x > y,
        ">=": lambda x, y: x >= y,
    }
    return table[op](left, right)


def _ref_not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _ref_and(left: bool | None, right: bool | None) -> bool | None:
    if left is False or right is False:
        return False
    return None if left is None or right is None else True


def _ref_or(left: bool | None, right: bool | None) -> bool | None:
    return _ref_not(_ref_and(_ref_not(left), _ref_not(right)))


def reference(tree: Tree, headers: Mapping[str, object]) -> bool | None:
    def value(operand: Tree) -> object:
        return headers.get(operand[1]) if operand[0] == "name" else operand[2]

    def negate_if(flag: bool, result: bool | None) -> bool | None:
        return _ref_not(result) if flag else result

    kind = tree[0]
    if kind == "cmp":
        return _ref_cmp(tree[2], value(tree[1]), value(tree[3]))
    if kind == "in":
        subject = value(tree[1])
        items = [item for _, item in tree[2]]
        if _type(subject) != _type(items[0]):
            return None
        return negate_if(tree[3], any(subject == item for item in items))
    if kind == "like":
        subject = value(tree[1])
        if type(subject) is not str:
            return None
        parts = [p if tree[3] is not None or p not in ("%", "_") else "." for p in tree[2]]
        return negate_if(tree[4], _ref_like(parts, subject))
    if kind == "between":
        subject = value(tree[1])
        inside = _ref_and(
            _ref_cmp(">=", subject, value(tree[2])), _ref_cmp("<=", subject, value(tree[3]))
        )
        return negate_if(tree[4], inside)
    if kind == "isnull":
        return negate_if(tree[2], value(tree[1]) is None)
    if kind == "alone":
        if tree[1] in ("TRUE", "FALSE"):
            return bool(tree[1] == "TRUE")
        found = headers.get(tree[1])
        return found if type(found) is bool else None
    if kind == "not":
        return _ref_not(reference(tree[1], headers))
    combine = _ref_and if kind == "and" else _ref_or
    return combine(reference(tree[1], headers), reference(tree[2], headers))


@PROPERTY_SETTINGS
@given(tree=trees, headers=st.lists(headers_strategy, min_size=1, max_size=4), rnd=st.randoms())
def test_generated_expressions_agree_with_reference(
    tree: Tree, headers: list[dict[str, object]], rnd: random.Random
) -> None:
    assume(_levels(tree) <= MAX_DEPTH - 2)  # room for the NOT ( ... ) added below
    first, second = render(tree, rnd), render(tree, rnd)
    selector, restyled = compile_selector(first), compile_selector(second)
    negated = compile_selector(f"NOT ({first})")
    for each in headers:
        expected = reference(tree, each)
        assert selector.matches(each) is (expected is True), (first, each, expected)
        assert restyled.matches(each) is (expected is True), (second, each, expected)
        assert negated.matches(each) is (expected is False), (first, each, expected)


SELECTORISH = [
    "id", "amount", "livemode", "x_1", "AND", "and", "OR", "NOT", "IN", "LIKE", "ESCAPE",
    "BETWEEN", "IS", "NULL", "TRUE", "FALSE", "=", "<>", "!=", "<", "<=", ">", ">=", "==",
    "(", ")", ",", "'a'", "'%'", "'_'", "'\\'", "''''", "'", "0", "-1", "1.5E3", ".5", "1e",
    "$", "-", "!", ";", "\"", "é", "\x00", " ", "\n",
]  # fmt: skip
weird_headers = st.dictionaries(
    st.one_of(st.sampled_from(["id", "amount", "livemode", "x_1"]), st.text(max_size=3)),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.decimals(),
        st.text(max_size=5),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.binary(max_size=3),
    ),
    max_size=5,
)


def _compile_or_error(text: str) -> Selector | None:
    try:
        return compile_selector(text)
    except SelectorError as error:
        assert 1 <= error.position <= len(text) + 1
        assert str(error).endswith(f" at column {error.position}")
        return None


@PROPERTY_SETTINGS
@given(text=st.text(max_size=60), headers=weird_headers)
def test_arbitrary_text_only_raises_selector_error(text: str, headers: dict[Any, object]) -> None:
    selector = _compile_or_error(text)
    if selector is not None:
        assert isinstance(selector.matches(headers), bool)


@PROPERTY_SETTINGS
@given(
    tokens=st.lists(st.sampled_from(SELECTORISH), max_size=14),
    joiner=st.sampled_from([" ", ""]),
    headers=weird_headers,
)
def test_selectorish_text_only_raises_selector_error(
    tokens: list[str], joiner: str, headers: dict[Any, object]
) -> None:
    selector = _compile_or_error(joiner.join(tokens))
    if selector is not None:
        assert isinstance(selector.matches(headers), bool)
        assert selector.pinned_ids is None or isinstance(selector.pinned_ids, frozenset)


@PROPERTY_SETTINGS
@given(parts=st.lists(st.sampled_from(["one", "many", "a", "b"]), max_size=7), text=st.text("ab"))
def test_like_agrees_with_reference(parts: list[str], text: str) -> None:
    pattern = "".join({"one": "_", "many": "%"}.get(part, part) for part in parts)
    selector = compile_selector(f"s LIKE '{pattern}'")
    assert selector.matches({"s": text}) is _ref_like(parts, text)


def test_like_is_not_exponential() -> None:
    selector = compile_selector("s LIKE '" + "%a" * 30 + "%b'")
    started = time.perf_counter()
    assert not selector.matches({"s": "a" * 20_000})
    assert time.perf_counter() - started < 5


@PROPERTY_SETTINGS
@given(tree=trees, headers=st.lists(headers_strategy, min_size=1, max_size=4), rnd=st.randoms())
def test_pinned_ids_are_necessary(
    tree: Tree, headers: list[dict[str, object]], rnd: random.Random
) -> None:
    """A message whose ``id`` is not pinned never matches a pinning selector."""
    assume(_levels(tree) <= MAX_DEPTH)
    selector = compile_selector(render(tree, rnd))
    if selector.pinned_ids is None:
        return
    for each in headers:
        if selector.matches(each):
            assert each.get("id") in selector.pinned_ids


@PROPERTY_SETTINGS
@given(tree=trees, headers=st.lists(headers_strategy, min_size=1, max_size=4), rnd=st.randoms())
def test_pinned_accounts_are_necessary(
    tree: Tree, headers: list[dict[str, object]], rnd: random.Random
) -> None:
    """A message whose ``account`` is not pinned never matches a selector pinning accounts
    (what lets a seller's broad subscription be limited to its own accounts)."""
    assume(_levels(tree) <= MAX_DEPTH)
    selector = compile_selector(render(tree, rnd))
    if selector.pinned_accounts is None:
        return
    for each in headers:
        if selector.matches(each):
            assert each.get("account") in selector.pinned_accounts
