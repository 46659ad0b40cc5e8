"""Real-shaped Stripe events (``../shared/stripe-corpus``) through the signed webhook.

Every event file of the corpus (dj-stripe's test events and one event per Stripe event type
from Stripe's OpenAPI fixtures) is signed and POSTed: each is answered 200 and stored once,
a second delivery is a duplicate, and the three dj-stripe ids that are not ``evt_`` ids get
a 400 naming the problem. Also: the lifecycle model's objects have Stripe's shape.

The corpus sits beside the repository (``../shared/stripe-corpus``) or where
``STRIPE_CORPUS`` says. Missing, these tests skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from django_stripe_bridge.models import StripeEvent
from django_stripe_bridge.testing import sign_payload
from tests import services
from tests.lifecycles import Lifecycle, lifecycles

SECRET = "whsec_tests_primary"  # tests/settings.py

#: dj-stripe test events whose ids are not Stripe event ids.
NOT_EVENT_IDS = {
    "AGBWvF5zBm4sMCsLLPZrw9XX",
    "AGBWvF5zBm4sMCsLLPZrw9YY",
    "sub_sched_1Hm86MFz0jfFqjGsc5iEdZee",
}


def corpus_path() -> Path:
    """``STRIPE_CORPUS``, else ``shared/stripe-corpus`` beside the repository or above it (a
    worktree or a clone one level further down finds it too)."""
    configured = os.environ.get("STRIPE_CORPUS")
    if configured:
        return Path(configured)
    repository = Path(__file__).resolve().parents[1]
    candidates = [parent / "shared" / "stripe-corpus" for parent in repository.parents]
    return next((path for path in candidates if path.is_dir()), candidates[0])


@pytest.fixture(scope="module")
def corpus() -> Path:
    path = corpus_path()
    if not (path / "spec").is_dir() or not (path / "djstripe").is_dir():
        services.missing(f"the Stripe corpus is not at {path} (set STRIPE_CORPUS to its directory)")
    return path


def _event_files(corpus: Path) -> list[Path]:
    return sorted((corpus / "djstripe").glob("*.json")) + sorted((corpus / "spec").glob("*.json"))


def _deliver(client: Client, body: bytes) -> tuple[int, Any]:
    response = client.post(
        reverse("stripe_bridge:webhook"),
        body,
        content_type="application/json",
        headers={"Stripe-Signature": sign_payload(body, SECRET)},
    )
    try:
        return response.status_code, json.loads(response.content)
    except ValueError:
        return response.status_code, response.content[:200]


@pytest.mark.django_db
def test_every_corpus_event_is_answered_200_and_stored_once(corpus: Path) -> None:
    client = Client(enforce_csrf_checks=True)
    files = _event_files(corpus)
    assert len(files) >= 350, f"only {len(files)} event files in {corpus}"
    problems: list[str] = []
    stored: dict[str, Path] = {}
    refused: set[str] = set()

    for path in files:
        body = path.read_bytes()
        event = json.loads(body)
        event_id = event["id"]
        name = f"{path.parent.name}/{path.name} ({event_id}, {event.get('type')})"
        first = _deliver(client, body)
        again = _deliver(client, body)
        if event_id in NOT_EVENT_IDS:
            refused.add(event_id)
            for status, answer in (first, again):
                if status != 400 or "evt_" not in json.dumps(answer):
                    problems.append(f"{name}: {status} {answer}, not a 400 naming 'evt_'")
            continue
        # dj-stripe reuses some ids for other payloads: those are duplicates of the first.
        duplicate = event_id in stored
        if first != (200, {"received": True, "duplicate": duplicate}):
            problems.append(f"{name}: first delivery answered {first}")
        if again != (200, {"received": True, "duplicate": True}):
            problems.append(f"{name}: second delivery answered {again}")
        stored.setdefault(event_id, path)

    assert not problems, "\n".join(problems)
    assert refused == NOT_EVENT_IDS
    assert StripeEvent.objects.count() == len(stored)
    assert not StripeEvent.objects.filter(event_id__in=NOT_EVENT_IDS).exists()
    for event_id, path in stored.items():
        row = StripeEvent.objects.get(event_id=event_id)
        assert row.payload == json.loads(path.read_bytes()), f"{path.name}: payload as received"


# ----- the lifecycle model speaks Stripe's shape ----------------------------------------------

_TYPES: dict[str, type | tuple[type, ...]] = {
    "integer": int,
    "string": str,
    "boolean": bool,
    "object": dict,
    "array": list,
}


@pytest.fixture(scope="module")
def stripe_shapes(corpus: Path) -> dict[str, Any]:
    """OpenAPI's required fields per resource, and the fields Stripe's example objects have."""
    required = json.loads((corpus / "openapi_required.json").read_text())["schemas"]
    known: dict[str, set[str]] = {}
    for path in (corpus / "spec").glob("*.json"):
        obj = json.loads(path.read_text())["data"]["object"]
        known.setdefault(obj.get("object"), set()).update(obj)
    return {"required": required, "known": known}


def _shape_problems(obj: dict[str, Any], shapes: dict[str, Any]) -> list[str]:
    kind = obj["object"]
    known = shapes["known"][kind]
    problems = [f"{kind}.{key}: Stripe has no such field" for key in obj if key not in known]
    schema = shapes["required"].get(kind)
    if schema is None:  # a dispute: OpenAPI's required list is not in the corpus
        return problems
    for field in schema["required"]:
        if field not in obj:
            problems.append(f"{kind}.{field} is required")
            continue
        spec, value = schema["fields"].get(field, {}), obj[field]
        if value is None:
            if not spec.get("nullable"):
                problems.append(f"{kind}.{field} is null")
            continue
        wanted = _TYPES.get(spec.get("type", ""), object)
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            problems.append(f"{kind}.{field}={value!r} is not {spec['type']}")
        if "enum" in spec and value not in spec["enum"]:
            problems.append(f"{kind}.{field}={value!r} is not one of {spec['enum']}")
    return problems


@hypothesis_settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lifecycles())
def test_model_objects_have_stripes_shape(stripe_shapes: dict[str, Any], lifecycle: Lifecycle):
    """Required fields, types and enums of Stripe's OpenAPI spec; no field Stripe lacks."""
    for event in lifecycle.events:
        problems = _shape_problems(event["data"]["object"], stripe_shapes)
        assert not problems, f"{event['type']}: {problems}"


