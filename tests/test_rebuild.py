"""Existing databases get right statuses: ``stripe_bridge_rebuild`` and the first new event."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from django_stripe_bridge.ingest import ingest_event
from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import charge_object, make_event

pytestmark = pytest.mark.django_db
T = 1_700_000_000


def store_history() -> None:
    """An uncaptured authorization, then a refund that failed: an older bridge got both wrong."""
    for kind, obj, at in [
        ("charge.succeeded", charge_object("ch_auth", captured=False, amount_captured=0), T),
        ("charge.succeeded", charge_object("ch_ref"), T),
        ("charge.refunded", charge_object("ch_ref", amount_refunded=1000, refunded=True), T + 1),
        (
            "refund.failed",
            {
                "id": "re_1",
                "object": "refund",
                "charge": "ch_ref",
                "amount": 1000,
                "status": "failed",
            },
            T + 2,
        ),
    ]:
        ingest_event(make_event(kind, obj, created=at), publish=False)


def make_legacy() -> None:
    """The rows as a version without states left them."""
    StripeTransaction.objects.filter(pk="ch_auth").update(state={}, status="succeeded")
    StripeTransaction.objects.filter(pk="ch_ref").update(
        state={}, status="refunded", amount_refunded=1000, amount_captured=0
    )


def rows() -> dict[str, tuple]:
    return {
        tx.pk: (tx.status, tx.amount_captured, tx.amount_refunded)
        for tx in StripeTransaction.objects.all()
    }


RIGHT = {"ch_auth": ("requires_capture", 0, 0), "ch_ref": ("succeeded", 1000, 0)}


def test_rebuild_refolds_every_transaction_and_is_idempotent():
    store_history()
    assert rows() == RIGHT
    make_legacy()
    out = StringIO()
    call_command("stripe_bridge_rebuild", stdout=out)
    assert rows() == RIGHT
    text = out.getvalue()
    assert "Rebuilding 2 transaction(s)" in text
    assert "2/2 done, 2 changed" in text
    assert "Rebuilt 2 transaction(s); 2 changed." in text

    again = StringIO()
    call_command("stripe_bridge_rebuild", stdout=again)
    assert "2 changed" not in again.getvalue() and "0 changed" in again.getvalue()
    assert rows() == RIGHT


def test_rebuild_creates_missing_transactions_and_takes_named_ids():
    store_history()
    StripeTransaction.objects.all().delete()
    call_command("stripe_bridge_rebuild", "ch_ref", stdout=StringIO())
    assert rows() == {"ch_ref": RIGHT["ch_ref"]}
    assert StripeTransaction.objects.get(pk="ch_ref").kind == "charge"


def test_rebuild_keeps_what_create_calls_recorded_unless_reset():
    # A transaction known only from a create call's answer: no event to refold.
    from django_stripe_bridge.charges import record_transaction

    record_transaction(charge_object("ch_made", captured=False, amount_captured=0, created=T))
    call_command("stripe_bridge_rebuild", stdout=StringIO())
    assert rows()["ch_made"] == ("requires_capture", 0, 0)
    call_command("stripe_bridge_rebuild", "--reset", stdout=StringIO())
    assert StripeTransaction.objects.get(pk="ch_made").state == {"objects": {}}


def test_the_first_new_event_of_a_legacy_transaction_refolds_its_history():
    store_history()
    make_legacy()
    late = make_event("charge.updated", charge_object("ch_ref", description="x"), created=T + 3)
    ingest_event(late, publish=False)
    assert rows()["ch_ref"] == RIGHT["ch_ref"]
    assert StripeEvent.objects.filter(transaction_id="ch_ref").count() == 4
