"""The floor webhook: what a naive Django view does with a Stripe webhook, and no more."""

from __future__ import annotations

import hashlib
import hmac
import json

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from .models import FloorEvent


def group(object_id: str) -> str:
    """The floor's group of one object id."""
    return f"floor.{object_id}"


@csrf_exempt
def webhook(request: HttpRequest) -> JsonResponse:
    """Read the body, check one HMAC, insert one row, ``group_send`` once."""
    body = request.body
    parts = dict(
        item.split("=", 1) for item in request.headers.get("Stripe-Signature", "").split(",")
    )
    secret = settings.STRIPE_BRIDGE["WEBHOOK_SECRETS"][0].encode()
    signed = parts.get("t", "").encode() + b"." + body
    expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, parts.get("v1", "")):
        return JsonResponse({"error": "bad signature"}, status=400)
    event = json.loads(body)
    obj = event["data"]["object"]
    FloorEvent.objects.create(
        event_id=event["id"],
        object_id=obj["id"],
        status=obj.get("status", ""),
        payload=body.decode(),
    )
    message = {"type": "floor.event", "event_id": event["id"], "status": obj.get("status")}
    async_to_sync(get_channel_layer().group_send)(group(obj["id"]), message)
    return JsonResponse({"received": True})
