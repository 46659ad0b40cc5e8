"""SPEC §3: the fields and indexes of ``StripeEvent`` and ``StripeTransaction``."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import IntegrityError, models

from django_stripe_bridge.models import StripeEvent, StripeTransaction
from tests.factories import StripeEventFactory

EVENT_FIELDS = {
    "event_id",
    "transaction_id",
    "type",
    "object_type",
    "object_id",
    "livemode",
    "account",
    "api_version",
    "created",
    "received_at",
    "payload",
    "published_at",
    # The channel layer's refusals to carry it (the outbox relay gives up after a few).
    "publish_attempts",
    "publish_error",
}
TRANSACTION_FIELDS = {
    "id",
    "kind",
    "amount",
    "amount_captured",
    "amount_refunded",
    "currency",
    "status",
    "livemode",
    "account",
    "direct",
    "linked_id",
    "user",
    "idempotency_key",
    "state",
    "created_at",
    "updated_at",
}


def _is_indexed(model: type[models.Model], name: str) -> bool:
    """Whether a lookup on ``name`` alone can use an index (own or leading a composite)."""
    field = model._meta.get_field(name)
    if field.unique or field.primary_key or getattr(field, "db_index", False):
        return True
    return any(
        index.fields and index.fields[0].lstrip("-") == name and index.condition is None
        for index in model._meta.indexes
    )


def test_stripe_event_fields():
    names = {field.name for field in StripeEvent._meta.get_fields() if field.name != "id"}
    assert names == EVENT_FIELDS
    assert StripeEvent._meta.get_field("event_id").unique
    assert isinstance(StripeEvent._meta.get_field("payload"), models.JSONField)
    published_at = StripeEvent._meta.get_field("published_at")
    assert published_at.null
    assert isinstance(StripeEvent._meta.get_field("created"), models.DateTimeField)
    assert isinstance(StripeEvent._meta.get_field("livemode"), models.BooleanField)


@pytest.mark.parametrize("name", ["event_id", "transaction_id", "type", "account"])
def test_stripe_event_lookups_are_indexed(name):
    assert _is_indexed(StripeEvent, name)


def test_transactions_by_account_are_indexed():
    assert _is_indexed(StripeTransaction, "account")


def test_stripe_transaction_fields():
    names = {
        field.name
        for field in StripeTransaction._meta.get_fields()
        if not field.auto_created or field.concrete
    }
    assert names == TRANSACTION_FIELDS
    assert StripeTransaction._meta.pk.name == "id"
    assert set(StripeTransaction.Kind.values) == {"charge", "payment_intent", "checkout_session"}
    user = StripeTransaction._meta.get_field("user")
    assert user.null and user.related_model._meta.label == settings.AUTH_USER_MODEL


@pytest.mark.django_db
def test_one_row_per_event_never_two():
    event = StripeEventFactory()
    with pytest.raises(IntegrityError):
        StripeEventFactory(event_id=event.event_id)
