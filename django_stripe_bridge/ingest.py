"""The one path by which verified Stripe events become rows.

The webhook (its view and its ASGI path), ``stripe_bridge_sync`` and the tests all call
``ingest_events()`` (or ``ingest_event()`` for one). A batch is one database
transaction: its events are inserted in one statement that skips the ones already stored,
folded into their transactions' states under row locks
(``payment_state``), and, after the commit, the signals are sent
and the new events published to the channel layer.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connections, router, transaction
from django.dispatch import Signal
from django.utils import timezone

from . import batch_sql, pipeline, signals
from .events import (
    TRANSACTION_OBJECTS,
    VerifiedEvent,
    account_of,
    checkout_session_link,
    event_object,
    is_account_id,
    transaction_id_of,
    validate_event,
)
from .models import StripeEvent, StripeTransaction
from .payment_state import PaymentState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """What ingesting one event did: the stored row and whether this call created it.

    ``transaction`` is the event's transaction as it stood right after this event (a copy,
    when a batch held several events of one transaction).
    """

    event: StripeEvent
    created: bool
    transaction: StripeTransaction | None = None
    old_status: str | None = None
    status_changed: bool = False
    #: This event joined a Checkout Session to its PaymentIntent.
    linked: bool = False
    #: ``(session id, its old status)`` when this event changed the status a linked Checkout
    #: Session's row shows (its own ``transaction_status_changed`` is sent too).
    session_change: tuple[str, str | None] | None = None


def timestamp_to_datetime(value: int) -> dt.datetime:
    """Stripe's integer seconds as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(value, tz=dt.UTC)


def ingest_event(event: Mapping[str, Any], *, publish: bool = True) -> IngestResult:
    """Store a verified Stripe event exactly once and update its transaction.

    Safe under concurrent deliveries of the same event: one call creates the row, every
    other returns ``created=False`` and changes nothing. Raises
    ``InvalidEvent`` for a payload that is not an event.
    """
    return ingest_events([event], publish=publish)[0]


def ingest_events(
    events: Sequence[Mapping[str, Any]], *, publish: bool = True
) -> list[IngestResult]:
    """Store verified Stripe events exactly once, in one transaction; a result per event.

    An event stored before (by an earlier call, another process, or earlier in the same
    batch) gives ``created=False`` and changes nothing. Either the whole batch is committed
    or, on a database error, nothing of it is. Raises
    ``InvalidEvent`` (storing nothing) if one of the
    payloads is not an event.
    """
    for event in events:
        if not isinstance(event, VerifiedEvent):  # the webhook's were validated as parsed
            validate_event(event)
    if not events:
        return []
    using = router.db_for_write(StripeEvent)
    pipelined = using == router.db_for_write(StripeTransaction) and pipeline.available(using)
    if pipelined and batch_sql.supported(using):
        results = _ingest_pipelined(events, using)
        _after_commit(results, publish=publish)
        return results
    with transaction.atomic(using=using):
        fresh, inserted = _insert_events(events, using)
        rows = _rows_of(events, fresh, inserted(), using)
        results, changed = _update_transactions(rows, events)
        _save(changed)
        transaction.on_commit(lambda: _after_commit(results, publish=publish), using=using)
    return results


def _ingest_pipelined(events: Sequence[Mapping[str, Any]], using: str) -> list[IngestResult]:
    """``ingest_events()``' transaction in two round trips (``pipeline.py``): the events'
    insert and the lock of every transaction they name in the first, the fold's update and
    the commit in the second.

    The lock comes before the batch knows which of its events are new, so a repeated
    delivery locks its transaction too (creating its row if it is missing, as its first
    delivery would have).
    """
    with pipeline.transaction(using) as tx:
        fresh, inserted = _insert_events(events, using)
        named = [(fresh[e["id"]], e) for e in events if _folds(fresh[e["id"]], e)]
        wanted, accounts, _ = _wanted(named)
        locked = StripeTransaction.objects.lock_all_later(wanted, accounts)
        tx.sync()
        rows = _rows_of(events, fresh, inserted(), using)
        results, changed = _update_transactions(rows, events, locked=locked())
        tx.resume()
        _save(changed)
    return results


# --- storing the events --------------------------------------------------------------------


