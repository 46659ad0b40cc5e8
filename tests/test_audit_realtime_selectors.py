"""Audit of the selector language (SPEC §5, "Selector language") and its Python API."""

from __future__ import annotations

import pickle

import pytest

from django_stripe_bridge.selectors import (
    MAX_DEPTH,
    MAX_SELECTOR_LENGTH,
    SelectorError,
    compile_selector,
    pin_id,
)


@pytest.mark.parametrize(
    "text",
    [
        "x" * (MAX_SELECTOR_LENGTH + 1),
        "  " + "x" * MAX_SELECTOR_LENGTH,
        "x" * MAX_SELECTOR_LENGTH + "\n",
        " " * (MAX_SELECTOR_LENGTH + 1),
    ],
    ids=["long", "leading-space", "trailing-newline", "only-spaces"],
)
def test_more_than_4096_characters_is_refused_at_column_4097(text):
    """§5: "a selector of more than 4,096 characters ... is refused ... an over-long selector
    is reported at column 4,097": the characters as sent, whitespace included."""
    with pytest.raises(SelectorError) as info:
        compile_selector(text)
    assert info.value.position == MAX_SELECTOR_LENGTH + 1 == 4097
    assert str(info.value) == "selector longer than 4096 characters at column 4097"


def test_exactly_4096_characters_is_accepted():
    assert compile_selector("x" * MAX_SELECTOR_LENGTH).text == "x" * MAX_SELECTOR_LENGTH
    assert compile_selector(" " * (MAX_SELECTOR_LENGTH - 1) + "x").text == "x"


def test_spec_error_message_examples():
    """§5: ``unexpected token 'AND' at column 12``; the end of input is column len+1."""
    with pytest.raises(SelectorError, match=r"^unexpected token 'AND' at column 12$") as info:
        compile_selector("amount IN (AND")
    assert info.value.position == 12
    text = "id = 'ch_1' AND"
    with pytest.raises(SelectorError) as info:
        compile_selector(text)
    assert info.value.position == len(text) + 1
    assert isinstance(info.value, ValueError)


def test_depth_limit_counts_parentheses_and_nots():
    compile_selector("NOT " * (MAX_DEPTH // 2) + "(" * (MAX_DEPTH // 2) + "livemode" + ")" * 16)
    with pytest.raises(SelectorError, match="nesting deeper than 32 levels"):
        compile_selector("NOT " * 17 + "(" * 16 + "livemode" + ")" * 16)


# -- pin_id: the stripe/<tx> shorthand -----------------------------------------------------


def test_pin_id_alone_is_the_plain_id_selector():
    for inner in (None, compile_selector(""), compile_selector("   ")):
        selector = pin_id("ch_1", inner)
        assert selector == compile_selector("id = 'ch_1'")
        assert selector.pinned_ids == frozenset({"ch_1"})
    assert pin_id("it's").text == "id = 'it''s'"
    assert pin_id("it's").matches({"id": "it's"})


def test_pin_id_narrows_a_selector():
    deep = compile_selector("(" * MAX_DEPTH + "amount > 1 OR livemode" + ")" * MAX_DEPTH)
    selector = pin_id("ch_1", deep)
    assert selector.text == f"id = 'ch_1' AND ({deep.text})"
    assert selector.pinned_ids == frozenset({"ch_1"})
    assert selector.matches({"id": "ch_1", "amount": 5})
    assert selector.matches({"id": "ch_1", "livemode": True})
    assert not selector.matches({"id": "ch_2", "amount": 5})
    assert not selector.matches({"id": "ch_1", "amount": 0, "livemode": False})
    copy = pickle.loads(pickle.dumps(selector))  # noqa: S301
    assert copy == selector and copy.pinned_ids == selector.pinned_ids
    assert copy.matches({"id": "ch_1", "amount": 5})
    # AND intersects the ids.
    assert pin_id("a", compile_selector("id IN ('a', 'b')")).pinned_ids == frozenset({"a"})
    assert pin_id("a", compile_selector("id = 'b'")).pinned_ids == frozenset()


def test_pin_id_refuses_an_id_no_transaction_has():
    with pytest.raises(SelectorError, match="unexpected character"):
        pin_id("ch_\x00")
