"""A seller never receives another connected account's events, whatever it tries: selector
tricks (OR, NOT, an account in an inner clause, no account at all), and every path an event
can take to a subscriber (live, replay ``latest`` and ``all``, resume with ``since``, the
catch-up after the layer lost its state — read directly, and after a real ``FLUSHDB`` — and
the Server-Sent Events stream through both front doors)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.test import override_settings

from django_stripe_bridge.asgi import with_stripe_webhook
from django_stripe_bridge.realtime import replay
from django_stripe_bridge.realtime.resume import resume_messages
from django_stripe_bridge.selectors import compile_selector
from tests.factories import charge_object, make_event
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import ingest, open_client, session_cookie
from tests.test_recovery import flushable_layer

__all__ = ["flushable_layer"]

pytestmark = pytest.mark.django_db(transaction=True)

MINE, THEIRS = "acct_1Seller", "acct_2Seller"
SELLERS = {"seller1": [MINE], "seller2": [THEIRS]}


def accounts_of_seller(user: Any) -> list[str]:
    return SELLERS.get(user.get_username(), [])


SETTINGS = {"SUBSCRIBE_ACCOUNTS": f"{__name__}.accounts_of_seller"}


def direct(charge_id: str, account: str, event_type: str = "charge.succeeded") -> dict[str, Any]:
    event = make_event(event_type, charge_object(charge_id))
    event["account"] = account
    return event


def destination(charge_id: str, account: str, **fields: Any) -> dict[str, Any]:
    obj = charge_object(charge_id, transfer_data={"destination": account, "amount": None}, **fields)
    return make_event("charge.succeeded", obj)


async def store_payments() -> dict[str, int]:
    """Seller 1's, seller 2's (direct and destination) and the platform's own; the first
    event pk of each."""
    rows = {
        "ch_mine": await ingest(direct("ch_mine", MINE)),
        "ch_theirs": await ingest(direct("ch_theirs", THEIRS)),
        "ch_theirs_dest": await ingest(destination("ch_theirs_dest", THEIRS)),
        "ch_platform": await ingest(make_event("charge.succeeded", charge_object("ch_platform"))),
    }
    await ingest(direct("ch_mine", MINE, "charge.updated"))  # after the others: to resume
    return {tx_id: result.event.pk for tx_id, result in rows.items()}


@database_sync_to_async
def login(username: str) -> str:
    user = get_user_model().objects.create_user(username, password="x")
    return session_cookie(user)


async def frames_of(client: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
    frames = []
    while not await client.nothing(timeout=quiet):
        frames.append(await client.recv())
    return frames


def accounts_in(frames: list[dict[str, Any]]) -> set[Any]:
    return {f["headers"]["account"] for f in frames if f.get("type") == "message"}


#: Selectors that would reach beyond seller 1's own account: every one is refused.
BEYOND = [
    "",
    "status = 'succeeded'",
    "type = 'charge.succeeded'",
    "account = 'acct_2Seller'",
    "account = 'acct_1Seller' OR account = 'acct_2Seller'",
    "account IN ('acct_1Seller', 'acct_2Seller')",
    "account = 'acct_1Seller' OR TRUE",
    "account = 'acct_1Seller' OR NOT account = 'acct_1Seller'",
    "account = 'acct_1Seller' OR account IS NULL",
    "account IN ('acct_1Seller') OR status = 'succeeded'",
    "(account = 'acct_1Seller' AND status = 'succeeded') OR status = 'refunded'",
    "NOT account <> 'acct_2Seller'",
    "NOT NOT account = 'acct_2Seller'",
    "NOT (account = 'acct_1Seller')",
    "account <> 'acct_1Seller'",
    "account NOT IN ('acct_1Seller')",
    "account LIKE 'acct_%'",
    "account = account",
    "'acct_1Seller' = 'acct_1Seller'",
    "ACCOUNT = 'acct_1Seller'",  # another header: names are case-sensitive
    "account = 'acct_1seller'",  # another account: ids are case-sensitive
    "account = 'acct_1Seller ' OR account = 'acct_2Seller'",
    "account = 'acct_1Seller' AND account = 'acct_2Seller'",  # pins no account at all
]

#: Selectors pinned to seller 1's account however they are written: allowed, and they
#: still deliver seller 1's payments only.
PINNED_TO_MINE = [
    "account = 'acct_1Seller'",
    "'acct_1Seller' = account",
    "account IN ('acct_1Seller')",
    "account = 'acct_1Seller' AND (account = 'acct_2Seller' OR TRUE)",
    "account = 'acct_1Seller' AND NOT account = 'acct_2Seller'",
    "(account = 'acct_1Seller' OR account = 'acct_1Seller') AND status = 'succeeded'",
    "((account = 'acct_1Seller')) AND (id = 'ch_theirs' OR id = 'ch_mine' OR TRUE)",
]


@pytest.mark.parametrize("policy", ["pinned", "staff"])
async def test_every_selector_beyond_a_sellers_account_is_refused(policy: str) -> None:
    with override_settings(STRIPE_BRIDGE={**SETTINGS, "SUBSCRIBE_POLICY": policy}):
        seller = await open_client(cookie=await login("seller1"))
        for number, text in enumerate(BEYOND):
            answer = await seller.subscribe(text, subscription=f"b{number}", replay="none")
            assert (answer["type"], answer.get("code")) == ("error", "forbidden"), text
        await seller.close()


async def test_a_selector_pinned_to_the_own_account_delivers_only_its_payments_live() -> None:
    with override_settings(STRIPE_BRIDGE=SETTINGS):
        seller = await open_client(cookie=await login("seller1"))
        for number, text in enumerate(PINNED_TO_MINE):
            answer = await seller.subscribe(text, subscription=f"p{number}", replay="none")
            assert answer["type"] == "subscribed", text
        await store_payments()
        frames = await frames_of(seller)
        assert frames and accounts_in(frames) == {MINE}
        assert {f["subscription"] for f in frames} == {f"p{n}" for n in range(len(PINNED_TO_MINE))}
        assert {f["headers"]["id"] for f in frames} == {"ch_mine"}
        await seller.close()


@pytest.mark.parametrize("mode", ["latest", "all"])
async def test_replay_and_resume_give_a_seller_nothing_of_another_account(mode: str) -> None:
    """Ids pinned beside the own account (``staff`` refuses ids alone): the other account's
    stored events are not replayed, resumed nor sent live."""
    cursors = await store_payments()
    with override_settings(STRIPE_BRIDGE={**SETTINGS, "SUBSCRIBE_POLICY": "staff"}):
        seller = await open_client(cookie=await login("seller1"))
        ids = "id IN ('ch_mine', 'ch_theirs', 'ch_theirs_dest', 'ch_platform')"
        for frame in (
            {"selector": "id = 'ch_theirs'", "subscription": "refused", "replay": mode},
            {
                "selector": f"{ids} AND account = '{MINE}'",
                "subscription": "replayed",
                "replay": mode,
            },
            {
                "selector": f"account = '{MINE}' AND {ids}",
                "subscription": "resumed",
                "since": str(cursors["ch_mine"]),
            },
            {
                "selector": f"account = '{MINE}'",
                "channel": "stripe/ch_theirs",
                "subscription": "chan",
                "replay": mode,
            },
        ):
            await seller.send({"action": "subscribe", **frame})
        frames = await frames_of(seller)
        answers = {
            f["subscription"]: f.get("code", f["type"]) for f in frames if "headers" not in f
        }
        assert answers == {
            "refused": "forbidden",
            "replayed": "subscribed",
            "resumed": "subscribed",
            "chan": "subscribed",
        }
        stored = [f for f in frames if f.get("type") == "message"]
        assert {f["headers"]["id"] for f in stored} == {"ch_mine"}
        assert accounts_in(stored) == {MINE}
        # Seller 1's own: replayed, and resumed after its first event.
        assert {f["subscription"] for f in stored} == {"replayed", "resumed"}
        resumed_types = [f["headers"]["type"] for f in stored if f["subscription"] == "resumed"]
        assert resumed_types == ["charge.updated"]
        # Live: another account's event about each id, and a refund of the other's charge.
        await ingest(direct("ch_theirs", THEIRS, "charge.refunded"))
        await ingest(destination("ch_theirs_dest", THEIRS, amount_refunded=1000, refunded=True))
        await ingest(direct("ch_mine", MINE, "charge.refunded"))
        live = await frames_of(seller)
        assert live and accounts_in(live) == {MINE}
        assert {f["headers"]["type"] for f in live} == {"charge.refunded"}
        await seller.close()


async def test_the_catch_up_after_layer_loss_and_resume_filter_by_account() -> None:
    """What a pinned subscription replays after the layer lost its state (``all`` since a
    time) and on resume (after a cursor), read as the consumer reads them."""
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    cursors = await store_payments()
    ids = ["ch_mine", "ch_theirs", "ch_theirs_dest", "ch_platform"]
    listed = ", ".join(f"'{tx_id}'" for tx_id in ids)
    selector = compile_selector(f"account = '{MINE}' AND id IN ({listed})")
    read = database_sync_to_async(replay.replay_messages)
    caught_up = await read(ids, replay.ALL, selector, since=before)
    latest = await read(ids, replay.LATEST, selector)
    resumed = await database_sync_to_async(resume_messages)(ids, selector, cursors["ch_mine"])
    assert [m["headers"]["type"] for m in caught_up] == ["charge.succeeded", "charge.updated"]
    assert [m["headers"]["type"] for m in latest + resumed] == ["charge.updated"] * 2
    for message in caught_up + latest + resumed:
        assert (message["transaction_id"], message["headers"]["account"]) == ("ch_mine", MINE)
    # For comparison: the same reads without the pin give every account's.
    broad = compile_selector(f"id IN ({listed})")
    assert len(await read(ids, replay.ALL, broad, since=before)) == 5
    assert len(await database_sync_to_async(resume_messages)(ids, broad, cursors["ch_mine"])) == 4


PATH = "/api/services/Stripe/events"


#: The two front doors of a stream: ``with_stripe_webhook``'s lean path, and the view.
FRONT_DOORS = {
    "lean": lambda: with_stripe_webhook(get_asgi_application()),
    "view": get_asgi_application,
}


#: A client address of these streams' own: the streams opened per address a second are
#: bounded, and other tests' streams come from 127.0.0.1.
STREAM_CLIENTS = {"lean": "192.0.2.10", "view": "192.0.2.11"}


async def open_stream(
    query: dict[str, str], cookie: str, front: str
) -> tuple[asyncio.Queue[Any], Any]:
    """An events (SSE) request with ``cookie`` through ``front``; its queue of body chunks
    and its task."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
        "method": "GET", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
        "query_string": urlencode(query).encode(), "root_path": "",
        "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
        "client": (STREAM_CLIENTS[front], 5000), "server": ("testserver", 80),
    }  # fmt: skip
    chunks: asyncio.Queue[Any] = asyncio.Queue()
    gone = asyncio.Event()
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            chunks.put_nowait(message.get("body", b""))
            if not message.get("more_body"):
                chunks.put_nowait(None)

    task = asyncio.ensure_future(FRONT_DOORS[front]()(scope, receive, send))
    task.gone = gone  # type: ignore[attr-defined]
    return chunks, task


