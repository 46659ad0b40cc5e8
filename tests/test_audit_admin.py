"""SPEC §6 Admin: the columns, filters and read-only pages not covered by test_admin.py."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.urls import reverse

from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import StripeEventFactory, StripeTransactionFactory

pytestmark = pytest.mark.django_db

EVENTS = "admin:django_stripe_bridge_stripeevent"
TRANSACTIONS = "admin:django_stripe_bridge_stripetransaction"


def test_event_list_columns_in_the_specified_order(admin_client):
    StripeEventFactory(charge_id="ch_cols", type="charge.succeeded")
    response = admin_client.get(reverse(f"{EVENTS}_changelist"))
    headers = [
        str(header["text"]).lower()
        for header in response.context["result_headers"]
        if header.get("class_attrib") != ' class="action-checkbox-column"'
    ]
    # event id, type, transaction, status, livemode, created, received (then extras).
    expected = ["event id", "type", "transaction id", "status", "live mode", "created at stripe"]
    assert headers[: len(expected) + 1] == [*expected, "received"]


def test_event_list_filters_by_type_livemode_and_date(admin_client):
    model_admin = admin.site._registry[StripeEvent]
    names = [
        f if isinstance(f, str) else f[0] if isinstance(f, tuple) else f.parameter_name
        for f in model_admin.list_filter
    ]
    # The specified three (and publishing), then the connected account (docs/connect.md).
    assert names == ["type", "livemode", "publishing", "created", "account"]

    now = int(dt.datetime.now(tz=dt.UTC).timestamp())
    recent = StripeEventFactory(charge_id="ch_recent", created_ts=now)
    StripeEventFactory(charge_id="ch_old", created_ts=now - 30 * 86_400)
    since = (dt.datetime.now(tz=dt.UTC) - dt.timedelta(days=7)).isoformat(sep=" ")
    response = admin_client.get(reverse(f"{EVENTS}_changelist"), {"created__gte": since})
    assert response.status_code == 200
    assert [e.event_id for e in response.context["cl"].result_list] == [recent.event_id]


@pytest.mark.parametrize(
    ("event_type", "object_status", "shown"),
    [
        ("charge.failed", "failed", "failed"),
        # The status the event sets, not the charge's own ("succeeded" on a refunded charge).
        ("charge.refunded", "succeeded", "refunded"),
        # The object's state, not the event's type: this charge is refunded in full.
        ("charge.updated", "succeeded", "refunded"),
        ("charge.pending", "pending", "processing"),
    ],
)
def test_event_status_column(admin_client, event_type, object_status, shown):
    event = StripeEventFactory(charge_id="ch_st", type=event_type)
    event.payload["type"] = event_type
    event.payload["data"]["object"]["status"] = object_status
    event.payload["data"]["object"]["amount_refunded"] = 1000  # all of it, if refunded
    event.save()
    response = admin_client.get(reverse(f"{EVENTS}_changelist"))
    row = next(r for r in response.context["cl"].result_list if r.pk == event.pk)
    assert admin.site._registry[StripeEvent].event_status(row) == shown


@pytest.mark.parametrize("prefix", [EVENTS, TRANSACTIONS])
def test_rows_cannot_be_changed_or_deleted(admin_client, prefix):
    """Read-only: Stripe is the source of truth (pruning is stripe_bridge_prune's job)."""
    tx = StripeTransactionFactory(id="ch_ro", amount=1000, currency="usd")
    event = StripeEventFactory(charge_id="ch_ro")
    pk = tx.pk if prefix == TRANSACTIONS else event.pk

    assert admin_client.post(reverse(f"{prefix}_change", args=[pk]), {}).status_code == 403
    assert admin_client.get(reverse(f"{prefix}_delete", args=[pk])).status_code == 403
    response = admin_client.post(
        reverse(f"{prefix}_changelist"), {"action": "delete_selected", "_selected_action": [pk]}
    )
    assert response.status_code in (200, 302)
    assert StripeTransaction.objects.filter(pk=tx.pk).exists()
    assert StripeEvent.objects.filter(pk=event.pk).exists()

    changelist = admin_client.get(reverse(f"{prefix}_changelist"))
    form = changelist.context["action_form"]
    actions = [name for name, _ in form.fields["action"].choices] if form else []
    assert "delete_selected" not in actions


def test_transaction_detail_shows_amount_with_currency_and_is_read_only(admin_client):
    tx = StripeTransactionFactory(id="ch_detail", amount=1050, currency="eur", amount_refunded=50)
    response = admin_client.get(reverse(f"{TRANSACTIONS}_change", args=[tx.pk]))
    assert response.status_code == 200
    assert "10.50 EUR" in response.text
    assert "0.50 EUR" in response.text
    assert 'name="_save"' not in response.text
