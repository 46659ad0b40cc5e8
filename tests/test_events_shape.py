"""What a Stripe event is to the bridge (docs/webhooks.md, SPEC §3), as pure unit tests.

``validate_event`` refuses what is not a Stripe event or cannot be stored, with a message
naming the field (the webhook answers it in its 400); ``transaction_id_of`` and
``transaction_kind_of`` put an event on its payment. Captured stand-in payloads are the base.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from django_stripe_bridge.events import (
    MAX_TIMESTAMP,
    VerifiedEvent,
    account_of,
    is_account_id,
    transaction_id_of,
    transaction_kind_of,
    validate_event,
    validate_shape,
)
from django_stripe_bridge.exceptions import InvalidEvent

PAYLOADS = Path(__file__).resolve().parent / "payloads"

ID_MESSAGE = "'id' must be a Stripe event id: 'evt_' and at most 255 characters in all."
OBJECT_MESSAGE = "'object' must be \"event\"."
TYPE_MESSAGE = "'type' must be a string of 1 to 100 characters."
CREATED_MESSAGE = "'created' must be an integer timestamp between 0 and 253402300799 (year 9999)."
DATA_MESSAGE = "'data.object' must be a JSON object."
KIND_MESSAGE = "'data.object.object' must be a string such as \"charge\"."


def stripe_event(name: str = "charge.succeeded", **changes: Any) -> dict[str, Any]:
    """A captured Stripe event; ``changes`` replace top-level fields, ``obj`` data.object's."""
    event = json.loads((PAYLOADS / f"{name}.json").read_text())
    event["data"]["object"].update(changes.pop("obj", {}))
    event.update(changes)
    return event


def refusal(event: Any) -> str:
    with pytest.raises(InvalidEvent) as raised:
        validate_event(event)
    return str(raised.value)


# -- the shape ------------------------------------------------------------------------------


def test_captured_events_are_valid_and_returned_as_they_are():
    for path in sorted(PAYLOADS.glob("*.json")):
        event = json.loads(path.read_text())
        before = copy.deepcopy(event)
        assert validate_event(event) is event
        assert event == before


@pytest.mark.parametrize("body", [[], "evt_1", None, 42, [stripe_event()]])
def test_a_body_that_is_not_an_object_is_refused(body):
    assert refusal(body) == "The body must be a JSON object (a Stripe event)."


@pytest.mark.parametrize(
    "event_id",
    ["missing", None, 42, ["evt_1"], "", "ch_3Mt", "EVT_1", "evt", "evt_" + "a" * 252],
)
def test_an_id_that_is_not_a_stripe_event_id_is_refused(event_id):
    event = stripe_event()
    if event_id == "missing":
        del event["id"]
    else:
        event["id"] = event_id
    assert refusal(event) == ID_MESSAGE


def test_an_id_of_255_characters_is_what_the_column_holds():
    assert validate_event(stripe_event(id="evt_" + "a" * 251))


@pytest.mark.parametrize("value", ["missing", None, "charge", "Event", ["event"]])
def test_object_must_be_event(value):
    event = stripe_event()
    if value == "missing":
        del event["object"]
    else:
        event["object"] = value
    assert refusal(event) == OBJECT_MESSAGE


@pytest.mark.parametrize("value", ["missing", None, "", 7, ["charge.succeeded"], "x" * 101])
def test_type_must_be_a_non_empty_string_of_at_most_100_characters(value):
    event = stripe_event()
    if value == "missing":
        del event["type"]
    else:
        event["type"] = value
    assert refusal(event) == TYPE_MESSAGE


def test_a_type_of_100_characters_is_what_the_column_holds():
    assert validate_event(stripe_event(type="x" * 100))


@pytest.mark.parametrize(
    "created",
    ["missing", None, -1, MAX_TIMESTAMP + 1, True, False, 1.7e9, "1795587709", [1795587709]],
)
def test_created_must_be_a_timestamp_a_datetime_holds(created):
    event = stripe_event()
    if created == "missing":
        del event["created"]
    else:
        event["created"] = created
    assert refusal(event) == CREATED_MESSAGE


@pytest.mark.parametrize("created", [0, 1, MAX_TIMESTAMP])
def test_created_from_1970_to_the_end_of_year_9999_is_valid(created):
    assert validate_event(stripe_event(created=created))


@pytest.mark.parametrize(
    "data",
    ["missing", None, [], "ch_1", {}, {"object": None}, {"object": "ch_1"}, {"object": []}],
)
def test_data_object_must_be_an_object(data):
    event = stripe_event()
    if data == "missing":
        del event["data"]
    else:
        event["data"] = data
    assert refusal(event) == DATA_MESSAGE


