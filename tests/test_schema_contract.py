"""What schemathesis cannot see alone: examples validate, headers are ASCII, settings reach
the schema, and the strictness the schema states (issue 10, item 3)."""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
import pytest

from django_stripe_bridge.testing import sign_payload
from tests.charge_fixtures import API, bridge_settings_for, post_json


def get_schema(client: Any) -> dict[str, Any]:
    return client.get(f"{API}/schema?format=json").json()


def validator(schema: dict[str, Any], part: dict[str, Any]) -> Any:
    """A JSON Schema 2020-12 validator of ``part`` that resolves the schema's ``$ref``s."""
    return jsonschema.Draft202012Validator({**part, "components": schema["components"]})


def examples_of(media: dict[str, Any]) -> list[Any]:
    found = [e["value"] for e in media.get("examples", {}).values()]
    return found + ([media["example"]] if "example" in media else [])


def test_every_example_validates_against_its_schema(client):
    schema = get_schema(client)
    checked = 0
    for path, item in schema["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                values = [e["value"] for e in parameter.get("examples", {}).values()]
                values += [parameter["example"]] if "example" in parameter else []
                for value in values:
                    validator(schema, parameter["schema"]).validate(value)
                    checked += 1
                if parameter["in"] == "header":
                    assert all(str(v).isascii() for v in values), (path, parameter["name"])
            body = operation.get("requestBody", {}).get("content", {})
            answers = [
                media
                for response in operation["responses"].values()
                for media in response.get("content", {}).values()
            ]
            for media in [*body.values(), *answers]:
                for value in examples_of(media):
                    validator(schema, media["schema"]).validate(value)
                    checked += 1
    assert checked >= 10


def test_limits_from_the_settings_are_in_the_schema(client, settings):
    bridge_settings_for(settings, MIN_AMOUNT=50, MAX_AMOUNT=5000, CURRENCIES=["usd", "EUR"])
    request = get_schema(client)["components"]["schemas"]["ChargeRequest"]["properties"]
    assert (request["amount"]["minimum"], request["amount"]["maximum"]) == (50, 5000)
    currency = validator({"components": {}}, request["currency"])
    assert currency.is_valid("USD") and currency.is_valid("eur")
    assert not currency.is_valid("gbp")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token", " tok_visa"),
        ("currency", "usd "),
        ("receipt_email", " a@example.com"),
        ("receipt_email", "a@localhost"),
        ("receipt_email", '"a b"@example.com'),
    ],
)
def test_what_the_schema_refuses_the_api_refuses(client, settings, field, value):
    body = {"token": "tok_visa", "amount": 1000, field: value}
    schema = get_schema(client)
    assert not validator(schema, {"$ref": "#/components/schemas/ChargeRequest"}).is_valid(body)
    bridge_settings_for(settings, API_KEY=None)  # a refusal must come before Stripe
    response = post_json(client, "charge", body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == field


@pytest.mark.django_db
def test_a_webhook_whose_created_is_an_integral_float_is_an_event(client):
    event = {
        "id": "evt_float_created",
        "object": "event",
        "type": "charge.succeeded",
        "created": 1732500000.0,
        "data": {"object": {"id": "ch_float", "object": "charge"}},
    }
    body = json.dumps(event).encode()
    response = client.post(
        f"{API}/webhooks/handler",
        body,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign_payload(body, "whsec_tests_primary", int(time.time())),
    )
    assert response.status_code == 200, response.content


def test_the_event_stream_is_described(client, settings):
    """``GET events`` (a plain async view drf-spectacular does not see) is in the schema: its
    query parameters, the Last-Event-ID header, the text/event-stream answer and the
    statuses of a refused request; under WSGI it answers what the schema says for 501."""
    bridge_settings_for(settings, REPLAY="all")
    schema = get_schema(client)
    operation = schema["paths"][f"{API}/events"]["get"]
    assert operation["operationId"] == "stripe_events_stream"
    parameters = {(p["in"], p["name"]): p["schema"] for p in operation["parameters"]}
    assert set(parameters) == {
        ("query", "channel"),
        ("query", "selector"),
        ("query", "replay"),
        ("query", "last_event_id"),
        ("header", "Last-Event-ID"),
    }
    assert parameters["query", "replay"]["enum"] == ["all", "latest", "none"]
    assert parameters["query", "replay"]["default"] == "all"  # from the settings
    assert parameters["query", "selector"]["maxLength"] == 4096
    responses = operation["responses"]
    assert set(responses) == {"200", "403", "429", "501", "503"}
    assert list(responses["200"]["content"]) == ["text/event-stream"]
    assert responses["429"]["headers"]["Retry-After"]["schema"]["const"] == "1"
    response = client.get(f"{API}/events", {"selector": "id = 'ch_1'"})
    assert response.status_code == 501
    assert list(responses["501"]["content"]) == [response["Content-Type"]]
    error = responses["501"]["content"]["application/json"]["schema"]
    validator(schema, error).validate(response.json())
