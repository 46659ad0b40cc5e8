import pytest
from django.test import override_settings
from rest_framework.permissions import AllowAny, IsAuthenticated

from django_stripe_bridge.conf import DEFAULTS, bridge_settings
from django_stripe_bridge.exceptions import ConfigurationError


def test_defaults_fill_missing_keys():
    with override_settings(STRIPE_BRIDGE={}):
        assert bridge_settings.CHANNEL == "stripe"
        assert bridge_settings.WEBHOOK_TOLERANCE == 300
        assert bridge_settings.WEBHOOK_MAX_BYTES == 1024 * 1024
        assert bridge_settings.MAX_NETWORK_RETRIES == 2
        assert bridge_settings.CHARGE_THROTTLE_RATE == "10/min"
        assert bridge_settings.API_KEY is None


def test_reloads_when_settings_change_both_ways():
    before = bridge_settings.API_KEY
    with override_settings(STRIPE_BRIDGE={"API_KEY": "sk_test_other", "CHANNEL": "payments"}):
        assert bridge_settings.API_KEY == "sk_test_other"
        assert bridge_settings.CHANNEL == "payments"
    assert bridge_settings.API_KEY == before
    assert bridge_settings.CHANNEL == "stripe"


def test_dotted_paths_are_imported_lazily():
    with override_settings(
        STRIPE_BRIDGE={"CHARGE_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"]}
    ):
        assert bridge_settings.CHARGE_PERMISSION_CLASSES == [IsAuthenticated]
    assert bridge_settings.CHARGE_PERMISSION_CLASSES == [AllowAny]


def test_bad_dotted_path_names_the_setting():
    bad = {"CHARGE_PERMISSION_CLASSES": ["no.such.Class"]}
    with (
        override_settings(STRIPE_BRIDGE=bad),
        pytest.raises(ConfigurationError, match="CHARGE_PERMISSION_CLASSES"),
    ):
        bridge_settings.CHARGE_PERMISSION_CLASSES  # noqa: B018


def test_unknown_setting_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NOT_A_SETTING"):
        bridge_settings.NOT_A_SETTING  # noqa: B018


@pytest.mark.parametrize(
    ("value", "expected"),
    [("whsec_a", ["whsec_a"]), (["whsec_a", "", "whsec_b"], ["whsec_a", "whsec_b"]), ([], [])],
)
def test_webhook_secrets_accept_a_string_or_a_list(value, expected):
    with override_settings(STRIPE_BRIDGE={"WEBHOOK_SECRETS": value}):
        assert bridge_settings.webhook_secrets == expected


def test_every_default_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parent.parent / "docs" / "settings.md").read_text()
    missing = [name for name in DEFAULTS if f"`{name}`" not in doc]
    assert not missing, f"settings missing from docs/settings.md: {missing}"