async def stream_frames(chunks: asyncio.Queue[Any], quiet: float = 1.0) -> list[dict[str, Any]]:
    """The frames that came until the stream ended or was quiet (the first one awaited)."""
    text = b""
    while True:
        try:
            chunk = await asyncio.wait_for(chunks.get(), quiet if b"data: " in text else 5)
        except TimeoutError:
            break
        if chunk is None:
            break
        text += chunk
    lines = text.decode().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: ")]


@pytest.mark.parametrize("front", sorted(FRONT_DOORS))
async def test_an_sse_stream_holds_a_seller_to_its_own_account(front: str) -> None:
    await store_payments()
    with override_settings(STRIPE_BRIDGE=SETTINGS):
        cookie = await login("seller1")
        for selector in ("", f"account = '{THEIRS}'", f"account = '{MINE}' OR TRUE"):
            chunks, task = await open_stream({"selector": selector}, cookie, front)
            frames = await stream_frames(chunks)
            assert [f.get("code") for f in frames] == ["forbidden"], selector
            await asyncio.wait_for(task, 5)
        query = {"selector": f"account = '{MINE}' AND id IN ('ch_mine', 'ch_theirs')"}
        chunks, task = await open_stream({**query, "replay": "all"}, cookie, front)
        opened = await stream_frames(chunks)
        assert opened[0]["type"] == "subscribed"
        assert [f["headers"]["id"] for f in opened[1:]] == ["ch_mine", "ch_mine"]
        await ingest(direct("ch_theirs", THEIRS, "charge.refunded"))
        await ingest(direct("ch_other", THEIRS))
        await ingest(direct("ch_mine", MINE, "charge.refunded"))
        live = await stream_frames(chunks)
        assert [(f["headers"]["id"], f["headers"]["account"]) for f in live] == [("ch_mine", MINE)]
        task.gone.set()
        await asyncio.wait_for(task, 5)


