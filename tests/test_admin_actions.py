"""The admin action "Republish selected events"."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from django_stripe_bridge import messaging
from django_stripe_bridge.messaging import transaction_group
from django_stripe_bridge.models import StripeEvent
from tests.factories import StripeEventFactory
from tests.webhook_fixtures import *  # noqa: F403

CHANGELIST = "admin:django_stripe_bridge_stripeevent_changelist"


def republish(client: Client, events: list[StripeEvent]) -> Any:
    return client.post(
        reverse(CHANGELIST),
        {"action": "republish", "_selected_action": [event.pk for event in events]},
        follow=True,
    )


@pytest.mark.django_db
def test_republish_selected_events(
    admin_client: Client, in_memory_layer: None, channel_receiver: Any
) -> None:
    later = StripeEventFactory(charge_id="ch_adm", created_ts=2_000)
    earlier = StripeEventFactory(charge_id="ch_adm", created_ts=1_000)
    untouched = StripeEventFactory(charge_id="ch_other")
    receiver = channel_receiver(transaction_group("ch_adm"))

    response = republish(admin_client, [later, earlier])
    assert response.status_code == 200
    # Oldest first, as they happened.
    assert [receiver.receive()["event_id"], receiver.receive()["event_id"]] == [
        earlier.event_id,
        later.event_id,
    ]
    texts = [str(m) for m in get_messages(response.wsgi_request)]
    assert texts == ["Republished 2 of 2 events."]
    assert StripeEvent.objects.filter(published_at__isnull=False).count() == 2
    assert StripeEvent.objects.get(pk=untouched.pk).published_at is None


@pytest.mark.django_db
def test_republish_reports_failures_as_a_warning(
    admin_client: Client, in_memory_layer: None
) -> None:
    event = StripeEventFactory()
    layer = messaging.get_layer()
    with mock.patch.object(layer, "group_send", side_effect=ConnectionError("redis down")):
        response = republish(admin_client, [event])
    [message] = list(get_messages(response.wsgi_request))
    assert str(message) == "Republished 0 of 1 events."
    assert message.level_tag == "warning"
    assert StripeEvent.objects.get(pk=event.pk).published_at is None


@pytest.mark.django_db
def test_republish_needs_the_change_permission(client: Client, in_memory_layer: None) -> None:
    event = StripeEventFactory()
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    response = client.post(
        reverse(CHANGELIST), {"action": "republish", "_selected_action": [event.pk]}
    )
    assert response.status_code == 403
    assert StripeEvent.objects.get(pk=event.pk).published_at is None

    # A viewer browses the events but neither sees the action nor can run it.
    staff.user_permissions.add(Permission.objects.get(codename="view_stripeevent"))
    client.force_login(User.objects.get(pk=staff.pk))
    listing = client.get(reverse(CHANGELIST))
    assert listing.status_code == 200
    assert event.event_id in listing.content.decode()
    assert 'value="republish"' not in listing.content.decode()
    response = republish(client, [event])
    assert response.status_code == 200
    assert not [str(m) for m in get_messages(response.wsgi_request) if "Republished" in str(m)]
    assert StripeEvent.objects.get(pk=event.pk).published_at is None

    staff.user_permissions.add(Permission.objects.get(codename="change_stripeevent"))
    client.force_login(User.objects.get(pk=staff.pk))
    assert 'value="republish"' in client.get(reverse(CHANGELIST)).content.decode()
    republish(client, [event])
    assert StripeEvent.objects.get(pk=event.pk).published_at is not None
