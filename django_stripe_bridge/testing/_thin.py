"""Event Destinations (Stripe's v2 API) in the stand-in, with thin payloads.

- ``POST /v2/core/event_destinations`` (JSON, as the v2 API takes it) makes a destination of
  type ``webhook_endpoint``; ``event_payload`` is ``thin`` or ``snapshot``; ``enabled_events``
  names v1 events as ``v1.<type>`` (``*`` takes all); ``events_from`` ``@self`` (the
  platform's events, the default) and/or ``@accounts`` (the connected accounts'). The signing
  secret is in the answer when ``include`` asks for ``webhook_endpoint.signing_secret``.
- Each v1 event a thin destination wants is sent as a notification (``object:
  "v2.core.event"``, ``related_object``, ``context`` for a connected account's) signed like a
  webhook; a snapshot destination gets the v1 event itself.
- ``GET /v2/core/events/{id}`` answers the event, with ``snapshot_event`` naming the v1
  event it stands for, to a request whose ``Stripe-Context`` is the event's ``context`` (none
  for the platform's); any other request gets a 404, as from Stripe. ``related_object.url``
  is the object's v1 path (``/v1/checkout/sessions/cs_…``), fetched with the same context.
- ``GET /v2/core/event_destinations`` lists them; ``POST /v2/core/event_destinations/{id}/ping``
  sends ``v2.core.event_destination.ping``.
- ``POST /_standin/v2_events/{id}`` ``{"snapshot_event": null}`` sets fields of a v2 event
  made so far (a test makes one that has no snapshot event, only its related object).
- ``POST /_standin/faults`` ``{"path": "/v2/core/events/", "answers": [500, "timeout"]}``
  makes the next requests under ``path`` fail that way, one answer each (``timeout`` holds
  the request ``hold`` seconds, 30 by default, then fails it). An answer may also be
  ``{"status": 200, "body": {…}}``: that body is answered instead of the real one (a
  corrupted or hostile answer, such as an event the client's database cannot store).
  ``GET /_standin/faults`` lists the answers not given yet (a test sees a request arrive).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import json
import secrets
from typing import Any

import aiohttp
from aiohttp import web

from ._errors import StripeAPIError
from ._signing import sign_payload

#: Event destinations by id.
destinations: dict[str, dict[str, Any]] = {}
#: Their signing secrets (never listed back).
_secrets: dict[str, str] = {}
#: The v2 events made so far, by id.
events: dict[str, dict[str, Any]] = {}
#: Failures to answer with: (path prefix, [500 | "timeout" | {"status", "body"}, …], seconds
#: a timeout holds).
faults: list[list[Any]] = []


def reset() -> None:
    events.clear()
    faults.clear()


def clear_destinations() -> None:
    destinations.clear()
    _secrets.clear()


def _now_iso() -> str:
    return dt.datetime.now(tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _v2_error(status: int, message: str, code: str = "invalid_request") -> web.Response:
    body = {"error": {"type": "invalid_request_error", "code": code, "message": message}}
    return web.json_response(body, status=status)


# --- the v2 routes ------------------------------------------------------------------------


async def create_destination(request: web.Request) -> web.Response:
    try:
        data = await request.json()
    except ValueError:
        return _v2_error(400, "The v2 API takes a JSON body.")
    payload = data.get("event_payload")
    url = (data.get("webhook_endpoint") or {}).get("url")
    enabled = data.get("enabled_events")
    if payload not in ("thin", "snapshot"):
        return _v2_error(400, "event_payload must be 'thin' or 'snapshot'.")
    if data.get("type") != "webhook_endpoint" or not isinstance(url, str) or not url:
        return _v2_error(400, "The stand-in makes destinations of type 'webhook_endpoint' only.")
    if not isinstance(enabled, list) or not enabled:
        return _v2_error(400, "enabled_events must list event types.")
    destination_id = "ed_test_" + secrets.token_hex(12)
    secret = "whsec_" + secrets.token_urlsafe(24)
    now = _now_iso()
    destination = {
        "id": destination_id,
        "object": "v2.core.event_destination",
        "created": now,
        "updated": now,
        "description": data.get("description") or "",
        "enabled_events": list(enabled),
        "event_payload": payload,
        "events_from": list(data.get("events_from") or ["@self"]),
        "livemode": False,
        "metadata": data.get("metadata") or {},
        "name": data.get("name") or destination_id,
        "snapshot_api_version": data.get("snapshot_api_version"),
        "status": "enabled",
        "status_details": None,
        "type": "webhook_endpoint",
        "webhook_endpoint": {"signing_secret": None, "url": url},
    }
    destinations[destination_id] = destination
    _secrets[destination_id] = secret
    answer = json.loads(json.dumps(destination))
    if "webhook_endpoint.signing_secret" in (data.get("include") or []):
        answer["webhook_endpoint"]["signing_secret"] = secret
    return web.json_response(answer)


async def list_destinations(request: web.Request) -> web.Response:
    return web.json_response(
        {"data": list(destinations.values()), "next_page_url": None, "previous_page_url": None}
    )


async def retrieve_event(request: web.Request) -> web.Response:
    event = events.get(request.match_info["id"])
    context = request.headers.get("Stripe-Context") or None
    if event is None or event["context"] != context:
        shown = request.match_info["id"][:60]
        return _v2_error(404, f"No such event: '{shown}' in context {context!r}", "not_found")
    return web.json_response(event)


async def change_event(request: web.Request) -> web.Response:
    event = events.get(request.match_info["id"])
    if event is None:
        return _v2_error(404, "No such event.", "not_found")
    event.update(await request.json())
    return web.json_response(event)


async def ping(request: web.Request) -> web.Response:
    destination = destinations.get(request.match_info["id"])
    if destination is None:
        return _v2_error(404, "No such event destination.", "not_found")
    event = _new_event(
        "v2.core.event_destination.ping",
        context=None,
        related={
            "id": destination["id"],
            "type": "v2.core.event_destination",
            "url": f"/v2/core/event_destinations/{destination['id']}",
        },
        snapshot=None,
    )
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        await _send(session, destination, _notification(event))
    return web.json_response(event)


# --- delivering ---------------------------------------------------------------------------


def _wants(destination: dict[str, Any], event_type: str, account: str | None) -> bool:
    scopes = destination["events_from"]
    scope_ok = (
        ("@accounts" in scopes or "other_accounts" in scopes)
        if account
        else ("@self" in scopes or "self" in scopes)
    )
    return scope_ok and any(
        fnmatch.fnmatchcase(event_type, pattern) for pattern in destination["enabled_events"]
    )


def _new_event(
    event_type: str, *, context: str | None, related: dict[str, Any] | None, snapshot: str | None
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_test_" + secrets.token_hex(12),
        "object": "v2.core.event",
        "type": event_type,
        "created": _now_iso(),
        "livemode": False,
        "context": context,
        "reason": None,
        "related_object": related,
        "changes": None,
        "snapshot_event": snapshot,
    }
    events[event["id"]] = event
    return event


def _notification(event: dict[str, Any]) -> dict[str, Any]:
    """What a thin destination is sent: the event without what must be fetched."""
    fields = ("id", "object", "type", "created", "livemode", "context", "reason", "related_object")
    return {name: event[name] for name in fields if event.get(name) is not None}


def thin_event_for(v1_event: Any) -> dict[str, Any]:
    """The v2 event that stands for a v1 event (made once, when first delivered)."""
    existing = getattr(v1_event, "_standin_thin", None)
    if existing is not None:
        return existing
    obj = v1_event.data["object"] if isinstance(v1_event.data, dict) else {}
    related = None
    if isinstance(obj, dict) and obj.get("id") and obj.get("object"):
        related = {
            "id": obj["id"],
            "type": obj["object"],
            # checkout.session → /v1/checkout/sessions/…
            "url": f"/v1/{obj['object'].replace('.', '/')}s/{obj['id']}",
        }
    event = _new_event(
        "v1." + v1_event.type,
        context=getattr(v1_event, "_standin_account", None),
        related=related,
        snapshot=v1_event.id,
    )
    v1_event._standin_thin = event
    return event


async def deliver(session: aiohttp.ClientSession, v1_event: Any, snapshot: bytes) -> None:
    """Send a v1 event to every destination that wants it, thin or as a snapshot."""
    account = getattr(v1_event, "_standin_account", None)
    for destination in list(destinations.values()):
        if destination["status"] != "enabled":
            continue
        thin = destination["event_payload"] == "thin"
        wanted = ("v1." + v1_event.type) if thin else v1_event.type
        if not _wants(destination, wanted, account):
            continue
        if thin:
            body = json.dumps(_notification(thin_event_for(v1_event)), indent=2).encode()
        else:
            body = snapshot
        await _send(session, destination, body)


async def _send(
    session: aiohttp.ClientSession, destination: dict[str, Any], body: dict[str, Any] | bytes
) -> None:
    from ._events import state

    payload = body if isinstance(body, bytes) else json.dumps(body, indent=2).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign_payload(payload, _secrets[destination["id"]]),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    record: dict[str, Any] = {
        "event": json.loads(payload).get("id"),
        "type": json.loads(payload).get("type"),
        "webhook": destination["id"],
    }
    try:
        async with session.post(
            destination["webhook_endpoint"]["url"], data=payload, headers=headers
        ) as response:
            await response.read()
            record["status"] = response.status
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"
    state.deliveries.append(record)


# --- faults -------------------------------------------------------------------------------


async def set_faults(request: web.Request) -> web.Response:
    data = await request.json()
    path, answers = data.get("path"), data.get("answers")
    if not isinstance(path, str) or not isinstance(answers, list):
        return _v2_error(
            400, "Give a 'path' prefix and a list of 'answers' (500, 'timeout', {status, body})."
        )
    faults.append([path, list(answers), float(data.get("hold", 30))])
    return web.json_response({"faults": len(faults)})


async def list_faults(request: web.Request) -> web.Response:
    return web.json_response(
        {"faults": [{"path": path, "answers": answers} for path, answers, _ in faults]}
    )


@web.middleware
async def fault_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    for fault in faults:
        path, answers, hold = fault
        if request.path.startswith(path) and answers:
            answer = answers.pop(0)
            if isinstance(answer, dict):
                return web.json_response(answer.get("body"), status=int(answer.get("status", 200)))
            if answer == "timeout":
                await asyncio.sleep(hold)
            raise StripeAPIError(500, "The stand-in failed on purpose.", type="api_error")
    return await handler(request)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v2/core/event_destinations", create_destination)
    app.router.add_get("/v2/core/event_destinations", list_destinations)
    app.router.add_post("/v2/core/event_destinations/{id}/ping", ping)
    app.router.add_get("/v2/core/events/{id}", retrieve_event)
    app.router.add_post("/_standin/faults", set_faults)
    app.router.add_get("/_standin/faults", list_faults)
    app.router.add_post("/_standin/v2_events/{id}", change_event)
