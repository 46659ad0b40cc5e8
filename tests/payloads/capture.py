"""Capture real event payloads from the Stripe stand-in into ``tests/payloads/``.

Run ``python -m tests.payloads.capture``: it starts the stand-in, receives its webhooks on a
loopback HTTP server (checking each signature with the bridge's ``verify_signature``), makes
charges, refunds and PaymentIntents, and writes one file per event type (the first event of
that type, as delivered). Files named ``<type>.<variant>.json`` hold other shapes of a type.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SECRET = "whsec_capture"


def main() -> None:
    from django_stripe_bridge.testing import run_stripe_standin
    from django_stripe_bridge.webhooks import verify_signature

    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            verify_signature(body, self.headers["Stripe-Signature"], [SECRET], 300)
            received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with run_stripe_standin(webhook_delay=0.05) as standin:
        standin.register_webhook(f"http://127.0.0.1:{server.server_port}/", SECRET)
        client = standin.client()
        charge = client.v1.charges.create(
            {"amount": 2000, "currency": "usd", "source": "tok_visa", "description": "capture"}
        )
        client.v1.refunds.create({"charge": charge.id, "amount": 500})
        full = client.v1.charges.create({"amount": 1500, "currency": "usd", "source": "tok_visa"})
        client.v1.refunds.create({"charge": full.id})
        with contextlib.suppress(Exception):  # the decline is the point
            client.v1.charges.create(
                {"amount": 1000, "currency": "usd", "source": "tok_chargeDeclined"}
            )
        client.v1.payment_intents.create(
            {
                "amount": 3000,
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
        client.v1.payment_intents.create(
            {
                "amount": 3100,
                "currency": "eur",
                "payment_method": "pm_card_threeDSecure2Required",
                "confirm": True,
                "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
            }
        )
        with contextlib.suppress(Exception):  # the decline is the point
            client.v1.payment_intents.create(
                {
                    "amount": 3200,
                    "currency": "eur",
                    "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
                    "confirm": True,
                    "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"},
                }
            )
        pi = client.v1.payment_intents.create({"amount": 3300, "currency": "eur"})
        client.v1.payment_intents.cancel(pi.id)
        deadline = time.monotonic() + 10
        count = -1
        while time.monotonic() < deadline and count != len(received):
            count = len(received)
            time.sleep(0.5)
    server.shutdown()

    written: dict[str, dict[str, Any]] = {}
    for event in received:
        obj = event["data"]["object"]
        name = event["type"]
        if name == "charge.succeeded" and obj.get("payment_intent"):
            name += ".payment_intent"
        if name == "charge.refunded" and obj.get("amount_refunded", 0) < obj.get("amount", 0):
            name += ".partial"
        written.setdefault(name, event)
    for name, event in sorted(written.items()):
        (HERE / f"{name}.json").write_text(json.dumps(event, indent=2, sort_keys=True) + "\n")
        print(f"wrote {name}.json")


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    main()
