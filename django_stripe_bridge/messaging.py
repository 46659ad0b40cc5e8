"""What a stored event looks like on the ``stripe`` channel, and how it gets there.

Headers are what selectors filter on; data is the payload a subscriber receives
(a safe summary by default). Events go to one Channels group per transaction id and to
one broadcast group, so the cost of an event does not grow with unrelated subscribers.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.utils import timezone

from . import fanout, metrics
from .conf import bridge_settings
from .events import event_object

if TYPE_CHECKING:
    from .models import StripeEvent, StripeTransaction

logger = logging.getLogger(__name__)

#: ``type`` of the channel-layer message; the consumer handles it in ``stripe_event()``.
EVENT_MESSAGE_TYPE = "stripe.event"
#: A batch of events for the broadcast group: ``{"type": …, "events": [message, …]}``.
EVENTS_MESSAGE_TYPE = "stripe.events"
#: Events in one broadcast batch at most.
MAX_BROADCAST_BATCH = 50

#: Seconds a publish may take before it counts as failed (the event stays unpublished).
PUBLISH_TIMEOUT = 5.0

#: What a layer raises when it cannot carry a message for its content: it could not
#: serialize it (channels-redis's msgpack: ``OverflowError`` for an integer beyond 64 bits,
#: ``TypeError`` for a type it does not know). Any other error means the layer failed.
REFUSALS: tuple[type[Exception], ...] = (TypeError, ValueError, OverflowError)

#: Fields of a charge, PaymentIntent, refund, dispute or Checkout Session kept in the
#: ``summary`` payload.
#: Nothing that identifies a person: no billing details, e-mail, address or fingerprint.
SUMMARY_FIELDS = (
    "id",
    "object",
    "amount",
    "amount_captured",
    "amount_received",
    "amount_refunded",
    "amount_total",
    "currency",
    "status",
    "payment_status",
    "paid",
    "captured",
    "refunded",
    "disputed",
    "failure_code",
    "failure_message",
    "payment_intent",
    "charge",
    "reason",
    "cancellation_reason",
    "created",
    "livemode",
)
_ERROR_FIELDS = ("type", "code", "decline_code", "message")
_OUTCOME_FIELDS = ("network_status", "reason", "risk_level", "seller_message", "type")

_GROUP_SAFE = re.compile(r"^[A-Za-z0-9_.-]{1,60}$")


# -- groups -------------------------------------------------------------------------------


def broadcast_group() -> str:
    """The group every event is sent to; broad selectors listen here."""
    return "stripe_bridge.all"


def transaction_group(transaction_id: str) -> str:
    """The group of one transaction's events; selectors that pin ``id`` listen here."""
    if _GROUP_SAFE.match(transaction_id):
        return f"stripe_bridge.tx.{transaction_id}"
    # Channels allows only a few characters in group names; other ids are hashed.
    digest = hashlib.sha256(transaction_id.encode()).hexdigest()[:40]
    return f"stripe_bridge.txh.{digest}"


# -- message content ----------------------------------------------------------------------