@pytest.mark.redis
async def test_the_catch_up_after_a_real_layer_state_loss_gives_only_the_own_account(
    flushable_layer: Any,
) -> None:
    """Redis loses every group membership (``FLUSHDB``): what a seller's subscription missed
    comes back by catch-up replay, its own account's events only."""
    from tests.test_recovery import PROBE_INTERVAL

    with override_settings(STRIPE_BRIDGE={**settings.STRIPE_BRIDGE, **SETTINGS}):
        seller = await open_client(cookie=await login("seller1"))
        answer = await seller.subscribe(
            f"account = '{MINE}' AND id IN ('ch_mine', 'ch_theirs')",
            subscription="s",
            replay="none",
        )
        assert answer["type"] == "subscribed"
        await asyncio.sleep(PROBE_INTERVAL * 2)  # the watch has seen the layer work
        await flushable_layer.flushdb()
        await ingest(direct("ch_theirs", THEIRS))
        await ingest(direct("ch_theirs", THEIRS, "charge.refunded"))
        missed = await ingest(direct("ch_mine", MINE))
        frame = await seller.recv(timeout=60)
        assert (frame["headers"]["event_id"], frame["replayed"]) == (missed.event.event_id, True)
        assert await seller.nothing(timeout=1.5)
        later = await ingest(direct("ch_theirs", THEIRS, "charge.updated"))
        assert later.event.account == THEIRS
        assert await seller.nothing(timeout=1.0)
        await seller.close()