def _new_row(event: Mapping[str, Any]) -> StripeEvent:
    obj = event_object(event)
    object_type = obj.get("object")
    object_id = obj.get("id")
    return StripeEvent(
        event_id=event["id"],
        transaction_id=transaction_id_of(event)[:255],
        type=event["type"],
        object_type=object_type[:100] if isinstance(object_type, str) else "",
        object_id=object_id[:255] if isinstance(object_id, str) else "",
        livemode=event.get("livemode") is True,
        account=account_of(event),
        api_version=str(event.get("api_version") or "")[:50],
        created=timestamp_to_datetime(event["created"]),
        payload=dict(event),
    )


def _insert_events(
    events: Sequence[Mapping[str, Any]], using: str
) -> tuple[dict[str, StripeEvent], Callable[[], dict[str, int]]]:
    """Send the insert of the events not stored yet: a row per event id, and what reads
    ``{event id: primary key}`` of the rows inserted."""
    fresh: dict[str, StripeEvent] = {}
    texts: dict[str, str] = {}
    for event in events:
        if event["id"] not in fresh:
            fresh[event["id"]] = _new_row(event)
            if isinstance(event, VerifiedEvent):
                texts[event["id"]] = event.text
    # In event id order: two batches that share events then wait for each other's unique
    # index entries in the same order, never in a circle (a deadlock on PostgreSQL).
    ordered = [fresh[event_id] for event_id in sorted(fresh)]
    if batch_sql.supported(using):
        # A webhook's payload is stored as the text Stripe signed, not written out anew.
        encoded = {"payload": [texts.get(row.event_id) for row in ordered]}
        sent = batch_sql.insert_new_later(ordered, unique="event_id", using=using, encoded=encoded)
        return fresh, sent
    created_ids = _insert_one_by_one(ordered, using)
    return fresh, lambda: created_ids


def _rows_of(
    events: Sequence[Mapping[str, Any]],
    fresh: Mapping[str, StripeEvent],
    created_ids: Mapping[str, int],
    using: str,
) -> list[tuple[StripeEvent, bool]]:
    """Each event's row and whether this batch created it (``created_ids``: the ids of the
    rows inserted of ``fresh``, the batch's rows by event id)."""
    stored_before = [event_id for event_id in fresh if event_id not in created_ids]
    existing = (
        {
            row.event_id: row
            for row in StripeEvent.objects.using(using).filter(event_id__in=stored_before)
        }
        if stored_before
        else {}
    )
    results: list[tuple[StripeEvent, bool]] = []
    seen: set[str] = set()
    for event in events:
        event_id = event["id"]
        if event_id in created_ids and event_id not in seen:
            seen.add(event_id)
            row = fresh[event_id]
            row.pk = created_ids[event_id]
            results.append((row, True))
        else:
            # Stored before, or a repeat within this batch.
            row = existing.get(event_id) or fresh[event_id]
            if row.pk is None:  # pragma: no cover - the row was there a moment ago
                raise IntegrityError(f"event {event_id} was neither inserted nor found")
            results.append((row, False))
    return results


def _insert_one_by_one(rows: list[StripeEvent], using: str) -> dict[str, int]:
    """The same for other databases: one insert per row, each in a savepoint."""
    created = {}
    for row in rows:
        try:
            with transaction.atomic(using=using):
                row.save(force_insert=True, using=using)
        except IntegrityError:
            continue  # stored before: another delivery of this event got there first
        created[row.event_id] = row.pk
    return created


# --- folding them into their transactions -----------------------------------------------------


def _wanted(
    named: Sequence[tuple[StripeEvent, Mapping[str, Any]]],
) -> tuple[dict[str, bool], dict[str, str], dict[str, str]]:
    """The transactions the events of ``named`` fold into (id → livemode of a new row), the
    connected accounts of new rows, and the sessions the events link to their payments."""
    wanted = {row.transaction_id: row.livemode for row, _ in named}
    links = {}
    for row, event in named:
        link = checkout_session_link(event)
        if link is not None:
            links[link[0]] = link[1]
            wanted.setdefault(link[0], row.livemode)
    accounts = {row.transaction_id: row.account for row, _ in named if row.account}
    return wanted, accounts, links