@pytest.mark.parametrize("kind", [7, ["charge"], {"object": "charge"}, True])
def test_data_object_object_when_present_must_be_a_string(kind):
    assert refusal(stripe_event(obj={"object": kind})) == KIND_MESSAGE


def test_data_object_without_object_or_of_an_unknown_kind_is_valid():
    event = stripe_event()
    del event["data"]["object"]["object"]
    assert validate_event(event)
    assert validate_event(stripe_event(obj={"object": "a_kind_stripe_adds_later"}))


# -- what a database cannot store -------------------------------------------------------------

NUL = "a NUL character (\\u0000)"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "evt_\x00"}, f"'id' holds {NUL}, which cannot be stored."),
        ({"api_version": "2025\x00"}, f"'api_version' holds {NUL}, which cannot be stored."),
        (
            {"obj": {"description": "a\x00b"}},
            f"'data.object.description' holds {NUL}, which cannot be stored.",
        ),
        (
            {"obj": {"description": "\ud800"}},
            "'data.object.description' holds a lone surrogate (\\ud800: not Unicode), "
            "which cannot be stored.",
        ),
        (
            {"obj": {"metadata": {"order": "\udfff"}}},
            "'data.object.metadata.order' holds a lone surrogate (\\udfff: not Unicode), "
            "which cannot be stored.",
        ),
        (
            {"obj": {"refunds": {"data": [{"id": "re_1"}, {"id": "re_\x00"}]}}},
            f"'data.object.refunds.data[1].id' holds {NUL}, which cannot be stored.",
        ),
        (
            {"obj": {"metadata": {"\x00": "x"}}},
            f"a key of 'data.object.metadata' holds {NUL}, which cannot be stored.",
        ),
        (
            {"obj": {"metadata": {"\udabc": "x"}}},
            "a key of 'data.object.metadata' holds a lone surrogate (\\udabc: not Unicode), "
            "which cannot be stored.",
        ),
        ({"\x00extra": 1}, f"a key of the event holds {NUL}, which cannot be stored."),
        (
            {"obj": {"amount": float("nan")}},
            "'data.object.amount' is nan, not a finite number: JSON cannot hold it.",
        ),
        (
            {"obj": {"fees": [1, float("inf")]}},
            "'data.object.fees[1]' is inf, not a finite number: JSON cannot hold it.",
        ),
        (
            {"request": {"id": float("-inf")}},
            "'request.id' is -inf, not a finite number: JSON cannot hold it.",
        ),
    ],
    ids=[
        "nul-in-id",
        "nul-at-top",
        "nul-in-object",
        "surrogate-in-object",
        "surrogate-deeper",
        "in-a-list",
        "nul-in-a-key",
        "surrogate-in-a-key",
        "key-of-the-event",
        "nan",
        "inf-in-a-list",
        "minus-inf",
    ],
)
def test_what_cannot_be_stored_is_refused_naming_where(changes, message):
    assert refusal(stripe_event(**changes)) == message


def test_a_long_key_is_shortened_in_the_message():
    forty, forty_one = "k" * 40, "k" * 41
    assert refusal(stripe_event(obj={"metadata": {forty: "\x00"}})) == (
        f"'data.object.metadata.{forty}' holds {NUL}, which cannot be stored."
    )
    assert refusal(stripe_event(obj={"metadata": {forty_one: "\x00"}})) == (
        f"'data.object.metadata.{'k' * 37}...' holds {NUL}, which cannot be stored."
    )


class Text(str):
    pass


class Number(float):
    pass


@pytest.mark.parametrize(
    ("value", "where", "what"),
    [
        ((1, "a\x00"), "data.object.extra[1]", f"holds {NUL}"),
        (MappingProxyType({"k": "\ud800"}), "data.object.extra.k", "holds a lone surrogate"),
        (MappingProxyType({"\x00": 1}), "a key of 'data.object.extra", f"holds {NUL}"),
        (Text("\x00"), "data.object.extra", f"holds {NUL}"),
        (Number("nan"), "data.object.extra", "is nan"),
        ([{"deep": [Number("inf")]}], "data.object.extra[0].deep[0]", "is inf"),
    ],
    ids=["tuple", "mapping", "mapping-key", "str-subclass", "float-subclass", "nested"],
)
def test_values_of_other_types_than_json_s_are_checked_as_carefully(value, where, what):
    message = refusal(stripe_event(obj={"extra": value}))
    assert where in message and what in message


