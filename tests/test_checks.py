import pytest
from django.core import checks
from django.test import override_settings

from django_stripe_bridge.checks import check_settings
from django_stripe_bridge.layers import redis_channel_layer

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
