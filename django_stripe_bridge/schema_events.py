"""The Server-Sent Events endpoint in the OpenAPI description: ``GET events``.

The stream is a plain async Django view (and a lean ASGI path), which drf-spectacular
does not enumerate; ``add_events_operation`` is a drf-spectacular postprocessing hook
(``POSTPROCESSING_HOOKS``, set by ``views.SchemaView`` for its own schema only) that
describes it with drf-spectacular's builders: its query parameters, the ``Last-Event-ID``
header, the ``text/event-stream`` answer and the statuses of a refused request.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from drf_spectacular.plumbing import build_media_type_object, build_parameter_type

from .conf import REPLAY_MODES, bridge_settings
from .selectors import MAX_SELECTOR_LENGTH

#: The operation's id (schema fuzzers should leave it out: a stream does not end).
OPERATION_ID = "stripe_events_stream"
#: A cursor: the ``id:`` of an event a stream sent. Any other value is not an error: the
#: stream answers ``recovered: false`` and replays ``latest``.
CURSOR_SCHEMA = {"type": "string"}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

STREAM_EXAMPLE = (
    "retry: 2000\n\n"
    "event: subscribed\n"
    'data: {"type":"subscribed","subscription":"default","channel":"stripe",'
    '"selector":"id = \'ch_1Cmms9I56A1133zjexAcwndb\'"}\n\n'
    "id: 1042\n"
    "event: message\n"
    'data: {"type":"message","subscription":"default","channel":"stripe",'
    '"headers":{"id":"ch_1Cmms9I56A1133zjexAcwndb","type":"charge.succeeded",'
    '"status":"succeeded"},"data":{},"replayed":true,"cursor":"1042"}\n\n'
    ": keep-alive\n\n"
)


def add_events_operation(
    result: dict[str, Any], generator: Any, request: Any, public: bool, **kwargs: Any
) -> dict[str, Any]:
    """Add ``GET <prefix>events`` beside the schema's own URL (a postprocessing hook)."""
    if request is None:
        return result
    prefix = re.sub(r"schema/?$", "", request.path_info)
    result.setdefault("paths", {})[prefix + "events"] = {"get": events_operation()}
    return result


def events_operation() -> dict[str, Any]:
    """``GET events`` as an OpenAPI operation."""
    channel = bridge_settings.CHANNEL
    query: Literal["query"] = "query"
    return {
        "operationId": OPERATION_ID,
        "summary": "Follow payments live (Server-Sent Events)",
        "description": (
            "One subscription as a text/event-stream: each event's `event:` is a frame type "
            "of the websocket protocol (`subscribed`, `message`, `error`), its `data:` the "
            "frame's JSON, and a `message` has `id:`, its resume cursor. An `error` event "
            "ends the stream; `: keep-alive` comments every SSE_HEARTBEAT seconds keep it "
            "open. The stream does not end by itself: a client that waits for the whole "
            "body waits for ever (leave this operation out of schema fuzzing). Needs an ASGI "
            "server. See docs/websocket-protocol.md, Server-Sent Events."
        ),
        "tags": ["stripe-bridge"],
        "parameters": [
            build_parameter_type(
                "channel",
                {"type": "string", "default": channel, "pattern": f"^{re.escape(channel)}(/.+)?$"},
                query,
                description=f"`{channel}`, or `{channel}/<transaction id>` for one payment.",
            ),
            build_parameter_type(
                "selector",
                {"type": "string", "maxLength": MAX_SELECTOR_LENGTH},
                query,
                description="Which events (docs/selectors.md), e.g. `id = 'ch_…'`; the "
                "subscription policy decides who may subscribe to what.",
            ),
            build_parameter_type(
                "replay",
                {"type": "string", "default": bridge_settings.REPLAY},
                query,
                enum=list(REPLAY_MODES),
                description="Stored events sent first: the latest of each payment, all of "
                "them, or none.",
            ),
            build_parameter_type(
                "last_event_id",
                CURSOR_SCHEMA,
                query,
                description="Resume after this cursor on the first connect (the header "
                "wins when both are sent).",
            ),
            build_parameter_type(
                "Last-Event-ID",
                CURSOR_SCHEMA,
                "header",
                description="The last `id:` received; EventSource sends it when it "
                "reconnects. The stream resumes after it (`recovered` in `subscribed`).",
            ),
        ],
        "responses": {
            "200": {
                "description": "The stream. A subscription the server refuses (a selector "
                "that does not parse or the policy refuses, an unknown channel or replay "
                "mode) is still a 200: an `error` event that names the problem, then the end.",
                "headers": {
                    "Cache-Control": {"schema": {"type": "string", "const": "no-cache"}},
                    "X-Accel-Buffering": {"schema": {"type": "string", "const": "no"}},
                },
                "content": {
                    "text/event-stream": build_media_type_object(
                        {"type": "string", "description": "Server-Sent Events."},
                    )
                    | {"example": STREAM_EXAMPLE}
                },
            },
            "403": _error("The request's Origin is not one of ALLOWED_HOSTS."),
            "429": {
                **_error(
                    "More stream opens from this client address than FRAME_BURST at once "
                    "and MAX_FRAMES_PER_SECOND a second (code `rate_limited`)."
                ),
                "headers": {"Retry-After": {"schema": {"type": "string", "const": "1"}}},
            },
            "501": _error("Served under WSGI: Server-Sent Events need an ASGI server."),
            "503": {
                **_error("The session could not be read (the database is unavailable)."),
                "headers": {"Retry-After": {"schema": {"type": "string", "const": "5"}}},
            },
        },
    }


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}


__all__ = ["OPERATION_ID", "add_events_operation", "events_operation"]