def _update_transactions(
    rows: list[tuple[StripeEvent, bool]],
    events: Sequence[Mapping[str, Any]],
    *,
    locked: Mapping[str, StripeTransaction] | None = None,
) -> tuple[list[IngestResult], dict[str, tuple[StripeTransaction, set[str]]]]:
    """Fold the new events into their transactions, locked (by ``lock_all()``, or among
    ``locked`` when they were locked already); each event's result, and the fields changed
    of each transaction (for ``_save()``)."""
    new = [
        (row, event)
        for (row, created), event in zip(rows, events, strict=True)
        if created and _folds(row, event)
    ]
    wanted, accounts, links = _wanted(new)
    if locked is None:
        transactions = StripeTransaction.objects.lock_all(wanted, accounts)
    else:
        transactions = {tx_id: locked[tx_id] for tx_id in wanted}
    _lock_linked(transactions)
    given_account = _accounts_from_sessions(transactions, links)
    given_account |= _share_accounts(new, transactions)
    states = {tx_id: tx.payment_state() for tx_id, tx in transactions.items()}
    _fold_histories(transactions, states, exclude=[row.pk for row, _ in new])

    after: dict[int, IngestResult] = {}
    changed_fields: dict[str, set[str]] = {}
    holder_of = {row.pk: _holder(transactions, row.transaction_id) for row, _ in new}
    last_of = {holder_of[row.pk]: row.pk for row, _ in new}
    # What each linked session's row shows, as the batch goes (it mirrors its payment's).
    shown = {
        tx.linked_id: _status_of(transactions, tx.linked_id, tx)
        for tx in transactions.values()
        if tx.linked_id and tx.holds_state
    }
    for row, event in new:
        tx_id = holder_of[row.pk]
        tx = transactions[tx_id]
        old_status = tx.status or None
        state = states[tx_id]
        moved = state.apply(event)
        session_id = _session_to_link(event, tx, transactions, links)
        if session_id is not None:
            moved = _link(transactions[session_id], tx, states) or moved
            changed_fields.setdefault(session_id, set()).update(("linked_id", "kind"))
            changed_fields.setdefault(tx_id, set()).add("linked_id")
        fields = tx.take_state(state) if moved else []
        if row.transaction_id in given_account:
            changed_fields.setdefault(row.transaction_id, set()).update(("account", "direct"))
        changed_fields.setdefault(tx.pk, set()).update(fields)
        session_change = None
        if session_id is not None:
            shown[session_id] = transactions[session_id].status or None
        if tx.linked_id and tx.holds_state and shown.get(tx.linked_id) != (tx.status or None):
            session_change = (tx.linked_id, shown.get(tx.linked_id))
            shown[tx.linked_id] = tx.status or None
        after[row.pk] = IngestResult(
            event=row,
            created=True,
            # An earlier event of the batch keeps the transaction as it stood after it.
            transaction=tx if last_of[tx.pk] == row.pk else copy.copy(tx),
            old_status=old_status,
            status_changed="status" in fields,
            linked=session_id is not None,
            session_change=session_change,
        )
    _mirror_linked(transactions, changed_fields)
    results = []
    for row, created in rows:
        if created and row.pk in after:
            results.append(after[row.pk])
        else:
            results.append(IngestResult(event=row, created=created))
    changed = {tx_id: (transactions[tx_id], fields) for tx_id, fields in changed_fields.items()}
    return results, changed


def _folds(row: StripeEvent, event: Mapping[str, Any]) -> bool:
    """Whether ``event`` (stored as ``row``) folds into a transaction."""
    return bool(row.transaction_id) and event_object(event).get("object") in TRANSACTION_OBJECTS


def _share_accounts(
    new: list[tuple[StripeEvent, Mapping[str, Any]]],
    transactions: Mapping[str, StripeTransaction],
) -> set[str]:
    """Give a transaction the account its first event with one names, and an event without
    one (a destination charge's refund) its transaction's: a seller follows the whole payment.
    Returns the ids of the transactions given an account (or found to be direct charges).

    A transaction's account is set once; an event naming another is stored as it came, and
    logged (Stripe's ids are unique across accounts: it would be a bug, not a payment).
    """
    inherited: dict[str, list[int]] = {}
    given: set[str] = set()
    for row, event in new:
        tx = transactions[row.transaction_id]
        if is_account_id(event.get("account")) and not tx.direct:
            # A Connect event: the payment lives on the connected account.
            tx.direct = True
            given.add(tx.pk)
        if row.account and not tx.account:
            tx.account = row.account
            given.add(tx.pk)
        elif not row.account and tx.account:
            row.account = tx.account
            inherited.setdefault(tx.account, []).append(row.pk)
        elif row.account != tx.account:
            logger.warning(
                "Event %s names account %s, but transaction %s belongs to %s; kept as is.",
                row.event_id,
                row.account,
                tx.pk,
                tx.account,
            )
    for account, pks in inherited.items():
        StripeEvent.objects.filter(pk__in=pks).update(account=account)
    return given