def _id_or_value(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def _pick(source: Any, fields: tuple[str, ...]) -> dict[str, Any] | None:
    if not isinstance(source, Mapping):
        return None
    return {name: source[name] for name in fields if name in source}


def summarize_object(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The ``summary`` projection of a Stripe object: payment state, no personal data."""
    summary = {name: _id_or_value(obj[name]) for name in SUMMARY_FIELDS if name in obj}
    if "last_payment_error" in obj:
        summary["last_payment_error"] = _pick(obj["last_payment_error"], _ERROR_FIELDS)
    if "outcome" in obj:
        summary["outcome"] = _pick(obj["outcome"], _OUTCOME_FIELDS)
    return summary


def build_headers(row: StripeEvent, status: str | None) -> dict[str, Any]:
    """The headers selectors see: ``id``, ``type``, ``event_id``, ``object``, ``status``,
    ``account``…"""
    obj = event_object(row.payload)
    amount = obj.get("amount")
    currency = obj.get("currency")
    return {
        "id": row.transaction_id or None,
        "type": row.type,
        "event_id": row.event_id,
        "object": row.object_type or None,
        "status": status,
        "amount": amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        "currency": currency if isinstance(currency, str) else None,
        "livemode": row.livemode,
        "created": row.created_timestamp,
        # The connected account, from the verified event (or its transaction): never a client's.
        "account": row.account or None,
    }


def build_data(row: StripeEvent) -> dict[str, Any]:
    """The message body: the whole event, or its summary (``MESSAGE_PAYLOAD``)."""
    if bridge_settings.MESSAGE_PAYLOAD == "full":
        return dict(row.payload)
    return {
        "event_id": row.event_id,
        "type": row.type,
        "created": row.created_timestamp,
        "livemode": row.livemode,
        "object": summarize_object(event_object(row.payload)),
    }


def status_after(row: StripeEvent, transaction: StripeTransaction | None) -> str | None:
    """The status to report with an event: its transaction's, else the object's own."""
    if transaction is not None and transaction.status:
        return transaction.status
    status = event_object(row.payload).get("status")
    return status if isinstance(status, str) else None


def build_message(
    row: StripeEvent, status: str | None, transaction: StripeTransaction | None = None
) -> dict[str, Any]:
    """The channel-layer message for one event.

    An event of a payment known by two ids (a Checkout Session and its PaymentIntent) names
    the other in ``linked_ids``: its subscribers get a copy under that id (`relabel`).
    """
    message = {
        "type": EVENT_MESSAGE_TYPE,
        "event_pk": row.pk,
        "event_id": row.event_id,
        "transaction_id": row.transaction_id,
        "headers": build_headers(row, status),
        "data": build_data(row),
        "sent_at": metrics.handed_over(),  # for the delivery-delay histogram
    }
    others = linked_ids(row, transaction)
    if others:
        message["linked_ids"] = others
    return message


def linked_ids(row: StripeEvent, transaction: StripeTransaction | None) -> list[str]:
    """The payment's ids other than the event's own transaction id."""
    if transaction is None or not transaction.linked_id:
        return []
    return [tx_id for tx_id in transaction.payment_ids if tx_id != row.transaction_id]


def relabel(message: dict[str, Any], transaction_id: str) -> dict[str, Any]:
    """``message`` as the subscribers of ``transaction_id``, another id of the same payment,
    see it: their id in ``transaction_id`` and in the ``id`` header."""
    copy = {k: v for k, v in message.items() if k != "linked_ids"}
    copy["transaction_id"] = transaction_id
    copy["headers"] = {**message["headers"], "id": transaction_id}
    return copy


def publish_link(transaction: StripeTransaction, *, exclude: set[int]) -> int:
    """Send the subscribers of each id of a payment just linked (a Checkout Session and its
    PaymentIntent) the events stored under the other id before the link; how many were sent.

    They went only to the other id's group when published. Never raises: a subscriber that
    misses them gets them by replay.
    """
    from .models import StripeEvent

    try:
        layer = get_layer()
        if layer is None:
            return 0
        rows = (
            StripeEvent.objects.filter(transaction_id__in=transaction.payment_ids)
            .exclude(pk__in=exclude)
            .order_by("created", "id")
        )
        copies = []
        for row in rows[:MAX_LINK_CATCH_UP]:
            message = build_message(row, status_after(row, transaction), transaction)
            copies += [relabel(message, other) for other in message.get("linked_ids", ())]
        async_to_sync(_send_copies)(layer, copies)
    except Exception as exc:
        logger.warning(
            "Could not send the earlier events of %s to the subscribers of %s (%s: %s); they "
            "get them by replay.",
            transaction.pk,
            transaction.linked_id,
            type(exc).__name__,
            exc,
        )
        return 0
    return len(copies)


#: Events sent at most when a link is made (a payment has a handful; replay has the rest).
MAX_LINK_CATCH_UP = 100


async def _send_copies(layer: Any, copies: list[dict[str, Any]]) -> None:
    async with asyncio.timeout(PUBLISH_TIMEOUT * 2):
        for copy in copies:
            await layer.group_send(transaction_group(copy["transaction_id"]), copy)


# -- publishing ---------------------------------------------------------------------------

#: Called before every publish. The app's ``ready()`` puts the outbox relay's starter here,
#: so the first publish of a process starts the relay that retries what fails, without
#: this module importing the outbox (which imports this module).
before_publish: list[Callable[[], None]] = []


def get_layer() -> Any:
    """The configured channel layer, or ``None`` when real-time is disabled."""
    from channels.layers import get_channel_layer

    return get_channel_layer()


async def _send(layer: Any, message: dict[str, Any]) -> None:
    groups = [broadcast_group()]
    if message["transaction_id"]:
        groups.insert(0, transaction_group(message["transaction_id"]))
    async with asyncio.timeout(PUBLISH_TIMEOUT):
        for group in groups:
            await layer.group_send(group, message)


def send_events(rows: Sequence[StripeEvent]) -> dict[int, str]:
    """Hand events to the channel layer now, in order, each with its transaction's current
    status; the ones it refused to carry (primary key → why).

    Raises if the layer is missing or failed before it took or refused every one of them.
    """
    layer = get_layer()
    if layer is None:
        raise RuntimeError("no channel layer is configured (CHANNEL_LAYERS)")
    from .models import StripeTransaction

    ids = {row.transaction_id for row in rows if row.transaction_id}
    transactions = StripeTransaction.objects.only("id", "status", "kind", "linked_id").in_bulk(
        list(ids)
    )
    messages = []
    for row in rows:
        tx = transactions.get(row.transaction_id)
        messages.append(build_message(row, status_after(row, tx), tx))
    outcome = async_to_sync(_send_in_order)(layer, messages)
    if len(outcome.refused) + sum(outcome.sent) < len(rows):
        raise RuntimeError(f"the channel layer took {sum(outcome.sent)} of {len(rows)} events")
    return {rows[index].pk: reason for index, reason in outcome.refused.items()}


def publish_event(row: StripeEvent, transaction: StripeTransaction | None = None) -> bool:
    """Hand an event to the channel layer and mark it published; ``False`` if that failed.

    Never raises: the event is safe in the database, and the outbox relay (``outbox.py``)
    publishes it a few seconds later, once the layer answers.
    """
    if transaction is None and row.transaction_id:
        from .models import StripeTransaction

        transaction = StripeTransaction.objects.filter(pk=row.transaction_id).first()
    return publish_events([(row, transaction)]) == 1


def publish_events(items: Sequence[tuple[StripeEvent, StripeTransaction | None]]) -> int:
    """Publish events in order and mark the ones sent published, in one update.

    ``items`` pairs each event with its transaction as it stood right after the event. Never
    raises; returns how many were published. What could not be sent stays unpublished
    until the outbox relay sends it.
    """
    layer, messages = _prepare(items)
    if layer is None:
        return 0
    try:
        outcome = async_to_sync(_send_in_order)(layer, messages)
    except Exception as exc:
        return _failed(items, exc)
    return mark_published(_sent_rows(items, outcome))


async def asend_events(
    items: Sequence[tuple[StripeEvent, StripeTransaction | None]],
) -> list[StripeEvent]:
    """Send events in order from the event loop; the rows sent, for ``mark_published()``.

    Never raises: what is not sent stays unpublished for the outbox relay.
    """
    layer, messages = _prepare(items)
    if layer is None:
        return []
    try:
        outcome = await _send_in_order(layer, messages)
    except Exception as exc:
        _failed(items, exc)
        return []
    return _sent_rows(items, outcome)


def _prepare(
    items: Sequence[tuple[StripeEvent, StripeTransaction | None]],
) -> tuple[Any, list[dict[str, Any]]]:
    """The layer to publish to (``None``: nothing to do) and the messages, in order."""
    for hook in before_publish:
        hook()
    if not items:
        return None, []
    try:
        layer = get_layer()
    except Exception as exc:
        _failed(items, exc)
        return None, []
    return layer, [build_message(row, status_after(row, tx), tx) for row, tx in items]


def _sent_rows(
    items: Sequence[tuple[StripeEvent, StripeTransaction | None]], outcome: Outcome
) -> list[StripeEvent]:
    """The rows sent; the refused ones stay unpublished, for the relay to count."""
    published = [row for (row, _), ok in zip(items, outcome.sent, strict=True) if ok]
    metrics.incr("events_published", len(published))
    metrics.incr("publish_refusals", len(outcome.refused))
    metrics.incr("publish_failures", len(items) - len(published) - len(outcome.refused))
    observe_publish_delay(published)
    return published


def observe_publish_delay(rows: Sequence[StripeEvent]) -> None:
    """Record, for each event just handed to the layer, how long ago its row was stored."""
    now = timezone.now()
    for row in rows:
        if row.received_at is not None:
            metrics.observe("publish_delay_seconds", (now - row.received_at).total_seconds())


def _failed(items: Sequence[tuple[StripeEvent, StripeTransaction | None]], exc: Exception) -> int:
    _log_unpublished([row for row, _ in items], exc)
    metrics.incr("publish_failures", len(items))
    return 0


def mark_published(published: list[StripeEvent]) -> int:
    """Set ``published_at`` of the events sent, in one update; how many were sent.

    Never raises: an event sent but not marked is sent again by the outbox relay, and
    subscribers drop the repeat (by event id).
    """
    if not published:
        return 0
    now = timezone.now()
    try:
        _set_published_at([row.pk for row in published], now)
    except Exception as exc:
        # Sent, but not marked: the relay sends them again, and subscribers drop the
        # repeats (by event id).
        logger.warning(
            "Published %d Stripe event(s) but could not mark them published (%s: %s).",
            len(published),
            type(exc).__name__,
            exc,
        )
        return len(published)
    for row in published:
        row.published_at = now
    return len(published)


#: Rows marked by one statement at most (well within every database's parameter limit).
MARK_CHUNK = 500


def _set_published_at(pks: list[int], when: Any) -> None:
    """``UPDATE … SET published_at = when WHERE id IN (pks)``: the statement written out
    once, not built by a queryset (it follows every batch of the webhook's group commit)."""
    from django.db import connections, router

    from .models import StripeEvent

    using = router.db_for_write(StripeEvent)
    connection = connections[using]
    meta = StripeEvent._meta
    quote = connection.ops.quote_name
    field = meta.get_field("published_at")
    value = field.get_db_prep_save(when, connection)
    table, column, pk = quote(meta.db_table), quote("published_at"), quote("id")
    with connection.cursor() as cursor:
        for start in range(0, len(pks), MARK_CHUNK):
            chunk = pks[start : start + MARK_CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            cursor.execute(
                f"UPDATE {table} SET {column} = %s WHERE {pk} IN ({marks})",  # noqa: S608
                [value, *chunk],
            )


def _log_unpublished(rows: Sequence[StripeEvent], exc: BaseException) -> None:
    logger.warning(
        "Could not publish Stripe event %s to the channel layer (%s: %s); the outbox relay "
        "publishes it once the layer answers ('stripe_bridge_republish --unpublished' does "
        "it at once).",
        ", ".join(row.event_id for row in rows[:5]) + (" …" if len(rows) > 5 else ""),
        type(exc).__name__,
        exc,
    )


@dataclass
class Outcome:
    """What became of messages handed to the layer: ``sent[i]`` for each, and the ones it
    refused to carry (index → why; the layer itself did not fail on those)."""

    sent: list[bool] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)


async def _send_in_order(layer: Any, messages: list[dict[str, Any]]) -> Outcome:
    """Send messages in the server's order; which went, and which the layer refused.

    Each goes to its transaction's group, and the broadcast group gets them in batches of
    ``MAX_BROADCAST_BATCH`` (one send each instead of one per event). A batch that the
    layer refuses for its content (``REFUSALS``) is sent again one message at a time,
    so that only the messages it cannot carry stay behind. Stops at the first failure of
    the layer itself: it is down, and the rest would each wait for the timeout. A batch
    whose broadcast failed counts as not sent, and the outbox relay sends it again
    (subscribers drop what they already had, by event id).
    """
    outcome = Outcome()
    for start in range(0, len(messages), MAX_BROADCAST_BATCH):
        chunk = messages[start : start + MAX_BROADCAST_BATCH]
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT * 2):
                await _send_chunk(layer, chunk)
        except REFUSALS:
            if not await _send_one_by_one(layer, chunk, start, outcome):
                break
            continue
        except Exception as exc:
            _log_layer_failure(chunk, exc)
            break
        outcome.sent += [True] * len(chunk)
    outcome.sent += [False] * (len(messages) - len(outcome.sent))
    return outcome


async def _send_chunk(layer: Any, chunk: list[dict[str, Any]]) -> None:
    """Send each message to its transaction's group (and a linked id's, relabelled), then the
    chunk to the broadcast group; groups without members are skipped (``fanout``)."""
    groups = {broadcast_group()}
    for message in chunk:
        groups.update(transaction_group(other) for other in message.get("linked_ids", ()))
        if message["transaction_id"]:
            groups.add(transaction_group(message["transaction_id"]))
    live = await fanout.occupied(layer, groups)
    plain = []
    for message in chunk:
        # A payment known by two ids: each id's subscribers get it under their id.
        for other in message.get("linked_ids", ()):
            group = transaction_group(other)
            if live is None or group in live:
                await layer.group_send(group, relabel(message, other))
        if "linked_ids" in message:
            message = {k: v for k, v in message.items() if k != "linked_ids"}
        plain.append(message)
        if message["transaction_id"]:
            group = transaction_group(message["transaction_id"])
            if live is None or group in live:
                await layer.group_send(group, message)
    if live is None or broadcast_group() in live:
        batch = {"type": EVENTS_MESSAGE_TYPE, "events": plain}
        await layer.group_send(broadcast_group(), batch if len(plain) > 1 else plain[0])


async def _send_one_by_one(
    layer: Any, chunk: list[dict[str, Any]], start: int, outcome: Outcome
) -> bool:
    """Send a refused batch's messages alone, noting the ones refused; ``False`` when the
    layer itself failed (the rest are not sent)."""
    for offset, message in enumerate(chunk):
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT * 2):
                await _send_chunk(layer, [message])
        except REFUSALS as exc:
            reason = f"{type(exc).__name__}: {exc}"[:300]
            outcome.refused[start + offset] = reason
            outcome.sent.append(False)
            logger.error(
                "The channel layer refused to carry Stripe event %s (%s); it stays "
                "unpublished, and the outbox relay gives up on it after a few refusals.",
                message["headers"].get("event_id"),
                reason,
            )
            continue
        except Exception as exc:
            _log_layer_failure(chunk[offset:], exc)
            return False
        outcome.sent.append(True)
    return True


def _log_layer_failure(chunk: list[dict[str, Any]], exc: Exception) -> None:
    logger.warning(
        "Could not publish Stripe event %s%s to the channel layer (%s: %s); the "
        "outbox relay publishes it once the layer answers.",
        chunk[0]["headers"].get("event_id"),
        f" and {len(chunk) - 1} more" if len(chunk) > 1 else "",
        type(exc).__name__,
        exc,
    )