@pytest.mark.django_db
@pytest.mark.parametrize("order", ["as numbered", "reversed"])
def test_stripes_checkout_session_events_fold_into_one_payment(corpus: Path, order: str) -> None:
    """Issue 17: Stripe's own ``checkout.session.*`` examples (one session, one PaymentIntent)
    are stored once, link the session to its PaymentIntent, and end in the same state in
    either order; dj-stripe's completed session (a PaymentIntent of its own) too."""
    from django_stripe_bridge.models import StripeTransaction

    client = Client(enforce_csrf_checks=True)
    files = sorted((corpus / "spec").glob("*_single_checkout.session.*.json"))
    files.append(corpus / "djstripe" / "py__FAKE_EVENT_SESSION_COMPLETED.json")
    assert len(files) == 5
    for path in files if order == "as numbered" else files[::-1]:
        body = path.read_bytes()
        assert _deliver(client, body) == (200, {"received": True, "duplicate": False}), path
        assert _deliver(client, body)[1]["duplicate"] is True
    assert StripeEvent.objects.count() == 5
    events = [json.loads(path.read_bytes()) for path in files]
    for event in events:
        obj = event["data"]["object"]
        session = StripeTransaction.objects.get(pk=obj["id"])
        intent = StripeTransaction.objects.get(pk=obj["payment_intent"])
        assert (session.kind, session.linked_id) == ("checkout_session", intent.pk)
        assert session.status == intent.status
        assert len(session.events()) == sum(e["data"]["object"]["id"] == obj["id"] for e in events)
    # The spec's four: the newest (expired, created last) has the last word.
    spec_session = StripeTransaction.objects.get(pk=events[0]["data"]["object"]["id"])
    assert spec_session.status == "expired"