# --- Checkout Sessions: two transactions of one payment ------------------------------------------


def _holder(transactions: Mapping[str, StripeTransaction], tx_id: str) -> str:
    """The transaction whose row folds the events of ``tx_id`` (its PaymentIntent's, once a
    session is linked)."""
    tx = transactions[tx_id]
    return tx_id if tx.holds_state else tx.linked_id


def _status_of(
    transactions: Mapping[str, StripeTransaction], session_id: str, intent: StripeTransaction
) -> str | None:
    """The status a linked session's row shows now: its own when locked, else its payment's
    (the two are written together)."""
    session = transactions.get(session_id)
    return (session.status if session is not None else intent.status) or None


def _lock_linked(transactions: dict[str, StripeTransaction]) -> None:
    """Lock the PaymentIntents of linked sessions among ``transactions`` too.

    Only an event of a linked session that does not name its PaymentIntent needs this (not
    seen from Stripe); the lock then comes after the session's, out of id order.
    """
    missing = {
        tx.linked_id: tx.livemode
        for tx in transactions.values()
        if not tx.holds_state and tx.linked_id not in transactions
    }
    if missing:
        transactions.update(StripeTransaction.objects.lock_all(missing))


def _session_to_link(
    event: Mapping[str, Any],
    tx: StripeTransaction,
    transactions: Mapping[str, StripeTransaction],
    links: Mapping[str, str],
) -> str | None:
    """The session ``event`` links to ``tx`` for the first time, if it does."""
    link = checkout_session_link(event)
    if link is None or links.get(link[0]) != tx.pk:
        return None
    session = transactions[link[0]]
    if session.linked_id:
        return None  # linked before (to this PaymentIntent, or to another: the first stays)
    return link[0]


def _accounts_from_sessions(
    transactions: Mapping[str, StripeTransaction], links: Mapping[str, str]
) -> set[str]:
    """Give a PaymentIntent that joins a session the session's connected account, when its
    own events have named none yet; the ids of the PaymentIntents given one.

    The session's account is the server's policy decision at its create call. Stripe's
    session object names no destination, so a destination charge's session event, which may
    come first, would otherwise leave the payment (and that event) without its account.
    """
    given: set[str] = set()
    for session_id, intent_id in links.items():
        session, intent = transactions.get(session_id), transactions.get(intent_id)
        if session is None or intent is None or not session.account or intent.account:
            continue
        if session.linked_id and session.linked_id != intent_id:
            continue  # linked to another PaymentIntent before: the first stays
        intent.account, intent.direct = session.account, intent.direct or session.direct
        given.add(intent_id)
    return given


def _link(
    session: StripeTransaction, intent: StripeTransaction, states: dict[str, PaymentState]
) -> bool:
    """Join a session's transaction to its PaymentIntent's: the PaymentIntent's row takes
    what the session's knew (its create call's answer); ``True`` when that moved the state."""
    session.linked_id, intent.linked_id = intent.pk, session.pk
    session.kind = StripeTransaction.Kind.CHECKOUT_SESSION
    return states[intent.pk].merge(states[session.pk])


def _mirror_linked(
    transactions: Mapping[str, StripeTransaction], changed: dict[str, set[str]]
) -> None:
    """Show a payment's status and amounts on its session's row too."""
    for tx_id, fields in list(changed.items()):
        tx = transactions[tx_id]
        if not fields or not tx.linked_id or not tx.holds_state:
            continue
        session = transactions.get(tx.linked_id)
        if session is None:
            StripeTransaction.objects.filter(pk=tx.linked_id).update(
                **{field: getattr(tx, field) for field in _MIRRORED}, updated_at=timezone.now()
            )
            continue
        for field in _MIRRORED:
            if getattr(session, field) != getattr(tx, field):
                setattr(session, field, getattr(tx, field))
                changed.setdefault(session.pk, set()).add(field)


#: What a session's row shows of its payment.
_MIRRORED = (
    "status",
    "amount",
    "amount_captured",
    "amount_refunded",
    "currency",
    "account",
    "direct",
)