@pytest.mark.parametrize("policy", ["pinned", "staff"])
def test_polling_a_transaction_answers_as_the_subscribe_policy_would(policy: str) -> None:
    """``GET transactions/<id>``: under ``pinned`` knowing the id is enough (as for a
    subscription to it); under ``staff`` only staff, and a seller for its own account's."""
    from django.test import Client as HttpClient
    from django.urls import reverse

    from django_stripe_bridge.ingest import ingest_event

    ingest_event(direct("ch_mine", MINE), publish=False)
    ingest_event(direct("ch_theirs", THEIRS), publish=False)
    ingest_event(make_event("charge.succeeded", charge_object("ch_platform")), publish=False)
    users = get_user_model().objects
    clients = {"anonymous": HttpClient(), "seller1": HttpClient(), "staff": HttpClient()}
    clients["seller1"].force_login(users.create_user("seller1", password="x"))
    clients["staff"].force_login(users.create_user("staff", password="x", is_staff=True))
    answers = {}
    with override_settings(STRIPE_BRIDGE={**SETTINGS, "SUBSCRIBE_POLICY": policy}):
        for who, http in clients.items():
            for tx_id in ("ch_mine", "ch_theirs", "ch_platform", "ch_missing"):
                answer = http.get(reverse("stripe_bridge:transaction", args=[tx_id]))
                answers[who, tx_id] = answer.status_code
                if answer.status_code == 403:
                    assert answer.json()["error"]["code"] == "permission_denied"
    missing = {key: code for key, code in answers.items() if key[1] == "ch_missing"}
    assert set(missing.values()) == {404}
    found = {key: code for key, code in answers.items() if key[1] != "ch_missing"}
    if policy == "pinned":
        assert set(found.values()) == {200}
    else:
        allowed = {key for key, code in found.items() if code == 200}
        assert allowed == {("seller1", "ch_mine")} | {
            ("staff", tx) for tx in ("ch_mine", "ch_theirs", "ch_platform")
        }
        assert {code for key, code in found.items() if key not in allowed} == {403}