def test_values_of_other_types_that_can_be_stored_are_accepted():
    event = stripe_event(
        obj={
            "fees": (1, "a", 2.5),
            "meta": MappingProxyType({"k": "v", 7: None}),
            "text": Text("x"),
            "rate": Number("1.5"),
            3: [True, None],
        }
    )
    assert validate_event(event) is event


def test_a_half_million_values_are_checked_in_a_blink():
    """The check runs once per delivery on every value: a 1 MiB event may hold 500,000."""
    import time

    event = stripe_event(obj={"items": [0] * 500_000, "names": ["ab"] * 100_000})
    started = time.perf_counter()
    assert validate_event(event) is event
    assert time.perf_counter() - started < 0.3  # 0.7 s before the quick pass
    event["data"]["object"]["items"][-1] = "\x00"
    assert "'data.object.items[499999]'" in refusal(event)
    event["data"]["object"]["items"][-1] = None
    event["data"]["object"]["items"][0] = float("inf")  # checked last: past every other
    assert "'data.object.items[0]' is inf" in refusal(event)


def test_finite_numbers_and_printable_unicode_are_stored_as_they_are():
    event = stripe_event(
        obj={
            "amount": 1000,
            "fee_rate": 2.9,
            "big": 1e308,
            "description": "\u202eRTL \U0001f600 é",
            "metadata": {"ключ": "✓", "k" * 60: "v"},
        }
    )
    assert validate_event(event) is event


# -- the transaction an event belongs to (docs/models.md) -------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("charge.succeeded", "data.object.id"),
        ("charge.succeeded.payment_intent", "data.object.payment_intent"),
        ("payment_intent.succeeded", "data.object.id"),
        ("refund.created", "data.object.charge"),
    ],
)
def test_captured_events_belong_to_their_payment(name, expected):
    event = stripe_event(name)
    _, _, field = expected.split(".")
    assert transaction_id_of(event) == event["data"]["object"][field]


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"object": "charge", "id": "ch_1", "payment_intent": "pi_1"}, "pi_1"),
        ({"object": "charge", "id": "ch_1", "payment_intent": None}, "ch_1"),
        ({"object": "payment_intent", "id": "pi_1"}, "pi_1"),
        ({"object": "refund", "id": "re_1", "charge": "ch_1", "payment_intent": "pi_1"}, "pi_1"),
        ({"object": "refund", "id": "re_1", "charge": {"id": "ch_1"}}, "ch_1"),
        (
            {"object": "dispute", "id": "dp_1", "charge": "ch_1", "payment_intent": {"id": "pi_1"}},
            "pi_1",
        ),
        ({"object": "dispute", "id": "dp_1", "charge": "ch_1", "payment_intent": None}, "ch_1"),
        ({"object": "customer", "id": "cus_1"}, "cus_1"),
    ],
)
def test_the_transaction_of_each_kind_of_object(obj, expected):
    # The table "Which transaction an event belongs to" in docs/models.md.
    assert transaction_id_of({"data": {"object": obj}}) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"object": "charge"}, ""),
        ({"object": "charge", "id": "", "payment_intent": ""}, ""),
        ({"object": "refund", "id": "re_1"}, ""),
        ({"object": "dispute", "id": "dp_1", "charge": None, "payment_intent": None}, ""),
        ({"object": "customer"}, ""),
        ({"object": "payment_intent", "id": 7}, ""),
        ({"id": "evt_less"}, "evt_less"),
    ],
)
def test_an_object_naming_no_payment_belongs_to_no_transaction_id(obj, expected):
    assert transaction_id_of({"data": {"object": obj}}) == expected


@pytest.mark.parametrize(
    "hostile", [["pi_1"], {"id": ["pi_1"]}, {"id": 7}, {"object": "payment_intent"}, 7, ""]
)
def test_a_payment_intent_field_that_is_no_id_falls_back_to_the_object(hostile):
    charge = {"object": "charge", "id": "ch_1", "payment_intent": hostile}
    assert transaction_id_of({"data": {"object": charge}}) == "ch_1"
    refund = {"object": "refund", "id": "re_1", "charge": "ch_1", "payment_intent": hostile}
    assert transaction_id_of({"data": {"object": refund}}) == "ch_1"
    dispute = {
        "object": "dispute",
        "id": "dp_1",
        "charge": {"id": "ch_1"},
        "payment_intent": hostile,
    }
    assert transaction_id_of({"data": {"object": dispute}}) == "ch_1"


@pytest.mark.parametrize(
    ("transaction_id", "kind"),
    [
        ("pi_3Mtw", "payment_intent"),
        ("ch_3Mtw", "charge"),
        ("py_3Mtw", "charge"),
        ("PI_3Mtw", "charge"),
        ("pix_1", "charge"),
        ("", "charge"),
    ],
)
def test_the_kind_of_a_transaction_is_told_by_its_id(transaction_id, kind):
    assert transaction_kind_of(transaction_id) == kind


