"""Signals sent by the bridge, always after the database transaction commits.

Receivers run in the process that stored the change (the webhook request,
``stripe_bridge_sync``, or the charge request), after the rows are committed and before
the request is answered.
A receiver's exception is logged on ``django_stripe_bridge.ingest`` and does not reach
Stripe: the event is stored, and a retry would only be a duplicate. Keep receivers quick;
hand slow work to a task queue. See docs/operations.md for an example receiver.
"""

from django.dispatch import Signal

#: Sent for every event the bridge ingests (webhook or sync), also for a duplicate delivery.
#: provides args: ``event`` (the ``StripeEvent`` row),
#: ``created`` (``False`` for a repeat of an event already stored).
#: sender: ``StripeEvent``.
event_received = Signal()

#: Sent once for every change of a transaction's stored status: by an event, or by the
#: response of a charge, PaymentIntent or Checkout Session the bridge created (before any
#: webhook). A Checkout Session linked to its PaymentIntent gets its own, as its status
#: follows the payment's (docs/checkout.md).
#: provides args: ``transaction`` (the ``StripeTransaction``),
#: ``old_status`` (``None`` for a transaction that had no status yet), ``new_status``,
#: ``event`` (the ``StripeEvent`` that changed it, or
#: ``None`` when the create call's response did).
#: sender: ``StripeTransaction``.
transaction_status_changed = Signal()
