import time

import pytest
from django.core import checks
from django.test import override_settings

from django_stripe_bridge.checks import LAYER_CHECK_TIMEOUT, check_layer_answers, check_settings
from django_stripe_bridge.layers import redis_channel_layer
from tests.live import free_port

GOOD = {"API_KEY": "sk_test_x", "WEBHOOK_SECRETS": ["whsec_x"]}
REDIS_LAYER = {"default": redis_channel_layer("redis://localhost:6379/0")}
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def bridge_messages() -> list[checks.CheckMessage]:
    # The bridge's own check only: Django 6 also runs database checks in run_checks().
    return check_settings()


def bridge_check_ids() -> set[str]:
    return {m.id for m in bridge_messages()}


def test_check_is_registered():
    assert check_settings in checks.registry.registry.get_checks()


@override_settings(STRIPE_BRIDGE=GOOD, CHANNEL_LAYERS=REDIS_LAYER, DEBUG=False)
def test_silent_when_everything_is_set():
    assert bridge_check_ids() == set()


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"STRIPE_BRIDGE": {**GOOD, "API_KEY": None}}, "stripe_bridge.W001"),
        ({"STRIPE_BRIDGE": {**GOOD, "WEBHOOK_SECRETS": []}}, "stripe_bridge.W002"),
        ({"CHANNEL_LAYERS": {}}, "stripe_bridge.W003"),
        ({"STRIPE_BRIDGE": {**GOOD, "API_KEY": "sk_live_x"}, "DEBUG": True}, "stripe_bridge.W004"),
        ({"CHANNEL_LAYERS": MEMORY_LAYER}, "stripe_bridge.W005"),
        ({"STRIPE_BRIDGE": {**GOOD, "API_KEY": "pk_test_x"}}, "stripe_bridge.E003"),
        ({"STRIPE_BRIDGE": {**GOOD, "WEBHOOK_SECRET": "whsec_x"}}, "stripe_bridge.E002"),
        ({"STRIPE_BRIDGE": {**GOOD, "SUBSCRIBE_POLICY": "everyone"}}, "stripe_bridge.E004"),
        ({"STRIPE_BRIDGE": {**GOOD, "REPLAY": "some"}}, "stripe_bridge.E005"),
        ({"STRIPE_BRIDGE": {**GOOD, "MESSAGE_PAYLOAD": "raw"}}, "stripe_bridge.E005"),
        ({"STRIPE_BRIDGE": "sk_test_x"}, "stripe_bridge.E001"),
    ],
)
def test_each_check_fires_when_its_setting_is_wrong(overrides, expected):
    settings = {"STRIPE_BRIDGE": GOOD, "CHANNEL_LAYERS": REDIS_LAYER, "DEBUG": False, **overrides}
    with override_settings(**settings):
        assert bridge_check_ids() == {expected}


@override_settings(STRIPE_BRIDGE={**GOOD, "API_KEY": "sk_live_x"}, DEBUG=False)
def test_live_key_without_debug_is_fine():
    assert "stripe_bridge.W004" not in bridge_check_ids()


@override_settings(CHANNEL_LAYERS=MEMORY_LAYER, DEBUG=True)
def test_in_memory_layer_is_fine_in_debug():
    assert "stripe_bridge.W005" not in bridge_check_ids()


def test_every_message_has_a_hint():
    with override_settings(STRIPE_BRIDGE={"API_KEY": "bad", "X": 1}, CHANNEL_LAYERS={}):
        messages = bridge_messages()
    assert messages
    assert all(m.hint for m in messages)


def test_secret_key_is_not_echoed_in_check_messages():
    with override_settings(STRIPE_BRIDGE={**GOOD, "API_KEY": "sk_live_verysecret"}, DEBUG=True):
        text = " ".join(f"{m.msg} {m.hint}" for m in bridge_messages())
    assert "verysecret" not in text


@pytest.mark.parametrize(
    ("policy", "fires"),
    [
        ("pinned", False),
        ("staff", False),
        ("django_stripe_bridge.policy.open_policy", False),
        (lambda user, selector, pinned_ids: True, False),
        ("no.such.policy", True),
        ("django_stripe_bridge.conf.SETTING_NAME", True),  # importable, not callable
        ("everyone", True),
        (42, True),
    ],
)
def test_subscribe_policy_check_imports_the_policy(policy, fires):
    with override_settings(STRIPE_BRIDGE={**GOOD, "SUBSCRIBE_POLICY": policy}):
        assert ("stripe_bridge.E004" in bridge_check_ids()) is fires


@pytest.mark.parametrize(
    ("secrets", "fires"),
    [
        (["whsec_x"], False),
        ("whsec_x", False),
        (["whsec_old", "whsec_new"], False),
        (["sk_test_51Hsecret"], True),
        ("sk_live_51Hsecret", True),
        (["whsec_x", "rk_live_51Hsecret"], True),
        (["pk_test_51Hpublic"], True),
    ],
)
def test_an_api_key_among_the_webhook_secrets_is_an_error(secrets, fires):
    with override_settings(
        STRIPE_BRIDGE={**GOOD, "WEBHOOK_SECRETS": secrets}, CHANNEL_LAYERS=REDIS_LAYER
    ):
        messages = [m for m in bridge_messages() if m.id == "stripe_bridge.E009"]
    assert bool(messages) is fires
    if fires:
        (message,) = messages
        assert message.level == checks.ERROR and "whsec_" in message.hint
        assert "51H" not in message.msg + message.hint  # the key itself is never echoed


def layer_check_ids(layers) -> list[str]:
    with override_settings(CHANNEL_LAYERS=layers):
        return [m.id or "" for m in check_layer_answers()]


def test_the_layer_check_runs_with_deploy_only():
    registry = checks.registry.registry
    assert check_layer_answers in registry.get_checks(include_deployment_checks=True)
    assert check_layer_answers not in registry.get_checks()


def test_a_layer_whose_redis_does_not_answer_is_reported():
    dead = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    for layer in (redis_channel_layer(dead), redis_channel_layer(dead, pubsub=True)):
        assert layer_check_ids({"default": layer}) == ["stripe_bridge.W011"]
    assert time.monotonic() - started < 2 * (LAYER_CHECK_TIMEOUT + 1)


@pytest.mark.redis
def test_a_layer_whose_redis_answers_is_not_reported(redis_url):
    for layer in (redis_channel_layer(redis_url), redis_channel_layer(redis_url, pubsub=True)):
        assert layer_check_ids({"default": layer}) == []


def test_the_layer_check_leaves_in_memory_and_missing_layers_to_the_other_checks():
    assert layer_check_ids(MEMORY_LAYER) == []
    assert layer_check_ids({}) == []
