"""Signals sent by the bridge, always after the database transaction commits.

Receivers run in the process that ingested the event (the webhook request, or
``stripe_bridge_sync``), after the rows are committed and before the webhook is answered.
A receiver's exception is logged on ``django_stripe_bridge.ingest`` and does not reach
Stripe: the event is stored, and a retry would only be a duplicate. Keep receivers quick;
hand slow work to a task queue. See docs/operations.md for an example receiver.
"""

from django.dispatch import Signal

#: Sent for every event the bridge ingests (webhook or sync), also for a duplicate delivery.
#: provides args: ``event`` (the :class:`~django_stripe_bridge.models.StripeEvent` row),
#: ``created`` (``False`` for a repeat of an event already stored).
#: sender: :class:`~django_stripe_bridge.models.StripeEvent`.
event_received = Signal()

#: Sent when an event moves a transaction to another status.
#: provides args: ``transaction`` (the :class:`~django_stripe_bridge.models.StripeTransaction`),
#: ``old_status`` (``None`` for a transaction first seen in this event), ``new_status``,
#: ``event`` (the :class:`~django_stripe_bridge.models.StripeEvent` that changed it).
#: sender: :class:`~django_stripe_bridge.models.StripeTransaction`.
transaction_status_changed = Signal()
