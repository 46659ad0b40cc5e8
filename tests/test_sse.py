"""Server-Sent Events in process, through both front doors — the lean ASGI path of
``with_stripe_webhook`` and the Django view under Django's own ASGI handler: headers, the
event format, heartbeats, the origin rule, the session's user, errors ending the stream,
and WSGI refused."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.test import override_settings

from django_stripe_bridge.asgi import with_stripe_webhook
from django_stripe_bridge.realtime import sse_http
from tests.realtime_fixtures import *  # noqa: F403
from tests.realtime_fixtures import charge_event, ingest, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

PATH = "/api/services/Stripe/events"
#: The two front doors: ``with_stripe_webhook``'s lean path, and the Django view alone.
APPS = {
    "lean": lambda: with_stripe_webhook(get_asgi_application()),
    "view": get_asgi_application,
}


@pytest.fixture(params=sorted(APPS), autouse=True)
def front(request: pytest.FixtureRequest) -> Any:
    """Every test of this module runs through each front door in turn, each with a fresh
    per-client budget of stream opens (its clients all come from 127.0.0.1)."""
    sse_http._budgets.clear()
    Stream.app = APPS[request.param]()
    return request.param


class Stream:
    """One request for an event stream, driven as an ASGI server would."""

    app: Any = None

    def __init__(
        self,
        query: dict[str, str],
        headers: list[tuple[bytes, bytes]] = (),
        method: str = "GET",
    ) -> None:
        self.scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
            "query_string": urlencode(query).encode(), "root_path": "",
            "headers": [(b"host", b"testserver"), *headers],
            "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
        }  # fmt: skip
        self.start: dict[str, Any] = {}
        self.chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._sent_request = False
        self.task = asyncio.ensure_future(self.app(self.scope, self._receive, self._send))
        self._buffer = b""

    async def _receive(self) -> dict[str, Any]:
        if not self._sent_request:
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
        else:
            self.chunks.put_nowait(message.get("body", b""))
            if not message.get("more_body"):
                self.chunks.put_nowait(None)

    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.start.get("headers", [])}

    async def block(self, timeout: float = 3.0) -> str | None:
        """The next event block (lines before a blank line); None at the end."""
        async with asyncio.timeout(timeout):
            while b"\n\n" not in self._buffer:
                chunk = await self.chunks.get()
                if chunk is None:
                    return None
                self._buffer += chunk
        block, self._buffer = self._buffer.split(b"\n\n", 1)
        return block.decode()

    async def body(self, timeout: float = 3.0) -> bytes:
        """The whole body of an answer that ends (a refusal)."""
        async with asyncio.timeout(timeout):
            while (chunk := await self.chunks.get()) is not None:
                self._buffer += chunk
        return self._buffer

    async def frame(self) -> tuple[dict[str, str], dict[str, Any]]:
        """The next event with data: its fields and its frame."""
        while True:
            block = await self.block()
            assert block is not None, "the stream ended"
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
            if "data" in fields:
                return fields, json.loads(fields["data"])

    async def disconnect(self) -> None:
        self._gone.set()
        await asyncio.wait_for(self.task, 5)


async def test_a_stream_answers_with_the_headers_and_the_event_format(front):
    row = (await ingest(charge_event("charge.succeeded", "ch_sse"))).event
    stream = Stream({"selector": "id = 'ch_sse'", "replay": "latest"})
    assert await stream.block() == f"retry: {2000}"
    assert stream.start["status"] == 200
    headers = stream.headers()
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    # The lean path answers before Django's middleware (whose sessions add Vary: Cookie).
    assert ("vary" in headers) == (front == "view")
    fields, frame = await stream.frame()
    assert (fields["event"], frame["type"], frame["subscription"]) == (
        "subscribed", "subscribed", "default",
    )  # fmt: skip
    assert "id" not in fields
    fields, frame = await stream.frame()
    assert (fields["event"], fields["id"]) == ("message", str(row.pk))
    assert (frame["cursor"], frame["replayed"]) == (str(row.pk), True)
    live = (await ingest(charge_event("charge.refunded", "ch_sse", amount_refunded=1))).event
    fields, frame = await stream.frame()
    assert (fields["id"], frame["replayed"]) == (str(live.pk), False)
    await stream.disconnect()


@pytest.mark.parametrize("how", ["header", "query"])
async def test_a_stream_resumes_from_last_event_id(how):
    rows = [
        (await ingest(charge_event("charge.updated", "ch_back", amount=n))).event for n in (1, 2, 3)
    ]
    query = {"selector": "id = 'ch_back'"}
    headers = []
    if how == "header":
        headers = [(b"last-event-id", str(rows[0].pk).encode())]
        query["last_event_id"] = "999999"  # the header wins
    else:
        query["last_event_id"] = str(rows[0].pk)
    stream = Stream(query, headers)
    _, answer = await stream.frame()
    assert answer["recovered"] is True
    got = [(await stream.frame())[0]["id"] for _ in rows[1:]]
    assert got == [str(r.pk) for r in rows[1:]]
    await stream.disconnect()


@override_settings(STRIPE_BRIDGE={"SSE_HEARTBEAT": 0.1})
async def test_an_idle_stream_sends_keep_alive_comments():
    stream = Stream({"selector": "id = 'ch_idle'"})
    await stream.frame()  # subscribed
    assert await stream.block() == ": keep-alive"
    assert await stream.block() == ": keep-alive"
    await stream.disconnect()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"selector": "id ="}, "invalid_selector"),
        ({"selector": "amount > 0"}, "forbidden"),
        ({"channel": "nope"}, "unknown_channel"),
        ({"selector": "id = 'x'", "replay": "some"}, "bad_frame"),
    ],
)
async def test_an_error_is_an_error_event_then_the_end(query, code):
    stream = Stream(query)
    fields, frame = await stream.frame()
    assert (fields["event"], frame["code"], frame["subscription"]) == ("error", code, "default")
    assert await stream.block() is None
    await asyncio.wait_for(stream.task, 5)


@pytest.mark.parametrize(
    ("origin", "status"),
    [(b"http://evil.example", 403), (b"http://testserver", 200), (b"null", 403)],
)
@override_settings(ALLOWED_HOSTS=["testserver"])
async def test_a_cross_origin_stream_needs_an_allowed_host(origin, status):
    stream = Stream({"selector": "id = 'ch_o'"}, [(b"origin", origin)])
    await stream.block()
    assert stream.start["status"] == status
    if status == 200:
        await stream.disconnect()
    else:
        assert stream.headers()["content-type"] == "application/json"


@database_sync_to_async
def login(username: str, *, staff: bool) -> str:
    user = get_user_model().objects.create_user(username, password="x", is_staff=staff)
    return session_cookie(user)


@pytest.mark.parametrize(("staff", "answer"), [(True, "subscribed"), (False, "forbidden")])
async def test_the_session_user_is_the_websocket_s(staff, answer):
    # An unpinned selector needs staff under the default policy: only a session says so.
    cookie = await login(f"u{int(staff)}", staff=staff)
    stream = Stream({"selector": "amount > 0"}, [(b"cookie", cookie.encode())])
    _, frame = await stream.frame()
    assert frame["type"] == "subscribed" if staff else frame["code"] == answer
    await stream.disconnect()


async def test_a_stream_is_get_only():
    stream = Stream({"selector": "id = 'ch_p'"}, method="OPTIONS")
    await stream.block()
    assert stream.start["status"] == 405
    assert "GET" in stream.headers()["allow"]
    await asyncio.wait_for(stream.task, 5)


@database_sync_to_async
def events_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    from django.test import Client

    schema = Client().get("/api/services/Stripe/schema?format=json").json()
    return schema, schema["paths"][PATH]["get"]["responses"]


@override_settings(
    ALLOWED_HOSTS=["testserver"], STRIPE_BRIDGE={"FRAME_BURST": 1, "MAX_FRAMES_PER_SECOND": 1}
)
async def test_the_answers_are_what_the_schema_says():
    """A stream, a refused origin and a client over its budget are answered as the OpenAPI
    schema describes them (schemathesis leaves the stream out: it never ends)."""
    import jsonschema

    schema, responses = await events_schema()
    origin = [(b"origin", b"http://testserver")]

    def described(stream: Stream) -> dict[str, Any]:
        answer = responses[str(stream.start["status"])]
        headers = stream.headers()
        assert headers["content-type"] in answer["content"]
        for name, header in answer.get("headers", {}).items():
            jsonschema.validate(headers[name.lower()], header["schema"])
        return answer

    ok = Stream({"selector": "id = 'ch_schema'"}, origin)
    await ok.block()
    assert ok.start["status"] == 200
    described(ok)
    await ok.disconnect()
    refused = [
        Stream({"selector": "id = 'ch_schema'"}, [(b"origin", b"http://evil.example")]),
        Stream({"selector": "id = 'ch_schema'"}, origin),  # the burst of one is spent
    ]
    for stream in refused:
        body = await stream.body()
        error = described(stream)["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**error, "components": schema["components"]}).validate(
            json.loads(body)
        )
    assert [stream.start["status"] for stream in refused] == [403, 429]


async def test_a_session_that_cannot_be_read_is_503_not_500(monkeypatch):
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError

    _, responses = await events_schema()
    cookie = await login("u503", staff=True)

    def database_down(self: Any) -> Any:
        raise OperationalError("the database is down")

    async def adatabase_down(self: Any) -> Any:
        raise OperationalError("the database is down")

    # The fault: Channels reads the session with load(), Django's async view with aload().
    monkeypatch.setattr(SessionStore, "load", database_down)
    monkeypatch.setattr(SessionStore, "aload", adatabase_down)
    stream = Stream({"selector": "id = 'ch_503'"}, [(b"cookie", cookie.encode())])
    body = json.loads(await stream.body())
    assert (stream.start["status"], body["error"]["code"]) == (503, "service_unavailable")
    assert (
        stream.headers()["retry-after"]
        == responses["503"]["headers"]["Retry-After"]["schema"]["const"]
    )
    assert "down" not in json.dumps(body)


@pytest.mark.parametrize("front", ["view"], indirect=True)  # WSGI has no lean path
def test_under_wsgi_the_view_answers_501(client, front):
    response = client.get(PATH, {"selector": "id = 'ch_w'"})
    assert response.status_code == 501
    assert response.json()["error"]["code"] == "not_asgi"


async def test_a_disconnect_leaves_the_groups(front):
    from channels.layers import get_channel_layer

    stream = Stream({"selector": "id = 'ch_leave'"})
    await stream.frame()
    layer = get_channel_layer()
    assert any(layer.groups.get(g) for g in layer.groups if g.endswith("ch_leave"))
    await stream.disconnect()
    assert not any(layer.groups.get(g) for g in layer.groups if g.endswith("ch_leave"))
