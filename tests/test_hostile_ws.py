"""Hostile frames on ``ws/stripe/``: every one gets an answer, and the connection stays usable.

A bad frame gets an ``error`` frame that names the problem; it never closes the socket,
never kills the consumer, and never leaves the client in a reconnect loop.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve

from django_stripe_bridge.listen import listen
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import Client, charge_event, ingest, open_client

pytestmark = pytest.mark.django_db(transaction=True)

ANSWERS = {"subscribed", "unsubscribed", "pong", "error"}
ERROR_CODES = {
    "invalid_selector",
    "forbidden",
    "bad_frame",
    "too_many_subscriptions",
    "unknown_subscription",
    "subscription_exists",
    "unknown_channel",
}


async def assert_usable(client: Client) -> None:
    assert await client.request({"action": "ping"}) == {"type": "pong"}


# --- ids no transaction can have ------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"selector": "id = '\ud800'"},
        {"selector": "id IN ('ok', 'x\udfff')"},
        {"channel": "stripe/\ud800"},
        {"channel": "stripe/ch_1", "selector": "status = '\udc00'"},
        {"selector": "id = 'ch_1\x00'"},
        {"selector": "id = 'ch_1\x00'", "replay": "all"},
        {"channel": "stripe/ch_1\x00"},
    ],
    ids=[
        "surrogate-pinned",
        "surrogate-in-list",
        "surrogate-channel",
        "surrogate-with-shorthand",
        "nul-pinned",
        "nul-pinned-replay-all",
        "nul-channel",
    ],
)
async def test_a_nul_or_lone_surrogate_in_a_selector_is_invalid_selector(fields):
    # A surrogate used to kill the consumer (no UTF-8 for a group name); a NUL, on
    # PostgreSQL, failed the replay query and closed the socket, so a client reconnected
    # and failed again, forever.
    await ingest(charge_event("charge.succeeded", "ch_1"))
    client = await open_client()
    answer = await client.request({"action": "subscribe", "subscription": "s1", **fields})
    assert answer["type"] == "error" and answer["code"] == "invalid_selector", answer
    assert answer["subscription"] == "s1"
    assert "unexpected character" in answer["message"] and "column" in answer["message"]
    assert await client.nothing(0.2)
    await assert_usable(client)
    await client.close()


@pytest.mark.parametrize(
    "query", ["selector=id%20%3D%20%27a%00%27", "channel=stripe%2Fa%00&replay=all"]
)
async def test_a_nul_in_the_query_string_selector_is_invalid_selector(query):
    client = await open_client(f"/ws/stripe/?{query}")
    answer = await client.recv()
    assert (answer["type"], answer["code"], answer["subscription"]) == (
        "error",
        "invalid_selector",
        "default",
    )
    await assert_usable(client)
    await client.close()


async def test_an_odd_subscription_name_is_echoed_and_usable():
    client = await open_client()
    for name in ["\ud800", "\u202e\x00", "'; DROP TABLE x; --", "x" * 100]:
        answer = await client.subscribe("id = 'ch_n'", subscription=name, replay="none")
        assert answer["type"] == "subscribed" and answer["subscription"] == name
        gone = await client.request({"action": "unsubscribe", "subscription": name})
        assert gone == {"type": "unsubscribed", "subscription": name}
    await assert_usable(client)
    await client.close()


async def test_an_empty_text_frame_is_a_bad_frame():
    client = await open_client()
    await client.communicator.send_input({"type": "websocket.receive", "text": ""})
    answer = await client.recv()
    assert (answer["type"], answer["code"]) == ("error", "bad_frame")
    await assert_usable(client)
    await client.close()


# --- rapid subscribe / unsubscribe with replay ---------------------------------------------


async def test_rapid_subscribe_unsubscribe_with_replay_never_sends_after_unsubscribed():
    for n in range(3):
        await ingest(charge_event("charge.succeeded", "ch_rapid", created=1_700_000_000 + n))
    client = await open_client()
    for i in range(30):
        name = f"r{i}"
        await client.send(
            {
                "action": "subscribe",
                "subscription": name,
                "channel": "stripe/ch_rapid",
                "replay": "all",
            }
        )
        await client.send({"action": "unsubscribe", "subscription": f"r{i}"})
    frames = []
    while not await client.nothing(0.3):
        frames.append(await client.recv())
    closed: set[str] = set()
    for frame in frames:
        assert frame["type"] in {"subscribed", "unsubscribed", "message"}, frame
        if frame["type"] == "unsubscribed":
            closed.add(frame["subscription"])
        elif frame["type"] == "message":
            assert frame["subscription"] not in closed, frame
    assert closed == {f"r{i}" for i in range(30)}
    await assert_usable(client)
    await client.close()


# --- any frame at all ----------------------------------------------------------------------

odd_text = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["\ud800", "\x00", "\u202e", "s1", "s2", "stripe", "stripe/", "latest", "all"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), odd_text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(odd_text, inner, max_size=2)
    ),
    max_leaves=4,
)
selectors = st.one_of(
    st.sampled_from(
        [
            "",
            "id = 'ch_h'",
            "id IN ('ch_h', 'ch_i')",
            "id = 'ch_h' AND amount > 1e400",
            "amount > 5",
            "(((",
            "id IN ()",
            "id = 'x' OR id = 'y'",
            "NOT " * 40 + "TRUE",
            "id = '" + "x" * 5000 + "'",
        ]
    ),
    st.text(max_size=20),
    json_values,
)
frames = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "action": st.one_of(st.sampled_from(["subscribe", "unsubscribe", "ping"]), json_values),
            "subscription": st.one_of(st.sampled_from(["s1", "s2"]), json_values),
            "selector": selectors,
            "channel": st.one_of(
                st.sampled_from(["stripe", "stripe/ch_h", "stripe/", "other", "stripe/\ud800"]),
                json_values,
            ),
            "replay": st.one_of(st.sampled_from(["latest", "all", "none"]), json_values),
        },
    ),
    json_values,
)
texts = st.one_of(frames.map(json.dumps), st.text(min_size=1, max_size=20))


async def _one_answer_each(sent: list[str]) -> None:
    client = await open_client()
    try:
        for text in sent:
            await client.send_text(text)
            answer = await client.recv()
            assert answer.get("type") in ANSWERS, (text, answer)
            if answer["type"] == "error":
                assert answer["code"] in ERROR_CODES, answer
                assert isinstance(answer["message"], str) and answer["message"]
        assert await client.nothing(0.05), "an extra frame"
        await assert_usable(client)
    finally:
        await client.close()


@hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sent=st.lists(texts, min_size=1, max_size=6))
def test_any_frame_gets_exactly_one_answer_and_the_connection_stays_usable(sent):
    asyncio.run(_one_answer_each(sent))


# --- the Python client against a hostile server -------------------------------------------


async def test_listen_survives_message_frames_of_odd_shapes():
    odd = [
        {"type": "message", "headers": ["not", "an", "object"], "data": None},
        {"type": "message", "headers": "x"},
        {"type": "message", "headers": {"event_id": ["e"]}},
        {"type": "message", "headers": {"event_id": "evt_ok"}, "data": {}},
    ]

    async def handler(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send(json.dumps({"type": "subscribed", "subscription": "listen"}))
        for frame in odd:
            await ws.send(json.dumps(frame))
        await ws.wait_closed()

    server = await serve(handler, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws/stripe/"
    got: list[Any] = []
    try:
        async with asyncio.timeout(5):
            async for frame in listen(url, selector="id = 'ch_1'", max_attempts=1):
                got.append(frame)
                if len(got) == len(odd):
                    break
    finally:
        server.close()
    assert [f.get("headers") for f in got] == [f["headers"] for f in odd]