def _fold_histories(
    transactions: Mapping[str, StripeTransaction],
    states: Mapping[str, Any],
    *,
    exclude: list[int],
) -> None:
    """Fold the stored events of transactions that have no state yet into their states.

    A transaction stored before the bridge kept states must not forget its older events
    when the next one arrives (``stripe_bridge_rebuild`` does all of them at once).
    """
    # A new transaction has neither state nor status; one stored before states has a status.
    stateless = [tx_id for tx_id, tx in transactions.items() if not tx.state and tx.status]
    if not stateless:
        return
    history = (
        StripeEvent.objects.filter(transaction_id__in=stateless)
        .exclude(pk__in=exclude)
        .only("transaction_id", "payload")
        .order_by("created", "id")
    )
    for stored in history.iterator(chunk_size=500):
        states[stored.transaction_id].apply(stored.payload)


#: What a fold may change on a transaction (``StripeTransaction.take_state``, and the account).
_FOLDED_FIELDS = (
    "account",
    "direct",
    "status",
    "amount",
    "amount_captured",
    "amount_refunded",
    "currency",
    "state",
    "linked_id",
    "kind",
    "updated_at",
)


def _save(changed: Mapping[str, tuple[StripeTransaction, set[str]]]) -> None:
    """Write the changed transactions' folded fields, in one statement where the database
    allows (``bulk_update`` builds a ``CASE`` per field and row: most of a batch's time went
    there), else one prepared ``UPDATE`` run per row."""
    dirty = [tx for tx, fields in changed.values() if fields]
    if not dirty:
        return
    now = timezone.now()
    for tx in dirty:
        tx.updated_at = now
    using = router.db_for_write(StripeTransaction)
    if batch_sql.supported(using):
        batch_sql.update_fields(dirty, _FOLDED_FIELDS, using=using)
        return
    connection = connections[using]
    quote = connection.ops.quote_name
    fields = [f for f in StripeTransaction._meta.concrete_fields if f.name in _FOLDED_FIELDS]
    rows = [
        [*(f.get_db_prep_save(getattr(tx, f.attname), connection) for f in fields), tx.pk]
        for tx in dirty
    ]
    assignments = ", ".join(f"{quote(f.column or f.attname)} = %s" for f in fields)
    sql = f"UPDATE {quote(StripeTransaction._meta.db_table)} SET {assignments} WHERE id = %s"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


# --- after the commit ---------------------------------------------------------------------------


def _after_commit(results: list[IngestResult], *, publish: bool) -> None:
    # The events are committed: a failing receiver must not turn into an error for the
    # caller (Stripe would retry a delivery that is already stored, as a duplicate).
    for result in results:
        _send_robust(
            signals.event_received, StripeEvent, event=result.event, created=result.created
        )
        if result.status_changed and result.transaction is not None:
            send_status_changed(result.transaction, result.old_status, result.event)
        if result.session_change is not None:
            _send_session_changed(result, *result.session_change)
    if publish:
        from .messaging import publish_events, publish_link

        for result in results:
            if result.linked and result.transaction is not None:
                # Before the event that links them: what the other id's subscribers missed.
                publish_link(result.transaction, exclude={r.event.pk for r in results})
        publish_events([(r.event, r.transaction) for r in results if r.created])


def _send_robust(signal: Signal, sender: type, **kwargs: Any) -> None:
    """Send a signal to every receiver, logging (not raising) a receiver's error."""
    event, tx = kwargs.get("event"), kwargs.get("transaction")
    subject = f"event {event.event_id}" if event is not None else f"transaction {tx and tx.pk}"
    for receiver, response in signal.send_robust(sender=sender, **kwargs):
        if isinstance(response, Exception):
            logger.error(
                "Receiver %r of a django-stripe-bridge signal failed for %s",
                receiver,
                subject,
                exc_info=response,
            )


def _send_session_changed(result: IngestResult, session_id: str, old_status: str | None) -> None:
    """``transaction_status_changed`` for a Checkout Session's row, whose status follows its
    PaymentIntent's (docs/checkout.md: fulfil from this signal)."""
    session = StripeTransaction.objects.filter(pk=session_id).first()
    if session is not None and result.transaction is not None:
        session.status = result.transaction.status  # as right after this event
        send_status_changed(session, old_status, result.event)


def send_status_changed(
    tx: StripeTransaction, old_status: str | None, event: StripeEvent | None
) -> None:
    """Send ``transaction_status_changed`` for ``tx``'s current status (after the commit)."""
    _send_robust(
        signals.transaction_status_changed,
        StripeTransaction,
        transaction=tx,
        old_status=old_status,
        new_status=tx.status,
        event=event,
    )