# --- the connected account of an event (docs/connect.md) ------------------------------------

ACCOUNT_MESSAGE = "'account' must be a connected account's id: 'acct_' and at most 255 characters."


def _with(obj: dict[str, Any], **event: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "type": "x",
        "created": 1,
        "data": {"object": obj},
        **event,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("acct_1", True),
        ("acct_A_b9", True),
        ("acct_" + "x" * 250, True),
        ("acct_" + "x" * 251, False),
        ("acct_", False),
        ("acct__", False),
        ("acct_x y", False),
        ("acct_é", False),
        ("acct_-1", False),
        ("Acct_1", False),
        ("cus_1", False),
        (None, False),
        (7, False),
        (["acct_1"], False),
    ],
)
def test_is_account_id(value: Any, expected: bool) -> None:
    assert is_account_id(value) is expected


@pytest.mark.parametrize("bad", ["", "acct_", "cus_1", 5, False, {"id": "acct_1"}])
def test_an_event_with_a_malformed_account_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidEvent) as refused:
        validate_event(_with({"object": "charge"}, account=bad))
    assert str(refused.value) == ACCOUNT_MESSAGE


def test_an_event_with_an_account_is_valid() -> None:
    event = _with({"object": "charge"}, account="acct_1")
    assert validate_event(event) is event


def test_an_event_with_no_or_a_null_account_is_the_platforms() -> None:
    assert validate_event(_with({"object": "charge"}, account=None))
    assert account_of(_with({"object": "charge"}, account=None)) == ""
    assert account_of(_with({"object": "charge"})) == ""


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # A Connect event names its account, whatever its object.
        (_with({"object": "customer"}, account="acct_1"), "acct_1"),
        (
            _with(
                {"object": "charge", "transfer_data": {"destination": "acct_2"}}, account="acct_1"
            ),
            "acct_1",
        ),
        # A destination charge: the destination, else on_behalf_of.
        (_with({"object": "charge", "transfer_data": {"destination": "acct_2"}}), "acct_2"),
        (
            _with({"object": "payment_intent", "transfer_data": {"destination": {"id": "acct_3"}}}),
            "acct_3",
        ),
        (
            _with({"object": "checkout.session", "transfer_data": {"destination": "acct_4"}}),
            "acct_4",
        ),
        (_with({"object": "charge", "on_behalf_of": "acct_5"}), "acct_5"),
        (
            _with(
                {
                    "object": "charge",
                    "transfer_data": {"destination": "acct_2"},
                    "on_behalf_of": "acct_5",
                }
            ),
            "acct_2",
        ),
        (
            _with({"object": "charge", "transfer_data": {"amount": 5}, "on_behalf_of": "acct_5"}),
            "acct_5",
        ),
        # Not a payment, or nothing that names an account.
        (_with({"object": "refund", "transfer_data": {"destination": "acct_2"}}), ""),
        (_with({"object": "customer", "on_behalf_of": "acct_5"}), ""),
        (_with({"object": "charge", "transfer_data": "acct_2"}), ""),
        (_with({"object": "charge", "transfer_data": {"destination": "cus_2"}}), ""),
        (_with({"object": "charge", "on_behalf_of": "nope"}), ""),
        (_with({"object": "charge", "transfer_data": None, "on_behalf_of": None}), ""),
    ],
)
def test_account_of(event: dict[str, Any], expected: str) -> None:
    assert account_of(event) == expected


# --- parsed once: the shape alone, and the event with its text ----------------------------------


def test_validate_shape_checks_the_shape_and_not_what_can_be_stored() -> None:
    with pytest.raises(InvalidEvent, match=re.escape(ID_MESSAGE)):
        validate_shape(stripe_event(id="ch_not_an_event"))
    with pytest.raises(InvalidEvent, match=re.escape(DATA_MESSAGE)):
        validate_shape(stripe_event(data={"object": "x"}))
    odd = stripe_event(obj={"description": "a\x00b"})
    assert validate_shape(odd) is odd  # its text had no NUL: webhooks.parse_event knows
    with pytest.raises(InvalidEvent, match="description"):
        validate_event(odd)


def test_a_verified_event_is_the_event_with_its_text() -> None:
    event = stripe_event()
    text = json.dumps(event, indent=2)
    verified = VerifiedEvent(event, text)
    assert verified == event and type(verified) is VerifiedEvent
    assert verified.text == text
    assert validate_event(verified) is verified
