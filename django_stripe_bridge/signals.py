"""Signals sent by the bridge, always after the database transaction commits."""

from django.dispatch import Signal

#: Sent for every event the bridge ingests (webhook or sync), also for a duplicate delivery.
#: provides args: ``event`` (the :class:`~django_stripe_bridge.models.StripeEvent` row),
#: ``created`` (``False`` for a repeat of an event already stored).
event_received = Signal()

#: Sent when an event moves a transaction to another status.
#: provides args: ``transaction`` (the :class:`~django_stripe_bridge.models.StripeTransaction`),
#: ``old_status`` (``None`` for a transaction first seen in this event), ``new_status``,
#: ``event`` (the :class:`~django_stripe_bridge.models.StripeEvent` that changed it).
transaction_status_changed = Signal()
